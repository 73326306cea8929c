// One server of the server topology, set up exactly as deploy/ says, in a network namespace
// (root): the command lines of deploy/systemd/quic-lb-anycast@.service (ExecStartPre, ExecStart,
// ExecStop) and of quic-lb-anycast-vip-health@.service with the example environment file, BIRD
// with deploy/bird/lb.conf.template, and deploy/config/anycast.yaml with the server's addresses
// on the namespace's interfaces. The real server mode announces the VIP once it is ready (BIRD's
// protocol `vip` up), and the unit's stop withdraws it (SIGUSR2: /healthz 503 `draining`, `vip`
// down) while the process is still serving, before SIGTERM ends it. Prints the node's share of
// the withdrawal time (SIGUSR2 -> /healthz 503 -> BIRD withdraws); the router's share is the
// namespace fleet's (test/netns/anycast*.test.ts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { cliPath } from '../helpers/cli.js';
import { parseMetrics } from '../helpers/metrics.js';
import { startProcess, stop, type Proc } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';
import { canUseNetns, commandExists } from '../netns/netns.js';
import { anycastEtc, anycastExample } from './anycast.js';
import { GRACEFUL_STOP_MS, deployDir, unitDirectives } from './proc.js';

const RUN = canUseNetns() && commandExists('bird') && commandExists('birdc') && commandExists('curl');
const NS = `qlbd-node-${process.pid}`;
const unitDir = path.join(deployDir, 'systemd');

/** The parts of a unit command line, split as systemd splits it (single quotes group). */
function words(cmd: string): string[] {
  return [...cmd.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

/**
 * A unit's command line as systemd would run it here: the `+`/`-` prefix dropped, `%i`, `${VAR}`
 * and `$VAR` words substituted from `env`, and the installed paths mapped to this checkout.
 */
function commandLine(cmd: string, env: Record<string, string>, paths: Record<string, string[]>): string[] {
  return words(cmd.replace(/^[+-]+/, '')).flatMap((w) => {
    const v = w
      .replaceAll('%i', env.INSTANCE)
      .replace(/\$\{(\w+)\}/g, (_m, k: string) => env[k] ?? '')
      .replace(/^\$(\w+)$/, (_m, k: string) => env[k] ?? '');
    return paths[v] ?? [v];
  });
}

function ns(args: string[], timeoutMs = 15_000): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8', timeout: timeoutMs });
}

describe.runIf(RUN)('a server node as deploy/ sets it up (systemd command lines, vip-health.sh, BIRD)', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-anycast-node-'));
  const started: Proc[] = [];
  const children: ChildProcess[] = [];
  /** A process without a ready line (vip-health.sh, the ExecStop script), stopped by PID at the end. */
  const spawnTracked = (argv: string[]): { child: ChildProcess; exited: Promise<number | null> } => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    children.push(child);
    return { child, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
  };
  afterAll(async () => {
    for (const c of children)
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        const gone = new Promise((r) => c.once('exit', r));
        process.kill(c.pid, 'SIGTERM');
        await gone;
      }
    for (const p of started.reverse()) await stop(p, 'SIGTERM', 3000);
    spawnSync('ip', ['netns', 'del', NS]);
    rmSync(work, { recursive: true, force: true });
  });

  it('announces the VIP once the server is ready; the unit stop withdraws it while the server still serves', async () => {
    const config = parse(readFileSync(anycastExample, 'utf8')) as { backends: { name: string; address: string }[] };
    const me = config.backends[0];
    const myAddress = me.address.replace(/:\d+$/, '');
    // The namespace: loopback up, the server's unicast address on an interface, the router beyond it.
    for (const c of [
      ['ip', 'netns', 'add', NS],
      ['ip', '-n', NS, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', NS, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'router'],
      ['ip', '-n', NS, 'addr', 'add', `${myAddress}/24`, 'dev', 'uplink'],
      ['ip', '-n', NS, 'link', 'set', 'uplink', 'up'],
      ['ip', '-n', NS, 'link', 'set', 'router', 'up'],
    ]) {
      const r = spawnSync(c[0], c.slice(1), { encoding: 'utf8' });
      expect(r.status, `${c.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const etc = anycastEtc(path.join(work, 'etc'));
    const birdSock = path.join(work, 'bird.ctl');
    const server = unitDirectives(readFileSync(path.join(unitDir, 'quic-lb-anycast@.service'), 'utf8'));
    const vipHealth = unitDirectives(readFileSync(path.join(unitDir, 'quic-lb-anycast-vip-health@.service'), 'utf8'));
    const envFile = Object.fromEntries(
      readFileSync(path.join(unitDir, 'quic-lb-anycast.env'), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const env: Record<string, string> = { INSTANCE: me.name, ...envFile };
    const paths: Record<string, string[]> = {
      '/usr/local/bin/quic-lb': [process.execPath, cliPath],
      '/etc/quic-lb/config.yaml': [etc],
      '/etc/quic-lb/keys/reset.hex': [path.join(path.dirname(etc), 'keys', 'reset.hex')],
      '/usr/local/libexec/quic-lb/vip-health.sh': [path.join(deployDir, 'bird', 'vip-health.sh')],
      '/run/bird/bird.ctl': [birdSock],
    };

    // ExecStartPre: check-config, then the VIP on lo.
    for (const pre of server.get('Service.ExecStartPre')!) {
      const r = ns(commandLine(pre, env, paths));
      expect(r.status, `${pre}: ${r.stderr}`).toBe(0);
    }
    expect(ns(['ip', '-4', 'addr', 'show', 'dev', 'lo']).stdout).toContain(`inet ${env.VIP}/32`);

    // BIRD, as deploy/bird/README.md renders it for this server (the router is not there: the
    // session never comes up, the protocol `vip` state is what vip-health.sh drives).
    const birdConf = path.join(work, 'bird.conf');
    writeFileSync(
      birdConf,
      readFileSync(path.join(deployDir, 'bird', 'lb.conf.template'), 'utf8')
        .replaceAll('{{ROUTER_ID}}', myAddress)
        .replaceAll('{{LOCAL_ADDR}}', myAddress)
        .replaceAll('{{VIP}}', env.VIP)
        .replaceAll('{{LOCAL_AS}}', '65001')
        .replaceAll('{{PEER_ADDR}}', myAddress.replace(/\.\d+$/, '.1'))
        .replaceAll('{{PEER_AS}}', '65000'),
    );
    started.push(
      await startProcess(
        'ip',
        ['netns', 'exec', NS, 'bird', '-f', '-c', birdConf, '-s', birdSock, '-P', path.join(work, 'bird.pid')],
        { readyWhen: () => ns(['birdc', '-s', birdSock, 'show', 'status']).stdout.includes('Daemon is up') },
      ),
    );
    const vipState = (): string =>
      /^vip\s+Static\s+\S+\s+(\w+)/m.exec(ns(['birdc', '-s', birdSock, 'show', 'protocols', 'vip']).stdout)?.[1] ??
      'no answer';
    expect(vipState()).toBe('down'); // nothing announced before the server is ready

    // ExecStart: the server, then the announcer of the vip-health unit.
    const s = await startProcess('ip', ['netns', 'exec', NS, ...commandLine(one(server, 'ExecStart'), env, paths)], {
      timeoutMs: 30_000,
    });
    started.push(s);
    expect(s.ready).toMatchObject({ ready: true, name: me.name, anycast: true });
    spawnTracked(['ip', 'netns', 'exec', NS, ...commandLine(one(vipHealth, 'ExecStart'), env, paths)]);
    const healthz = (): { code: string; body: string } => {
      const r = ns(['curl', '-s', '--max-time', '2', '-w', '\n%{http_code}', `http://${env.METRICS}/healthz`]);
      const lines = r.stdout.split('\n');
      return { code: lines.pop() ?? '', body: lines.join('\n') };
    };
    const metrics = (): Map<string, number> =>
      parseMetrics(ns(['curl', '-s', '--max-time', '2', `http://${env.METRICS}/metrics`]).stdout);
    await waitFor('/healthz 200 (announced)', () => healthz().code === '200', 20_000);
    await waitFor('BIRD protocol vip up (VIP announced)', () => vipState() === 'up', 15_000);
    expect(metrics().get('quic_lb_anycast_announced')).toBe(1);

    // ExecStop with the main PID: SIGUSR2, then DRAIN_SECONDS of service before KillSignal.
    // Shorter than the shipped DRAIN_SECONDS, so what holds here holds there.
    const drainSeconds = 6;
    expect(Number(envFile.DRAIN_SECONDS)).toBeGreaterThanOrEqual(drainSeconds);
    const t0 = Date.now();
    const stopEnv = { ...env, MAINPID: String(s.pid), DRAIN_SECONDS: String(drainSeconds) };
    const stopScript = spawnTracked(commandLine(one(server, 'ExecStop'), stopEnv, paths));
    let t503 = 0;
    await waitFor(
      '/healthz 503 draining',
      () => {
        const h = healthz();
        if (h.code !== '503') return false;
        expect(h.body).toContain('draining');
        t503 = Date.now();
        return true;
      },
      5000,
    );
    await waitFor('BIRD protocol vip down (VIP withdrawn)', () => vipState() === 'down', 10_000);
    const tDown = Date.now();
    // Withdrawn while the server still runs and before ExecStop returns (after which systemd
    // sends KillSignal): the drain keeps it serving for DRAIN_SECONDS.
    expect(s.child.exitCode).toBeNull();
    expect(stopScript.child.exitCode).toBeNull();
    const m = metrics();
    expect(m.get('quic_lb_anycast_announced')).toBe(0);
    expect(m.get('quic_lb_anycast_withdrawn{reason="draining"}')).toBe(1);
    expect(m.get('quic_lb_anycast_withdrawals_total{reason="draining"}')).toBe(1);
    console.log(
      `anycast node: SIGUSR2 -> /healthz 503 in ${t503 - t0} ms, -> BIRD vip withdrawn in ${tDown - t0} ms (vip-health interval 1 s, fall 2)`,
    );
    // The script returns, with status 0, after DRAIN_SECONDS.
    expect(await stopScript.exited).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(drainSeconds * 1000);
    // KillSignal: SIGTERM ends the server cleanly.
    expect(await stop(s, one(server, 'KillSignal') as NodeJS.Signals, GRACEFUL_STOP_MS)).toBe(0);
  }, 90_000);
});

function one(d: Map<string, string[]>, key: string): string {
  const v = d.get(`Service.${key}`);
  if (!v || v.length !== 1) throw new Error(`expected exactly one Service.${key}, got ${JSON.stringify(v)}`);
  return v[0];
}
