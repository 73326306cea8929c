// Issue 10, "hostile internet": return-path replies that name a destination node:dgram refuses
// (port 0, an IPv4-mapped client on a v6-only VIP, multicast, unspecified, broadcast) must not
// throw out of the 'message' handler. The LB stays up, counts each in
// quic_lb_send_errors_total{reason}, and keeps forwarding; with two cluster workers no worker
// exits (quic_lb_worker_restarts_total stays 0).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeProxyHeader } from '../../src/wire/index.js';
import { type LoadBalancer, sendableDestination, startLoadBalancer, validateConfig } from '../../src/lb/index.js';
import { Client, ServeProcess, Sink, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';
import { parseMetrics } from '../helpers/metrics.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-hostile-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});
const silent = pino({ level: 'silent' });

async function metricsOf(lb: LoadBalancer): Promise<Map<string, number>> {
  return parseMetrics(await lb.metricsText());
}

/** A backend's raw return datagram: [PROXY v2 (src = VIP, dst = client), payload]. */
function returnDatagram(
  vip: { address: string; port: number },
  dst: { address: string; port: number },
  payload: Buffer,
): Buffer {
  return Buffer.concat([
    encodeProxyHeader({ srcAddr: vip.address, srcPort: vip.port, dstAddr: dst.address, dstPort: dst.port }, payload),
    payload,
  ]);
}

describe('sendableDestination', () => {
  const v4 = (s: string): Uint8Array => Uint8Array.from(s.split('.').map(Number));
  const v6 = (hex: string): Uint8Array => Buffer.from(hex, 'hex');
  it.each([
    ['127.0.0.1', true],
    ['192.0.2.1', true],
    ['223.255.255.255', true],
    ['0.0.0.0', false],
    ['0.1.2.3', false],
    ['224.0.0.1', false],
    ['239.255.255.250', false],
    ['240.0.0.1', false],
    ['255.255.255.255', false],
  ])('IPv4 %s -> %s', (a, ok) => expect(sendableDestination(v4(a), 4)).toBe(ok));
  it.each([
    ['00000000000000000000000000000001', true], // ::1
    ['20010db8000000000000000000000001', true],
    ['00000000000000000000000000000000', false], // ::
    ['ff020000000000000000000000000001', false], // ff02::1
    ['00000000000000000000ffff7f000001', false], // ::ffff:127.0.0.1 on a v6-only socket
  ])('IPv6 %s -> %s', (a, ok) => expect(sendableDestination(v6(a), 6)).toBe(ok));
});

describe('return-path destinations node:dgram refuses (one process)', () => {
  it('count as send errors by reason; the LB keeps forwarding and returning', async () => {
    const sink = await Sink.start('127.0.9.10');
    cleanup.push(() => sink.close());
    const config = validateConfig(
      configDocFor(sink.endpoint, {
        listen: ['127.0.9.1:0', '[::1]:0'],
        returnPath: { listen: '127.0.9.1:0', allow: ['127.0.9.10'] },
      }),
    );
    const lb = await startLoadBalancer(config, { logger: silent });
    cleanup.push(() => lb.close());
    const [vip4, vip6] = lb.addresses().vips;
    const ret = lb.addresses().returnPort!;
    const client = await Client.start('127.0.9.50');
    cleanup.push(() => client.close());
    const toClient = { address: '127.0.9.50', port: client.port };
    const payload = Buffer.from('hostile');

    const hostile: [Buffer, string][] = [
      [returnDatagram(vip4, { address: '127.0.9.50', port: 0 }, payload), 'bad_port'],
      [returnDatagram(vip4, { address: '0.0.0.0', port: 443 }, payload), 'bad_address'],
      [returnDatagram(vip4, { address: '224.0.0.1', port: 443 }, payload), 'bad_address'],
      [returnDatagram(vip4, { address: '255.255.255.255', port: 443 }, payload), 'bad_address'],
      [returnDatagram(vip6, { address: '::ffff:127.0.9.50', port: client.port }, payload), 'bad_address'],
      [returnDatagram(vip6, { address: 'ff02::1', port: 443 }, payload), 'bad_address'],
      [returnDatagram(vip6, { address: '::', port: 443 }, payload), 'bad_address'],
      [returnDatagram(vip6, { address: '::1', port: 0 }, payload), 'bad_port'],
    ];
    // Each twice: on the return port and on the backend's own connected socket (the other path
    // into onReturn). The forwarded datagram tells the sink where that socket is.
    client.send(shortHeader(cid(0, SIDS.a[0])), vip4);
    await waitFor('first datagram forwarded', () => sink.received.length === 1, 3000);
    const upstream = sink.received[0].from;
    for (const [dg] of hostile) {
      sink.socket.send(dg, ret.port, ret.address);
      sink.socket.send(dg, upstream.port, upstream.address);
    }
    // A v6 header naming the v4 VIP (a v6 client on a v4 VIP): no such VIP.
    sink.socket.send(
      returnDatagram({ address: '::ffff:127.0.9.1', port: vip4.port }, { address: '::1', port: 443 }, payload),
      ret.port,
      ret.address,
    );
    const want = (reason: string): number => 2 * hostile.filter(([, r]) => r === reason).length;
    await waitFor(
      'hostile replies counted',
      async () => {
        const m = await metricsOf(lb);
        return (
          m.get('quic_lb_send_errors_total{reason="bad_port"}') === want('bad_port') &&
          m.get('quic_lb_send_errors_total{reason="bad_address"}') === want('bad_address')
        );
      },
      3000,
    );

    // Still forwarding, and still returning to a real client.
    client.send(shortHeader(cid(0, SIDS.a[0])), vip4);
    await waitFor('datagram forwarded after the hostile replies', () => sink.received.length === 2, 3000);
    sink.reply(ret, vip4, toClient, Buffer.from('still-here'));
    await waitFor('a valid reply still reaches the client', () => client.received.length === 1, 3000);
    expect(client.received[0].payload.toString()).toBe('still-here');
    expect(client.received[0].from.port).toBe(vip4.port);
    const m = await metricsOf(lb);
    expect(m.get('quic_lb_send_errors_total{reason="thrown"}')).toBe(0);
    expect(m.get('quic_lb_return_rejected_total{reason="vip"}')).toBe(1);
    expect(m.get('quic_lb_return_packets_total')).toBe(1);
    expect(m.get('quic_lb_backend_packets_total{backend="a",direction="to_client"}')).toBe(1);
    expect(m.get('quic_lb_backend_packets_total{backend="a",direction="to_backend"}')).toBe(2);
  });
});

describe('return-path destinations node:dgram refuses (two cluster workers)', () => {
  it('no worker exits: restarts stay 0, both workers keep forwarding', async () => {
    const sink = await Sink.start('127.0.9.20');
    cleanup.push(() => sink.close());
    const file = path.join(dir, 'cluster.yaml');
    writeYaml(file, {
      ...configDocFor(sink.endpoint, {
        listen: ['127.0.9.2:0'],
        returnPath: { listen: '127.0.9.2:0', allow: ['127.0.9.20'] },
      }),
      metrics: { listen: '127.0.9.2:0' },
      workers: 2,
      drainMs: 0,
      log: { level: 'warn' },
    });
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    expect(lb.info.workers).toBe(2);
    const ret = lb.info.returnPort!;
    const clients = await Promise.all([51, 52, 53, 54].map((i) => Client.start(`127.0.9.${i}`)));
    cleanup.push(() => clients.forEach((c) => c.close()));
    // 200 rounds: datagrams from 4 clients (spread over both workers by the kernel), and from
    // the backend, per round, a reply to port 0 and one to a multicast group on the return
    // port and on its connected socket (each worker has its own).
    const N = 200;
    const froms = new Set<string>();
    for (let i = 0; i < N; i++) {
      clients[i % 4].send(shortHeader(cid(0, SIDS.a[0], i + 1)), lb.vip);
      if (i % 10 === 0) await sleep(5);
    }
    await waitFor('datagrams forwarded', () => sink.received.length === N, 5000);
    for (const r of sink.received) froms.add(`${r.from.address}:${r.from.port}`);
    // One upstream socket per worker that received datagrams (the kernel picks the worker).
    expect(froms.size).toBeGreaterThanOrEqual(1);
    for (const f of froms) {
      const [address, port] = [f.slice(0, f.lastIndexOf(':')), Number(f.slice(f.lastIndexOf(':') + 1))];
      for (let i = 0; i < 50; i++) {
        sink.socket.send(returnDatagram(lb.vip, { address: '127.0.9.51', port: 0 }, Buffer.from('p0')), port, address);
        sink.socket.send(returnDatagram(lb.vip, { address: '239.1.2.3', port: 443 }, Buffer.from('mc')), port, address);
      }
    }
    for (let i = 0; i < 50; i++)
      sink.socket.send(
        returnDatagram(lb.vip, { address: '127.0.9.51', port: 0 }, Buffer.from('p0')),
        ret.port,
        ret.address,
      );
    await waitFor(
      'hostile replies counted by the workers',
      async () => {
        const m = await lb.metrics();
        return (
          m.get('quic_lb_send_errors_total{reason="bad_port"}') === 50 * froms.size + 50 &&
          m.get('quic_lb_send_errors_total{reason="bad_address"}') === 50 * froms.size
        );
      },
      5000,
    );
    for (let i = 0; i < N; i++) clients[i % 4].send(shortHeader(cid(0, SIDS.a[0], i + 1)), lb.vip);
    await waitFor('datagrams forwarded after', () => sink.received.length === 2 * N, 5000);
    const m = await lb.metrics();
    expect(m.get('quic_lb_worker_restarts_total')).toBe(0);
    expect(m.get('quic_lb_workers')).toBe(2);
    expect(m.get('quic_lb_send_errors_total{reason="thrown"}')).toBe(0);
    expect(lb.proc.exitCode).toBeNull();
    expect(await lb.stop()).toBe(0);
  });
});

function configDocFor(backend: string, overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    quicLb: QUIC_LB_SPECS.slice(0, 1),
    backends: [{ name: 'a', address: backend, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
    fallback: { key: FALLBACK_KEY },
    ...overrides,
  };
}
