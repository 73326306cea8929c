// Health checks on real sockets: a backend that stops answering the UDP probe leaves the
// fallback table (only its own flows move), keeps its CID-routed packets for the grace period,
// then they fall back; and it comes back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-health-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('health checks', () => {
  it('a backend failing its UDP probe leaves the fallback table and comes back', async () => {
    const sinks = await Promise.all(['127.0.1.30', '127.0.1.31', '127.0.1.32'].map((x) => Sink.start(x)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const [a, b, c] = sinks;
    const names = new Map([
      [a, 'a'],
      [b, 'b'],
      [c, 'c'],
    ]);
    const file = path.join(dir, 'lb.yaml');
    writeYaml(file, {
      listen: ['127.0.1.3:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 1),
      backends: [
        { name: 'a', address: a.endpoint, serverIds: { 0: SIDS.a[0] } },
        { name: 'b', address: b.endpoint, serverIds: { 0: SIDS.b[0] } },
        { name: 'c', address: c.endpoint, serverIds: { 0: SIDS.c[0] } },
      ],
      health: { type: 'udp', intervalMs: 100, timeoutMs: 400, rise: 2, fall: 2, downGraceMs: 1500 },
      fallback: { key: FALLBACK_KEY },
      returnPath: { mode: 'direct' },
      metrics: { listen: '127.0.1.3:0' },
      drainMs: 0,
      log: { level: 'warn' },
    });
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    const clients = await Promise.all(Array.from({ length: 48 }, (_, i) => Client.start(`127.0.1.${100 + i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));
    const unroutable = shortHeader(Buffer.from('e7000102030405060708', 'hex'));

    /** Sends one fallback datagram per client; returns client index -> backend name. */
    const round = async (tag: number): Promise<string[]> => {
      const marks = sinks.map((s) => s.received.length);
      clients.forEach((cl, i) => {
        const dg = Buffer.from(unroutable);
        dg.writeUInt16BE(tag, dg.length - 4);
        dg.writeUInt16BE(i, dg.length - 2);
        cl.send(dg, lb.vip);
      });
      await waitFor(
        `round ${tag}`,
        () => sinks.reduce((n, s, k) => n + s.received.length - marks[k], 0) === clients.length,
        5000,
      );
      const owner: string[] = [];
      sinks.forEach((s, k) => {
        for (const r of s.received.slice(marks[k])) owner[r.payload.readUInt16BE(r.payload.length - 2)] = names.get(s)!;
      });
      return owner;
    };

    const first = await round(1);
    expect(first.filter((n) => n === 'c').length).toBeGreaterThan(0);

    c.healthy = false;
    await waitFor(
      'c unreachable',
      async () => (await lb.metrics()).get('quic_lb_backend_state{backend="c",state="unreachable"}') === 1,
      5000,
    );
    let m = await lb.metrics();
    expect(m.get('quic_lb_backend_state{backend="c",state="unreachable"}')).toBe(1);
    expect(m.get('quic_lb_backend_state{backend="c",state="up"}')).toBe(0);
    const second = await round(2);
    first.forEach((owner, i) => {
      if (owner === 'c') expect(second[i]).not.toBe('c');
      else expect(second[i]).toBe(owner); // only c's flows moved
    });
    // Probe loss is not death: within the grace a CID naming c still goes to c.
    const cBefore = c.received.length;
    clients[0].send(shortHeader(cid(0, SIDS.c[0])), lb.vip);
    await waitFor('routed to the unreachable backend', () => c.received.length === cBefore + 1, 3000);
    m = await lb.metrics();
    expect(m.get('quic_lb_received_packets_total{reason="fallback_backend_down"}') ?? 0).toBe(0);
    // Past the grace c is down: a CID naming it falls back to a live one (which can answer with a stateless reset).
    await waitFor(
      'c down after the grace',
      async () => (await lb.metrics()).get('quic_lb_backend_state{backend="c",state="down"}') === 1,
      5000,
    );
    const aBefore = a.received.length + b.received.length;
    clients[0].send(shortHeader(cid(0, SIDS.c[0])), lb.vip);
    await waitFor('backend_down fallback', () => a.received.length + b.received.length === aBefore + 1, 3000);
    m = await lb.metrics();
    expect(m.get('quic_lb_received_packets_total{reason="fallback_backend_down"}')).toBe(1);
    expect(m.get('quic_lb_cid_packets_total{config_id="0",result="backend_down"}')).toBe(1);
    expect(m.get('quic_lb_health_transitions_total{backend="c"}')).toBe(2);
    expect(await lb.healthz()).toBe(200);

    c.healthy = true;
    await waitFor(
      'c back up',
      async () => (await lb.metrics()).get('quic_lb_backend_state{backend="c",state="up"}') === 1,
      5000,
    );
    const third = await round(3);
    expect(third).toEqual(first); // the same table as before: deterministic from the health view
    m = await lb.metrics();
    expect(m.get('quic_lb_health_transitions_total{backend="c"}')).toBe(3);
    expect(m.get('quic_lb_health_checks_total{backend="c",result="failed"}')).toBeGreaterThanOrEqual(2);

    // Every backend down: /healthz fails so the route is withdrawn.
    for (const s of sinks) s.healthy = false;
    await waitFor('healthz 503 with no backend up', async () => (await lb.healthz()) === 503, 5000);
    await sleep(10);
    expect(await lb.stop()).toBe(0);
  });
});
