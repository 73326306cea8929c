// socket.reusePort: two `quic-lb serve` processes bound to one VIP with SO_REUSEPORT share its
// flows (the kernel hashes the 4-tuple), every flow reaches the backend its CID names whichever
// LB takes it, and after the first LB is stopped every flow goes on through the second. Without
// the option the second bind fails with a clear error and exit code 2. Plus the config rules.
// Addresses 127.0.5.40-49, ports 26800-26899.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, restartOnlyChanges, validateConfig } from '../../src/lb/index.js';
import { dgramHasReusePort } from '../../src/lb/config.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { SIDS, backendDocs, cid, configDoc, shortHeader } from './fixtures.js';
import { Client, ServeProcess, Sink, sum, writeYaml } from './net.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-reuse-port-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

const NAMES = Object.keys(SIDS) as (keyof typeof SIDS)[];
const FLOWS = 64;
const PER_FLOW = 5;

function doc(backends: string[], vip: string, socket: Record<string, unknown>): Record<string, unknown> {
  return configDoc({
    listen: [vip],
    backends: backendDocs(backends),
    metrics: { listen: '127.0.5.40:0' },
    drainMs: 500,
    log: { level: 'warn' },
    socket,
  });
}

/** Backend index flow `i` is for: its CID carries that backend's server ID (config 0, plaintext). */
const backendOf = (i: number): number => i % NAMES.length;

/** Sends PER_FLOW datagrams on each flow, CID for `backendOf(flow)`, payload tagged with `round`. */
function sendRound(clients: Client[], vip: { address: string; port: number }, round: number): void {
  clients.forEach((c, i) => {
    for (let k = 0; k < PER_FLOW; k++)
      c.send(shortHeader(cid(0, SIDS[NAMES[backendOf(i)]][0], round * 1000 + i * 10 + k)), vip);
  });
}

/** Which backend each client port's datagrams reached (asserts one backend per flow). */
function where(sinks: Sink[]): Map<number, number> {
  const m = new Map<number, number>();
  sinks.forEach((s, k) => {
    for (const r of s.received) {
      expect(m.get(r.clientPort) ?? k, `flow ${r.clientPort}`).toBe(k);
      m.set(r.clientPort, k);
    }
  });
  return m;
}

const total = (sinks: Sink[]): number => sinks.reduce((n, s) => n + s.received.length, 0);
const forwarded = (m: Map<string, number>): number =>
  sum(m, 'quic_lb_received_packets_total') - (m.get('quic_lb_received_packets_total{reason="dropped_malformed"}') ?? 0);

describe('socket.reusePort: a second LB on the same VIP', () => {
  it('two LBs share the flows; after the first is stopped every flow reaches its backend through the second', async () => {
    const sinks = await Promise.all([41, 42, 43, 44].map((x) => Sink.start(`127.0.5.${x}`)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const clients = await Promise.all(Array.from({ length: FLOWS }, () => Client.start('127.0.5.45')));
    cleanup.push(() => clients.forEach((c) => c.close()));
    const file = path.join(dir, 'reuse.yaml');
    writeYaml(
      file,
      doc(
        sinks.map((s) => s.endpoint),
        '127.0.5.40:26801',
        { reusePort: true },
      ),
    );

    const a = await ServeProcess.start(file);
    cleanup.push(() => a.stop('SIGKILL'));
    const b = await ServeProcess.start(file);
    cleanup.push(() => b.stop('SIGKILL'));
    expect(b.vip).toEqual(a.vip);

    // Both running: 64 flows (source ports) spread over the group by the kernel's 4-tuple hash.
    sendRound(clients, a.vip, 1);
    await waitFor('round 1 delivered', () => total(sinks) === FLOWS * PER_FLOW, 5000);
    const first = where(sinks);
    expect(first.size).toBe(FLOWS);
    clients.forEach((c, i) => expect(first.get(c.port)).toBe(backendOf(i)));
    sinks.forEach((s) => expect(s.received.length).toBe((FLOWS / NAMES.length) * PER_FLOW));
    const [ma, mb] = await Promise.all([a.metrics(), b.metrics()]);
    // Each LB took a share (64 flows all hashed to one socket: probability 2^-63), together all.
    expect(forwarded(ma)).toBeGreaterThan(0);
    expect(forwarded(mb)).toBeGreaterThan(0);
    expect(forwarded(ma) + forwarded(mb)).toBe(FLOWS * PER_FLOW);
    for (const [k, name] of NAMES.entries()) {
      const series = `quic_lb_backend_packets_total{backend="${name}",direction="to_backend"}`;
      expect((ma.get(series) ?? 0) + (mb.get(series) ?? 0), name).toBe(sinks[k].received.length);
    }

    // The first LB stopped (SIGTERM: drains drainMs, still forwarding, then closes and exits 0).
    expect(await a.stop('SIGTERM')).toBe(0);
    for (const s of sinks) s.received.length = 0;
    sendRound(clients, a.vip, 2);
    await waitFor('round 2 delivered', () => total(sinks) === FLOWS * PER_FLOW, 5000);
    const second = where(sinks);
    expect([...second.entries()].sort()).toEqual([...first.entries()].sort());
    const mb2 = await b.metrics();
    expect(forwarded(mb2) - forwarded(mb)).toBe(FLOWS * PER_FLOW);
    expect(sum(mb2, 'quic_lb_send_errors_total')).toBe(0);
    expect(await b.stop('SIGTERM')).toBe(0);
  }, 30_000);

  it('without reusePort the second LB cannot bind the VIP: a clear error, exit code 2', async () => {
    // Nothing is sent: the backends need no socket.
    const backends = [0, 1, 2, 3].map((i) => `127.0.5.46:${26810 + i}`);
    const plain = path.join(dir, 'plain.yaml');
    writeYaml(plain, doc(backends, '127.0.5.40:26802', {}));
    const a = await ServeProcess.start(plain);
    cleanup.push(() => a.stop('SIGKILL'));
    const second = runCli(['serve', '--config', plain, '--no-watch'], { timeoutMs: 15_000 });
    expect(second.status).toBe(2);
    expect(second.stderr).toContain('quic-lb: EADDRINUSE: cannot bind 127.0.5.40:26802: address in use');
    expect(second.stderr).toContain('socket.reusePort: true');
    // One with the option cannot join a socket bound without it either.
    const reuse = path.join(dir, 'reuse-late.yaml');
    writeYaml(reuse, doc(backends, '127.0.5.40:26802', { reusePort: true }));
    const third = runCli(['serve', '--config', reuse, '--no-watch'], { timeoutMs: 15_000 });
    expect(third.status).toBe(2);
    expect(third.stderr).toContain('bound without SO_REUSEPORT or by another user');
    expect(await a.stop('SIGTERM')).toBe(0);
  }, 30_000);
});

describe('socket.reusePort: config', () => {
  const base = { listen: ['127.0.5.40:26803'], returnPath: { mode: 'direct' } };
  const errorOf = (over: Record<string, unknown>): ConfigError => {
    try {
      validateConfig(configDoc({ ...base, ...over }));
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error('accepted');
  };

  it('knows which Node has node:dgram reusePort (22.12+, 23.1+)', () => {
    expect(['20.19.5', '22.11.0', '23.0.0'].map(dgramHasReusePort)).toEqual([false, false, false]);
    expect(['22.12.0', '22.23.5', '23.1.0', '24.0.0', '25.2.1'].map(dgramHasReusePort)).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
  });

  it('is off by default, on when asked (this Node has it), and a restart-only field', () => {
    const off = validateConfig(configDoc(base));
    expect(off.socket.reusePort).toBe(false);
    expect(dgramHasReusePort(process.versions.node)).toBe(true); // CI: Node 22.12+ and 24
    const on = validateConfig(configDoc({ ...base, socket: { reusePort: true } }));
    expect(on.socket.reusePort).toBe(true);
    expect(restartOnlyChanges(off, on)).toEqual(['/socket']);
  });

  it('refuses what cannot work: a non-boolean, port 0, cluster workers', () => {
    const cases: [Record<string, unknown>, string, string, RegExp][] = [
      [{ socket: { reusePort: 'yes' } }, 'ERR_CONFIG_TYPE', '/socket/reusePort', /expected a boolean/],
      [
        { listen: ['127.0.5.40:0'], socket: { reusePort: true } },
        'ERR_CONFIG_VALUE',
        '/listen/0',
        /kernel-chosen port/,
      ],
      [
        { returnPath: { listen: '127.0.5.40:0' }, socket: { reusePort: true } },
        'ERR_CONFIG_VALUE',
        '/returnPath/listen',
        /kernel-chosen port/,
      ],
      [{ workers: 2, socket: { reusePort: true } }, 'ERR_CONFIG_VALUE', '/workers', /must be 1 with socket.reusePort/],
      [{ workers: 0, socket: { reusePort: true } }, 'ERR_CONFIG_VALUE', '/workers', /got 0/],
    ];
    for (const [over, code, field, reason] of cases) {
      const e = errorOf(over);
      expect(e).toBeInstanceOf(ConfigError);
      expect([e.code, e.field]).toEqual([code, field]);
      expect(e.reason).toMatch(reason);
    }
  });
});
