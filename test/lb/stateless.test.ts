// Statelessness: two LB processes with one config route every datagram of a mixed trace to the
// same backend (and agree with the in-process decide() that `quic-lb route` uses); two cluster
// workers share the VIP and /metrics adds them up.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FourTuple, REASON_NAMES, buildRouterState, decide, isForwarded, loadConfigFile } from '../../src/lb/index.js';
import { Client, ServeProcess, Sink, sum, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { QUIC_V1, QUIC_V2, SIDS, V1, V2, backendDocs, cid, configDoc, longHeader, shortHeader } from './fixtures.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-stateless-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

/** A mixed trace: every algorithm, client Initials, unroutable and broken datagrams. */
function trace(): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 6; i++) {
    out.push(
      shortHeader(cid(0, SIDS.a[0], i)),
      shortHeader(cid(1, SIDS.b[1], i)),
      shortHeader(cid(2, SIDS.c[2], i)),
      shortHeader(cid(3, SIDS.b[3], i)),
    );
    out.push(
      longHeader(QUIC_V1, V1.INITIAL, Buffer.from(`a1b2c3d4e5f607${(i + 16).toString(16)}`, 'hex'), undefined, 1200),
    );
    out.push(longHeader(QUIC_V2, V2.INITIAL, Buffer.from(`0102030405060${i}`, 'hex'), undefined, 1200));
    out.push(longHeader(QUIC_V1, V1.HANDSHAKE, cid(0, SIDS.d[0], i)));
    out.push(shortHeader(Buffer.from(`e70${i}0102030405060708`, 'hex')));
    out.push(shortHeader(Buffer.from(`880${i}0102030405060708`, 'hex')));
    out.push(shortHeader(cid(0, '0099', i)));
    out.push(longHeader(0x1a2a3a4a, 0, Buffer.alloc(12, i)));
    out.push(longHeader(0, 0, Buffer.alloc(8, 0x40 + i)));
    out.push(Buffer.from(`c00000000114000${i}`, 'hex')); // malformed
  }
  out.push(Buffer.alloc(0), Buffer.of(0x40));
  return out;
}

function baseConfig(sinks: Sink[], vip: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return configDoc({
    listen: [vip],
    backends: backendDocs(sinks.map((s) => s.endpoint)),
    metrics: { listen: '127.0.1.4:0' },
    drainMs: 0,
    log: { level: 'warn' },
    ...extra,
  });
}

describe('stateless: several LBs, one answer', () => {
  it('two LB processes with one config route a mixed trace identically (and like decide())', async () => {
    const sinks = await Promise.all(['127.0.1.40', '127.0.1.41', '127.0.1.42', '127.0.1.43'].map((x) => Sink.start(x)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const clients = await Promise.all(Array.from({ length: 8 }, (_, i) => Client.start(`127.0.1.${160 + i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));
    const file = path.join(dir, 'stateless.yaml');
    // Same VIP for both: an anycast address is the same on every LB, and it is part of the 4-tuple.
    writeYaml(file, baseConfig(sinks, '127.0.1.4:20401'));
    const dgs = trace();

    const runOnce = async (): Promise<Map<string, string>> => {
      for (const s of sinks) s.received.length = 0;
      const lb = await ServeProcess.start(file);
      cleanup.push(() => lb.stop('SIGKILL'));
      dgs.forEach((dg, i) => clients[i % clients.length].send(dg, lb.vip));
      let forwarded = 0;
      await waitFor(
        'trace counted',
        async () => {
          const m = await lb.metrics();
          forwarded =
            sum(m, 'quic_lb_received_packets_total') -
            (m.get('quic_lb_received_packets_total{reason="dropped_malformed"}') ?? 0);
          return sum(m, 'quic_lb_received_packets_total') === dgs.length;
        },
        5000,
      );
      await waitFor('trace delivered', () => sinks.reduce((n, s) => n + s.received.length, 0) === forwarded, 5000);
      expect(await lb.stop()).toBe(0);
      const where = new Map<string, string>();
      sinks.forEach((s, k) => {
        for (const r of s.received) where.set(`${r.clientPort}/${r.payload.toString('hex')}`, 'abcd'[k]);
      });
      return where;
    };
    const first = await runOnce();
    const second = await runOnce();
    expect(first.size).toBe(dgs.length - 7); // 6 malformed + 1 empty are dropped
    // Client ports differ between runs? No: the same sockets are reused, so keys match.
    expect([...second.entries()].sort()).toEqual([...first.entries()].sort());

    // The same decisions from decide() in this process (what `quic-lb route` prints).
    const config = loadConfigFile(file);
    const state = buildRouterState(config);
    const t = new FourTuple();
    t.vip.set([127, 0, 1, 4]);
    t.vipPort = 20401;
    let checked = 0;
    dgs.forEach((dg, i) => {
      const cl = clients[i % clients.length];
      t.client.set(cl.address.split('.').map(Number));
      t.clientPort = cl.port;
      const d = decide(dg, t, state);
      const key = `${cl.port}/${dg.toString('hex')}`;
      if (isForwarded(d.reason)) {
        expect(first.get(key), `${REASON_NAMES[d.reason]} ${key}`).toBe(config.backends[d.backend].name);
        checked++;
      } else expect(first.has(key)).toBe(false);
    });
    expect(checked).toBe(first.size);

    // `quic-lb route` agrees for one fallback datagram.
    const i = dgs.findIndex((dg) => dg[0] === 0x41 && dg[1] === 0xe7);
    const cl = clients[i % clients.length];
    const r = runCli([
      'route',
      '--config',
      file,
      dgs[i].toString('hex'),
      '--from',
      `${cl.address}:${cl.port}`,
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { backend: string; reason: string };
    expect(out.reason).toBe('fallback_unroutable_0b111');
    expect(out.backend).toBe(first.get(`${cl.port}/${dgs[i].toString('hex')}`));
  });

  it('2 cluster workers share the VIP; /metrics aggregates both; SIGHUP reaches both', async () => {
    const sinks = await Promise.all(['127.0.1.44', '127.0.1.45', '127.0.1.46', '127.0.1.47'].map((x) => Sink.start(x)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const clients = await Promise.all(Array.from({ length: 8 }, (_, i) => Client.start(`127.0.1.${170 + i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));
    const file = path.join(dir, 'workers.yaml');
    const doc = baseConfig(sinks, '127.0.1.5:20402', { workers: 2, metrics: { listen: '127.0.1.5:20403' } });
    writeYaml(file, doc);
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    expect(lb.info.workers).toBe(2);
    const N = 4000;
    const dg = shortHeader(cid(0, SIDS.a[0]));
    for (let sent = 0; sent < N;) {
      for (let k = 0; k < 200; k++, sent++) {
        const d = Buffer.from(dg);
        d.writeUInt32BE(sent, d.length - 4);
        clients[sent % clients.length].send(d, lb.vip);
      }
      await sleep(5);
    }
    await waitFor('all datagrams through the workers', () => sinks[0].received.length === N, 10_000);
    const m = await lb.metrics();
    expect(m.get('quic_lb_workers')).toBe(2);
    expect(m.get('quic_lb_received_packets_total{reason="routed"}')).toBe(N);
    const perWorker = [...m.entries()].filter(([k]) => k.startsWith('quic_lb_worker_received_packets_total'));
    expect(perWorker.length).toBe(2);
    expect(perWorker.reduce((n, [, v]) => n + v, 0)).toBe(N);
    // Both workers took a share (the kernel wakes whichever worker waits on the shared socket).
    for (const [, v] of perWorker) expect(v).toBeGreaterThan(0);

    // Reload fans out: b gets server ID 0005 of config 0 in both workers.
    (doc.backends as { serverIds: Record<string, string[]> }[])[1].serverIds['0'].push('0005');
    writeYaml(file, doc);
    lb.proc.kill('SIGHUP');
    await waitFor(
      'reload',
      async () => (await lb.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') === 1,
      5000,
    );
    const before = sinks[1].received.length;
    for (let i = 0; i < 400; i++) clients[i % clients.length].send(shortHeader(cid(0, '0005', i)), lb.vip);
    await waitFor('new server ID routed by every worker', () => sinks[1].received.length === before + 400, 5000);
    const m2 = await lb.metrics();
    expect(m2.get('quic_lb_received_packets_total{reason="routed"}')).toBe(N + 400);

    // A worker that dies is replaced; totals never go backwards; forwarding goes on.
    const children = (): number[] =>
      readFileSync(`/proc/${lb.proc.pid}/task/${lb.proc.pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    const before2 = children();
    expect(before2.length).toBe(2);
    process.kill(before2[0], 'SIGKILL');
    await waitFor('worker replaced', () => children().length === 2 && !children().includes(before2[0]), 10_000);
    await waitFor('replacement forwarding', async () => (await lb.metrics()).get('quic_lb_workers') === 2, 10_000);
    const m3 = await lb.metrics();
    expect(m3.get('quic_lb_received_packets_total{reason="routed"}')).toBeGreaterThanOrEqual(N + 400);
    const b2 = sinks[1].received.length;
    for (let i = 0; i < 200; i++) clients[i % clients.length].send(shortHeader(cid(0, '0005', 1000 + i)), lb.vip);
    await waitFor('forwarding after the worker restart', () => sinks[1].received.length === b2 + 200, 5000);
    expect(await lb.stop()).toBe(0);
  });
});
