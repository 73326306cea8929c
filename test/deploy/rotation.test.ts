// The rotation procedure of deploy/README.md, Kubernetes flavour, with real processes: a
// `quic-lb serve` and a `quic-lb demo backend` (the StatefulSet's arguments) each reading its own
// projected volume, updated the way the kubelet does it (new timestamped directory, `..data`
// symlink swapped atomically), the README's own `kill -HUP` commands, and gtlsclient connections
// before, across and after the rotation. Needs dist/ (npm run build) and gtlsclient.
import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import {
  downloadedSha256,
  expectedSha256,
  explainDownload,
  has,
  runClient,
  serverCidsSeen,
} from '../e2e/gtlsclient.js';
import { runCli } from '../helpers/cli.js';
import { readEvents } from '../e2e/stack.js';
import { startCli, stop } from '../helpers/process.js';
import { GRACEFUL_STOP_MS, deployDir } from './proc.js';
import { waitFor } from '../helpers/wait.js';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-rotation-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(work, { recursive: true, force: true });
});

let generation = 0;
/** Writes `files` into a projected-volume directory as the kubelet's atomic writer does. */
function kubeletWrite(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  const data = path.join(dir, '..data');
  const previous = existsSync(data)
    ? path.join(dir, readFileSync(path.join(dir, '..data', '..generation'), 'utf8'))
    : undefined;
  const name = `..2026_11_21_00_00_00.${++generation}`;
  mkdirSync(path.join(dir, name));
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(dir, name, f), text);
  writeFileSync(path.join(dir, name, '..generation'), name);
  symlinkSync(name, path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), data);
  for (const f of Object.keys(files))
    if (!existsSync(path.join(dir, f))) symlinkSync(path.join('..data', f), path.join(dir, f));
  for (const f of readdirSync(dir)) if (!f.startsWith('..') && !(f in files)) rmSync(path.join(dir, f));
  if (previous) rmSync(previous, { recursive: true });
}

const readme = readFileSync(path.join(deployDir, 'README.md'), 'utf8');
/** The `sh -c '...'` of the README's `kubectl exec` reload commands. */
function readmeExec(pattern: RegExp): string {
  const m = pattern.exec(readme);
  if (!m) throw new Error(`deploy/README.md: no command matching ${pattern}`);
  return m[1];
}
const lbReload = readmeExec(/kubectl -n quic-lb exec \$p -c quic-lb -- sh -c '([^']+)'/);
const backendReload = readmeExec(/kubectl -n quic-lb exec quic-backend-N -- sh -c '([^']+)'/);

async function counter(url: string, series: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('deploy/README.md rotation procedure (Kubernetes volumes, SIGHUP)', () => {
  it('LBs first, then backends (live connection re-issued), old config drained and removed: every download completes', async () => {
    // Step 0: the shipped k8s config, moved to loopback (127.0.4.60-61, ports 35401-35404).
    const base = parse(readFileSync(path.join(deployDir, 'k8s', 'base', 'config.yaml'), 'utf8')) as Any;
    const vip = { address: '127.0.4.60', port: 35401 };
    const config0: Any = {
      ...base,
      listen: [`${vip.address}:${vip.port}`],
      backends: [{ ...base.backends[0], address: '127.0.4.61:35402' }],
      health: { ...base.health, intervalMs: 200 },
      returnPath: { ...base.returnPath, listen: '127.0.4.60:35403' },
      metrics: { listen: '127.0.4.60:35404' },
      workers: 1,
      drainMs: 200,
      log: { level: 'warn' },
    };
    const keys: Record<string, string> = {};
    for (const [k, octets] of [
      ['quic-lb-0.hex', 16],
      ['fallback.hex', 16],
      ['return-hmac.hex', 32],
      ['reset.hex', 32],
      ['quic-lb-1.hex', 16],
    ] as const) {
      keys[k] = runCli(['keygen', '--octets', String(octets)]).stdout;
    }
    const { 'quic-lb-1.hex': key1, ...keys0 } = keys;
    const lbVol = path.join(work, 'lb');
    const beVol = path.join(work, 'backend');
    kubeletWrite(lbVol, { 'config.yaml': stringify(config0), ...keys0 });
    kubeletWrite(beVol, { 'config.yaml': stringify(config0), ...keys0 });
    const metrics = 'http://127.0.4.60:35404/metrics';
    const series = (id: number): string => `quic_lb_cid_packets_total{config_id="${id}",result="routed"}`;

    const lb = await startCli(['serve', '--config', path.join(lbVol, 'config.yaml')]);
    cleanup.push(() => stop(lb));
    const events = path.join(work, 'backend.jsonl');
    const name = base.backends[0].name as string;
    const backend = await startCli([
      'demo',
      'backend',
      '--config',
      path.join(beVol, 'config.yaml'),
      '--name',
      name,
      '--no-preferred',
      '--reset-key-file',
      path.join(beVol, 'reset.hex'),
      '--event-log',
      events,
    ]);
    cleanup.push(() => stop(backend));
    expect(backend.ready).toMatchObject({ configId: 0 });
    await waitFor('LB healthy', async () => (await fetch('http://127.0.4.60:35404/healthz')).status === 200, 10_000);

    // A client that stays on the VIP and sends its request only after the rotation below.
    const across = runClient({
      host: vip.address,
      port: vip.port,
      paths: ['/bytes/200000'],
      extraArgs: ['--no-preferred-addr', '--delay-stream=7000ms'],
      timeoutMs: 40_000,
    });
    await waitFor(
      'the first handshake',
      () => readEvents(events).some((e) => e.event === 'handshake-complete'),
      10_000,
    );
    expect(await counter(metrics, series(0))).toBeGreaterThan(0);

    // Steps 1-2: the new key and config reach the LB's volume; the README's reload command.
    const next: Any = {
      ...config0,
      quicLb: [...config0.quicLb, { configId: 1, serverIdLength: 2, nonceLength: 6, keyFile: 'quic-lb-1.hex' }],
      backends: config0.backends.map((b: Any) => ({ ...b, serverIds: { ...b.serverIds, 1: b.serverIds[0] } })),
    };
    kubeletWrite(lbVol, { 'config.yaml': stringify(next), ...keys0, 'quic-lb-1.hex': key1 });
    execFileSync('sh', [
      '-c',
      lbReload
        .replace('/etc/quic-lb/config.yaml', path.join(lbVol, 'config.yaml'))
        .replace('kill -HUP 1', `kill -HUP ${lb.pid}`),
    ]);
    await waitFor(
      'the LB reload',
      async () => (await counter(metrics, 'quic_lb_config_reloads_total{outcome="success"}')) === 1,
      5000,
    );
    expect(await counter(metrics, 'quic_lb_config_last_reload_success')).toBe(1);

    // Step 3: then the backends; the live connection gets config-1 CIDs (Retire Prior To).
    kubeletWrite(beVol, { 'config.yaml': stringify(next), ...keys0, 'quic-lb-1.hex': key1 });
    execFileSync('sh', ['-c', backendReload.replace('kill -HUP 1', `kill -HUP ${backend.pid}`)]);
    await waitFor(
      'the backend reload',
      () => /active QUIC-LB config 1, \d+ connections got new CIDs/.test(backend.output()),
      5000,
    );
    // The reload reached the connection while it was still open (its request is still delayed).
    expect(backend.output()).toMatch(/active QUIC-LB config 1, 1 connections got new CIDs/);
    const run = await across;
    expect(downloadedSha256(run, '200000'), explainDownload(run, '200000', 200000)).toBe(expectedSha256(200000));
    expect(await counter(metrics, series(1))).toBeGreaterThan(0);

    // Step 4: config 0 has drained: a new connection adds nothing to its counter.
    const drained = await counter(metrics, series(0));
    const fresh = await runClient({
      host: vip.address,
      port: vip.port,
      paths: ['/bytes/50000'],
      extraArgs: ['--no-preferred-addr'],
    });
    expect(downloadedSha256(fresh, '50000'), explainDownload(fresh, '50000', 50000)).toBe(expectedSha256(50000));
    expect(await counter(metrics, series(0))).toBe(drained);
    const oldCid = serverCidsSeen(run.output).scid!;
    expect(Number.parseInt(oldCid.slice(0, 2), 16) >> 5).toBe(0);

    // Step 5: config 0 and its key removed everywhere; LBs, then backends, reloaded.
    const final: Any = {
      ...next,
      quicLb: next.quicLb.filter((q: Any) => q.configId !== 0),
      backends: next.backends.map((b: Any) => ({ ...b, serverIds: { 1: b.serverIds[1] } })),
    };
    const keys1: Record<string, string> = { ...keys0, 'quic-lb-1.hex': key1 };
    delete keys1['quic-lb-0.hex'];
    kubeletWrite(lbVol, { 'config.yaml': stringify(final), ...keys1 });
    execFileSync('sh', [
      '-c',
      lbReload
        .replace('/etc/quic-lb/config.yaml', path.join(lbVol, 'config.yaml'))
        .replace('kill -HUP 1', `kill -HUP ${lb.pid}`),
    ]);
    await waitFor(
      'the second LB reload',
      async () => (await counter(metrics, 'quic_lb_config_reloads_total{outcome="success"}')) === 2,
      5000,
    );
    kubeletWrite(beVol, { 'config.yaml': stringify(final), ...keys1 });
    execFileSync('sh', ['-c', backendReload.replace('kill -HUP 1', `kill -HUP ${backend.pid}`)]);
    const after = await runClient({
      host: vip.address,
      port: vip.port,
      paths: ['/bytes/50000'],
      extraArgs: ['--no-preferred-addr'],
    });
    expect(has(after.output, 'QUIC handshake has been confirmed')).toBe(true);
    expect(downloadedSha256(after, '50000'), explainDownload(after, '50000', 50000)).toBe(expectedSha256(50000));
    // The old codepoint now means nothing to the LB.
    const route = runCli(['route', '--config', path.join(lbVol, 'config.yaml'), '--cid', oldCid, '--json']);
    expect(JSON.parse(route.stdout)).toMatchObject({ reason: 'fallback_unknown_config' });
    // LBs first: at no point did a datagram carry a CID the LB could not route.
    for (const reason of [
      'fallback_unknown_config',
      'fallback_unknown_server_id',
      'fallback_unroutable_0b111',
      'dropped_no_backend',
    ]) {
      expect(await counter(metrics, `quic_lb_received_packets_total{reason="${reason}"}`), reason).toBe(0);
    }
    expect(await stop(lb, 'SIGTERM', GRACEFUL_STOP_MS)).toBe(0);
    expect(await stop(backend, 'SIGTERM', GRACEFUL_STOP_MS)).toBe(0);
  });
});
