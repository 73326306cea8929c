// deploy/grafana/quic-lb.json against a real `quic-lb serve` (two workers, a health-probed
// backend, traffic, a reload) and a real server in server mode (`quic-lb demo backend --anycast`,
// its own and a peer's datagrams on the VIP): every metric the dashboard's PromQL names exists on
// one of the two /metrics, and every label it groups, filters or prints by is a label of those
// metrics. A renamed metric or label breaks this test. Needs dist/ (npm run build). Ports
// 35000-35999 on 127.0.4.x.
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { answerHealthProbe } from '../../src/wire/index.js';
import { createConfig, encodeConnectionId } from '../../src/cid/index.js';
import { startCli, stop } from '../helpers/process.js';
import { GRACEFUL_STOP_MS, deployDir } from './proc.js';
import { waitFor } from '../helpers/wait.js';

const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-grafana-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(work, { recursive: true, force: true });
});

const dashboard = JSON.parse(readFileSync(path.join(deployDir, 'grafana', 'quic-lb.json'), 'utf8')) as Record<
  string,
  unknown
>;

/** Every PromQL expression of the dashboard with the legend printed for it. */
function queries(): { where: string; expr: string; legend: string }[] {
  const out: { where: string; expr: string; legend: string }[] = [];
  const walk = (panels: Record<string, unknown>[]): void => {
    for (const p of panels) {
      for (const t of (p.targets as Record<string, string>[] | undefined) ?? [])
        out.push({ where: `panel "${String(p.title)}"`, expr: t.expr, legend: t.legendFormat ?? '' });
      walk((p.panels as Record<string, unknown>[] | undefined) ?? []);
    }
  };
  walk(dashboard.panels as Record<string, unknown>[]);
  for (const v of (dashboard.templating as { list: Record<string, unknown>[] }).list) {
    const q = v.query as { query?: string } | string;
    if (v.type === 'query')
      out.push({ where: `variable ${String(v.name)}`, expr: typeof q === 'string' ? q : q.query!, legend: '' });
  }
  for (const a of (dashboard.annotations as { list: Record<string, string>[] }).list)
    out.push({ where: `annotation ${a.name}`, expr: a.expr, legend: '' });
  return out;
}

/** Label names of each metric family in a Prometheus text exposition (from its samples). */
function scrapeLabels(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) out.set(type[1], out.get(type[1]) ?? new Set());
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (!m || line.startsWith('#')) continue;
    const labels = out.get(m[1]) ?? new Set<string>();
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="/g)) labels.add(l[1]);
    out.set(m[1], labels);
  }
  return out;
}

/** Labels a query relies on: matchers, by/without clauses, label_values(), legend {{label}}. */
function usedLabels(expr: string, legend: string): string[] {
  const labels = new Set<string>();
  for (const sel of expr.matchAll(/\{([^}]*)\}/g))
    for (const m of sel[1].matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) labels.add(m[1]);
  for (const g of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g))
    for (const l of g[1].split(',')) labels.add(l.trim());
  for (const v of expr.matchAll(/label_values\([^,]+,\s*(\w+)\)/g)) labels.add(v[1]);
  for (const l of legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) labels.add(l[1]);
  return [...labels];
}

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['instance', 'job'];

describe('deploy/grafana/quic-lb.json', () => {
  it('is an importable dashboard: unique panel ids, panels inside the 24-column grid without overlaps, data source as a variable', () => {
    const panels = dashboard.panels as {
      id: number;
      type: string;
      gridPos: { x: number; y: number; w: number; h: number };
      datasource?: { uid: string };
    }[];
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const [i, a] of panels.entries()) {
      expect(a.gridPos.x + a.gridPos.w).toBeLessThanOrEqual(24);
      if (a.type !== 'row') expect(a.datasource?.uid).toBe('${datasource}');
      for (const b of panels.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `panels ${a.id} and ${b.id} overlap`).toBe(false);
      }
    }
    expect((dashboard.templating as { list: { name: string }[] }).list.map((v) => v.name)).toEqual([
      'datasource',
      'instance',
    ]);
  });

  it('uses only metrics and labels that quic-lb serve and the server mode expose', async () => {
    // A backend that answers the LB's health probes (as the backend kit does).
    const backend = dgram.createSocket('udp4');
    await new Promise<void>((r) => backend.bind(35002, '127.0.4.2', r));
    cleanup.push(() => backend.close());
    let forwarded = 0;
    backend.on('message', (msg, rinfo) => {
      const reply = answerHealthProbe(msg);
      if (reply) backend.send(reply, rinfo.port, rinfo.address);
      else forwarded++;
    });
    const quicLb = { configId: 0, serverIdLength: 2, nonceLength: 6, key: '00112233445566778899aabbccddeeff' };
    const file = path.join(work, 'config.yaml');
    writeFileSync(
      file,
      stringify({
        listen: ['127.0.4.1:35001'],
        quicLb: [quicLb],
        backends: [{ name: 'edge-a', address: '127.0.4.2:35002', serverIds: { 0: '0001' } }],
        fallback: { key: 'ffeeddccbbaa99887766554433221100' },
        health: { type: 'udp', intervalMs: 100, timeoutMs: 100, rise: 1, fall: 2 },
        returnPath: { mode: 'via-lb', listen: '127.0.4.1:35003', hmacKey: '42'.repeat(32) },
        metrics: { listen: '127.0.4.1:35004' },
        workers: 2,
        drainMs: 300,
        log: { level: 'warn' },
      }),
    );
    const lb = await startCli(['serve', '--config', file]);
    cleanup.push(() => stop(lb));
    expect(lb.ready).toMatchObject({ ready: true, workers: 2 });
    const base = 'http://127.0.4.1:35004';
    await waitFor('/healthz 200', async () => (await fetch(`${base}/healthz`)).status === 200, 10_000);

    // Traffic: routed short headers, a malformed datagram, a spoofed return-path datagram; a reload.
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.4.9', r));
    cleanup.push(() => client.close());
    const cid = encodeConnectionId(
      createConfig({ ...quicLb, key: Buffer.from(quicLb.key, 'hex') }),
      Uint8Array.of(0, 1),
      new Uint8Array(6).fill(7),
    );
    for (let i = 0; i < 10; i++)
      client.send(Buffer.concat([Buffer.of(0x40), cid, Buffer.alloc(40, i)]), 35001, '127.0.4.1');
    client.send(Buffer.alloc(0), 35001, '127.0.4.1');
    client.send(Buffer.alloc(40, 1), 35003, '127.0.4.1');
    await waitFor('ten datagrams at the backend', () => forwarded === 10, 10_000);
    process.kill(lb.pid, 'SIGHUP');
    let text = '';
    await waitFor(
      'the reload and the return-path refusal on /metrics',
      async () => {
        text = await (await fetch(`${base}/metrics`)).text();
        return (
          /quic_lb_config_reloads_total\{outcome="success"\} 1/.test(text) &&
          /quic_lb_return_rejected_total\{reason="source"\} 1/.test(text)
        );
      },
      10_000,
    );
    expect(text).toMatch(/quic_lb_received_packets_total\{reason="routed"\} 10/);
    expect(text).toMatch(/quic_lb_received_packets_total\{reason="dropped_malformed"\} 1/);
    const exposed = scrapeLabels(text);
    // The server mode's own metrics (the anycast row), from a server with some VIP traffic.
    const anycast = await scrapeAnycastServer(quicLb, cid);
    const fromServer = [...anycast.keys()].filter((m) => m.startsWith('quic_lb_anycast_'));
    expect(fromServer.length).toBeGreaterThanOrEqual(8);
    for (const m of fromServer) exposed.set(m, anycast.get(m)!);

    const qs = queries();
    expect(qs.length).toBeGreaterThan(15);
    const seen = new Set<string>();
    for (const q of qs) {
      const metrics = [...new Set(q.expr.match(/\bquic_lb_[a-z0-9_]+/g) ?? [])];
      expect(metrics.length, `${q.where}: ${q.expr}`).toBeGreaterThan(0);
      const labels = new Set(TARGET_LABELS);
      for (const m of metrics) {
        expect(exposed.has(m), `${q.where}: metric ${m} is not on /metrics`).toBe(true);
        for (const l of exposed.get(m)!) labels.add(l);
        seen.add(m);
      }
      for (const l of usedLabels(q.expr, q.legend))
        expect(labels.has(l), `${q.where}: label ${l} is not a label of ${metrics.join(', ')}`).toBe(true);
    }
    // The dashboard covers every metric the LB and the server mode expose.
    const all = [...exposed.keys()].filter((m) => m.startsWith('quic_lb_'));
    expect(all.filter((m) => !seen.has(m))).toEqual([]);
    expect(await stop(lb, 'SIGTERM', GRACEFUL_STOP_MS)).toBe(0);
  });
});

/**
 * Runs server s1 of a two-server anycast config on loopback (s2 is absent), sends its VIP a
 * datagram with its own CID, one with s2's and a client's first Initial, and returns the label
 * names of its /metrics once the datagrams are counted.
 */
async function scrapeAnycastServer(
  quicLb: { configId: number; serverIdLength: number; nonceLength: number; key: string },
  ownCid: Uint8Array,
): Promise<Map<string, Set<string>>> {
  const file = path.join(work, 'anycast.yaml');
  writeFileSync(
    file,
    stringify({
      listen: ['127.0.4.11:35011'],
      quicLb: [quicLb],
      backends: [
        { name: 's1', address: '127.0.4.12:35012', serverIds: { 0: '0001' } },
        { name: 's2', address: '127.0.4.13:35013', serverIds: { 0: '0002' } },
      ],
      fallback: { key: 'ffeeddccbbaa99887766554433221100' },
      health: { type: 'udp', intervalMs: 100, timeoutMs: 100, rise: 1, fall: 2 },
      returnPath: { mode: 'direct', hmacKey: '42'.repeat(32), signForward: true },
      metrics: { listen: '127.0.4.11:35014' },
      anycast: { announce: { intervalMs: 200, maxConnections: 100, maxEventLoopDelayMs: 500, maxCpu: 0.9 } },
      log: { level: 'warn' },
    }),
  );
  const server = await startCli(['demo', 'backend', '--config', file, '--name', 's1', '--anycast']);
  cleanup.push(() => stop(server, 'SIGTERM', GRACEFUL_STOP_MS));
  const base = 'http://127.0.4.11:35014';
  await waitFor(
    'the server announced (/healthz 200)',
    async () => (await fetch(`${base}/healthz`)).status === 200,
    10_000,
  );
  const config = createConfig({ ...quicLb, key: Buffer.from(quicLb.key, 'hex') });
  const peerCid = encodeConnectionId(config, Uint8Array.of(0, 2), new Uint8Array(6).fill(9));
  const client = dgram.createSocket('udp4');
  await new Promise<void>((r) => client.bind(0, '127.0.4.9', r));
  cleanup.push(() => client.close());
  client.send(Buffer.concat([Buffer.of(0x40), ownCid, Buffer.alloc(40, 1)]), 35011, '127.0.4.11');
  client.send(Buffer.concat([Buffer.of(0x40), peerCid, Buffer.alloc(40, 2)]), 35011, '127.0.4.11');
  let text = '';
  await waitFor(
    'the local and the peer datagram on /metrics',
    async () => {
      text = await (await fetch(`${base}/metrics`)).text();
      return (
        /quic_lb_anycast_datagrams_total\{path="local"\} [1-9]/.test(text) &&
        /quic_lb_anycast_datagrams_total\{path="peer"\} [1-9]/.test(text)
      );
    },
    10_000,
  );
  expect(text).toMatch(/quic_lb_anycast_announced 1/);
  return scrapeLabels(text);
}
