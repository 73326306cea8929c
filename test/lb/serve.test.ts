// `quic-lb serve` on loopback with real sockets: forwarding by CID and by fallback with the
// client address preserved, the return path and its refusals, graceful drain.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, QUIC_V1, SIDS, V1, cid, longHeader, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-serve-'));
const HMAC = Buffer.from('42'.repeat(32), 'hex');
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

function tagged(base: Buffer, tag: number): Buffer {
  const b = Buffer.from(base);
  b.writeUInt32BE(tag, b.length - 4);
  return b;
}

describe('quic-lb serve (one process)', () => {
  it('forwards by CID and by fallback, keeps the client address, serves the return path, refuses spoofs, drains on SIGTERM', async () => {
    const sinks = await Promise.all(['127.0.1.10', '127.0.1.11', '127.0.1.12'].map((a) => Sink.start(a)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const [a, b, c] = sinks;
    const file = path.join(dir, 'lb.yaml');
    writeYaml(file, {
      listen: ['127.0.1.1:0'],
      quicLb: QUIC_LB_SPECS,
      backends: [
        { name: 'a', address: a.endpoint, serverIds: { 0: SIDS.a[0], 1: SIDS.a[1], 2: SIDS.a[2] } },
        { name: 'b', address: b.endpoint, serverIds: { 0: SIDS.b[0], 1: SIDS.b[1] } },
        { name: 'c', address: c.endpoint, serverIds: { 0: SIDS.c[0], 2: SIDS.c[2] } },
      ],
      health: { type: 'udp', intervalMs: 200, timeoutMs: 500 },
      fallback: { key: FALLBACK_KEY },
      returnPath: { listen: '127.0.1.1:0', hmacKey: HMAC.toString('hex') },
      metrics: { listen: '127.0.1.1:0' },
      drainMs: 1500,
      log: { level: 'warn' },
    });
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    const vip = lb.vip;
    expect(vip.address).toBe('127.0.1.1');
    const client = await Client.start('127.0.1.50');
    cleanup.push(() => client.close());

    // 5 routed datagrams per backend (three algorithms), 20 client Initials from one 4-tuple.
    const routed = [
      { sink: a, dg: shortHeader(cid(0, SIDS.a[0])) },
      { sink: b, dg: shortHeader(cid(1, SIDS.b[1])) },
      { sink: c, dg: shortHeader(cid(2, SIDS.c[2])) },
      { sink: a, dg: longHeader(QUIC_V1, V1.HANDSHAKE, cid(1, SIDS.a[1])) },
    ];
    let tag = 0;
    const expected = new Map<Sink, Buffer[]>(sinks.map((s) => [s, []]));
    for (let i = 0; i < 5; i++) {
      for (const r of routed) {
        const dg = tagged(r.dg, ++tag);
        expected.get(r.sink)!.push(dg);
        client.send(dg, vip);
      }
    }
    const initials: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const dg = tagged(
        longHeader(QUIC_V1, V1.INITIAL, Buffer.from('a1b2c3d4e5f60718', 'hex'), undefined, 1200),
        ++tag,
      );
      initials.push(dg);
      client.send(dg, vip);
    }
    await waitFor(
      'all 40 datagrams at the sinks',
      () => sinks.reduce((n, s) => n + s.received.length, 0) === 40,
      10_000,
    );
    for (const s of sinks) {
      const got = s.received.filter((r) => !initials.some((i) => i.equals(r.payload)));
      expect(got.map((r) => r.payload.toString('hex'))).toEqual(expected.get(s)!.map((d) => d.toString('hex')));
      for (const r of s.received) {
        // The backend sees the real client and the VIP it sent to.
        expect(r.client).toBe('127.0.1.50');
        expect(r.clientPort).toBe(client.port);
        expect(r.vip).toBe('127.0.1.1');
        expect(r.vipPort).toBe(vip.port);
      }
    }
    // Every packet of one client flight reaches the same backend.
    const initialHolders = sinks.filter((s) => s.received.some((r) => initials.some((i) => i.equals(r.payload))));
    expect(initialHolders.length).toBe(1);
    expect(initialHolders[0].received.filter((r) => initials.some((i) => i.equals(r.payload))).length).toBe(20);

    // Return path: via the return port (signed), and via the upstream socket the datagram came from.
    const ret = lb.info.returnPort!;
    const me = { address: '127.0.1.50', port: client.port };
    a.reply(ret, vip, me, Buffer.from('reply-via-return-port'), HMAC);
    b.reply(b.received[0].from, vip, me, Buffer.from('reply-via-upstream-socket'), HMAC);
    // Refused: unsigned, wrong key, not a backend address, not a PROXY header, unknown VIP.
    a.reply(ret, vip, me, Buffer.from('spoof-unsigned'));
    a.reply(ret, vip, me, Buffer.from('spoof-wrong-key'), Buffer.alloc(32, 1));
    const stranger = await Sink.start('127.0.1.99');
    cleanup.push(() => stranger.close());
    stranger.reply(ret, vip, me, Buffer.from('spoof-stranger'), HMAC);
    a.socket.send(Buffer.from('not a proxy header at all'), ret.port, ret.address);
    a.reply(
      ret,
      { address: vip.address, port: vip.port === 65535 ? 1 : vip.port + 1 },
      me,
      Buffer.from('spoof-other-vip'),
      HMAC,
    );
    await waitFor('two replies at the client', () => client.received.length >= 2, 5000);
    await sleep(300);
    expect(client.received.map((r) => r.payload.toString()).sort()).toEqual([
      'reply-via-return-port',
      'reply-via-upstream-socket',
    ]);
    for (const r of client.received) {
      expect(r.from.address).toBe('127.0.1.1');
      expect(r.from.port).toBe(vip.port);
    }

    const m = await lb.metrics();
    expect(m.get('quic_lb_received_packets_total{reason="routed"}')).toBe(20);
    expect(m.get('quic_lb_received_packets_total{reason="fallback_initial"}')).toBe(20);
    expect(m.get('quic_lb_cid_packets_total{config_id="1",result="routed"}')).toBe(10);
    expect(m.get('quic_lb_backend_packets_total{backend="a",direction="to_backend"}')).toBe(
      10 + (initialHolders[0] === a ? 20 : 0),
    );
    expect(m.get('quic_lb_backend_routed_packets_total{backend="a"}')).toBe(10);
    expect(m.get('quic_lb_return_packets_total')).toBe(2);
    expect(m.get('quic_lb_backend_packets_total{backend="a",direction="to_client"}')).toBe(1);
    expect(m.get('quic_lb_backend_packets_total{backend="b",direction="to_client"}')).toBe(1);
    expect(m.get('quic_lb_return_rejected_total{reason="hmac"}')).toBe(2);
    expect(m.get('quic_lb_return_rejected_total{reason="source"}')).toBe(1);
    expect(m.get('quic_lb_return_rejected_total{reason="header"}')).toBe(1);
    expect(m.get('quic_lb_return_rejected_total{reason="vip"}')).toBe(1);
    expect(m.get('quic_lb_backend_state{backend="a",state="up"}')).toBe(1);
    expect(m.get('quic_lb_workers')).toBe(1);
    expect(a.probes).toBeGreaterThan(0);
    expect(await lb.healthz()).toBe(200);

    // SIGTERM: /healthz fails at once, forwarding continues during drainMs, then a clean exit.
    const exited = new Promise<number | null>((r) => lb.proc.once('exit', (code) => r(code)));
    lb.proc.kill('SIGTERM');
    await waitFor('healthz 503 after SIGTERM', async () => (await lb.healthz()) === 503, 1000);
    const before = a.received.length;
    client.send(tagged(shortHeader(cid(0, SIDS.a[0])), 999), vip);
    await waitFor('forwarding during the drain', () => a.received.length === before + 1, 1000);
    expect(await exited).toBe(0);
  });
});
