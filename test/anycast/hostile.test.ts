// The server mode's sockets face attackers (common house rules): garbage on the VIP, forged
// PROXY headers and probes on the own address from non-peers, unsigned headers from a peer's
// address when signForward is on, replies to destinations no VIP socket may send to, port-0
// sources (raw sockets, root only), a QUIC stack whose handler throws. Every drop is counted,
// nothing throws, nothing is answered with more than was sent. Two servers in this process on
// 127.0.12.80-99, ports 24733/24734.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { startAnycastServer, type AnycastServer } from '../../src/anycast/index.js';
import type { BackendPath } from '../../src/backend/index.js';
import { validateConfig } from '../../src/lb/index.js';
import { HealthProbeKind, QUIC_V1, encodeHealthProbe, encodeProxyHeader } from '../../src/wire/index.js';
import { longHeader, V1 } from '../lb/fixtures.js';
import { parseMetrics } from '../helpers/metrics.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { buildRawUdp, writePayloads } from '../hostile/native.js';
import { canUseNetns } from '../netns/netns.js';

const HMAC = randomBytes(32);
const VIP_A = { address: '127.0.12.81', port: 24733 };
const VIP_B = { address: '127.0.12.82', port: 24733 };
const OWN_A = { address: '127.0.12.91', port: 24734 };
const OWN_B = { address: '127.0.12.92', port: 24734 };
const ATTACKER = '127.0.12.99';

const config = validateConfig({
  listen: ['127.0.12.81:24733', '127.0.12.82:24733'],
  quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: '8f95f09245765f80256934e50c66207f' }],
  backends: [
    { name: 's1', address: '127.0.12.91:24734', serverIds: { 0: '0001' } },
    { name: 's2', address: '127.0.12.92:24734', serverIds: { 0: '0002' } },
  ],
  fallback: { key: '000102030405060708090a0b0c0d0e0f', tableSize: 251 },
  health: { type: 'udp', intervalMs: 50, timeoutMs: 100, rise: 1, fall: 2 },
  returnPath: { mode: 'direct', hmacKey: HMAC.toString('hex'), signForward: true },
  anycast: { announce: { intervalMs: 50 } },
  log: { level: 'silent' },
});

const logger = pino({ level: 'silent' });
let a: AnycastServer;
let b: AnycastServer;
const got: { server: string; msg: Buffer; rinfo: { address: string; port: number }; path: BackendPath }[] = [];
/** The QUIC stack's stand-in: records, and answers every datagram with 8 octets on its path. */
let throwOnNext = false;

beforeAll(async () => {
  a = await startAnycastServer(config, { name: 's1', vips: [VIP_A], metrics: { ...VIP_A, port: 0 }, logger });
  b = await startAnycastServer(config, { name: 's2', vips: [VIP_B], metrics: { ...VIP_B, port: 0 }, logger });
  for (const [name, s] of [
    ['s1', a],
    ['s2', b],
  ] as const) {
    s.on('message', (msg, rinfo, p) => {
      if (throwOnNext) {
        throwOnNext = false;
        throw new Error('the QUIC stack failed');
      }
      got.push({ server: name, msg: Buffer.from(msg), rinfo, path: p });
      s.send(Buffer.alloc(8, 1), rinfo.address, rinfo.port, p);
    });
  }
  await waitFor('both announced and up', () =>
    [a, b].every(
      (s) => s.announcement.announced && s.lb.healthView().get('s1') === 'up' && s.lb.healthView().get('s2') === 'up',
    ),
  );
});

afterAll(async () => {
  await a?.close();
  await b?.close();
});

async function metricsOf(s: AnycastServer): Promise<Map<string, number>> {
  const m = s.addresses().metrics!;
  return parseMetrics(await (await fetch(`http://${m.address}:${m.port}/metrics`)).text());
}

async function socketAt(address: string): Promise<{ s: dgram.Socket; replies: Buffer[] }> {
  const s = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return { s, replies };
}

const send = (s: dgram.Socket, msg: Uint8Array, to: { address: string; port: number }): Promise<void> =>
  new Promise((r) => s.send(msg, to.port, to.address, () => r()));

const delta = (after: Map<string, number>, before: Map<string, number>, k: string): number =>
  (after.get(k) ?? 0) - (before.get(k) ?? 0);

describe('anycast server mode under attack', () => {
  it('malformed VIP datagrams are dropped and counted; nothing reaches the stack', async () => {
    const { s } = await socketAt(ATTACKER);
    const before = await metricsOf(a);
    got.length = 0;
    const junk = [Buffer.alloc(0), Buffer.of(0xc0, 0, 0), Buffer.of(0xc0, 0, 0, 0, 1, 30, 1, 2)];
    for (const j of junk) await send(s, j, VIP_A);
    await waitFor('counted', async () => {
      const m = await metricsOf(a);
      return delta(m, before, 'quic_lb_anycast_datagrams_total{path="dropped"}') === junk.length;
    });
    const after = await metricsOf(a);
    expect(delta(after, before, 'quic_lb_received_packets_total{reason="dropped_malformed"}')).toBe(junk.length);
    expect(delta(after, before, 'quic_lb_anycast_datagrams_total{path="local"}')).toBe(0);
    expect(delta(after, before, 'quic_lb_anycast_datagrams_total{path="peer"}')).toBe(0);
    expect(got).toEqual([]);
    s.close();
  });

  it('forged PROXY headers and probes on the own address from a non-peer are dropped, never answered', async () => {
    const { s, replies } = await socketAt(ATTACKER);
    const before = { ...b.socket.stats.dropped };
    got.length = 0;
    const pkt = longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, 3), Buffer.alloc(4, 9), 1200);
    const forged = Buffer.concat([
      encodeProxyHeader({ srcAddr: '192.0.2.1', srcPort: 443, dstAddr: VIP_A.address, dstPort: VIP_A.port }, pkt),
      pkt,
    ]);
    await send(s, forged, OWN_B);
    await send(s, encodeHealthProbe(HealthProbeKind.REQUEST, Buffer.alloc(8, 7)), OWN_B);
    await waitFor('both dropped', () => b.socket.stats.dropped.source === before.source + 2);
    await sleep(50);
    expect(replies).toEqual([]);
    expect(got).toEqual([]);
    s.close();
  });

  it("with signForward, an unsigned or wrongly signed header from a peer's own address is dropped (auth)", async () => {
    // On loopback the test can send from s1's address: what an attacker spoofing a peer would do.
    const { s, replies } = await socketAt(OWN_A.address);
    const before = b.socket.stats.dropped.auth;
    got.length = 0;
    const pkt = longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, 4), Buffer.alloc(4, 9), 1200);
    const hdr = { srcAddr: '192.0.2.1', srcPort: 443, dstAddr: VIP_A.address, dstPort: VIP_A.port };
    await send(s, Buffer.concat([encodeProxyHeader({ ...hdr, reserveAuth: true }), pkt]), OWN_B);
    await send(s, Buffer.concat([encodeProxyHeader({ ...hdr, hmacKey: randomBytes(32) }, pkt), pkt]), OWN_B);
    await waitFor('both dropped', () => b.socket.stats.dropped.auth === before + 2);
    // Signed with the shared key: accepted (the control case).
    await send(s, Buffer.concat([encodeProxyHeader({ ...hdr, hmacKey: HMAC }, pkt), pkt]), OWN_B);
    await waitFor('accepted', () => got.length === 1);
    expect(got[0]).toMatchObject({ server: 's2', rinfo: { address: '192.0.2.1', port: 443 } });
    expect(replies).toEqual([]); // the answer went to the client (from a VIP), not to the sender
    s.close();
  });

  it('replies to destinations a VIP socket must not send to are refused and counted; nothing throws', async () => {
    const before = await metricsOf(a);
    const { s } = await socketAt('127.0.12.98');
    got.length = 0;
    // A local datagram gives the test a VIP path of s1 to answer on.
    const d = Buffer.concat([Buffer.of(0x41), randomBytes(40)]);
    await send(s, d, VIP_A);
    await waitFor('delivered', () => got.length === 1);
    const p = got[0].path;
    const sent = a.socket.stats.sentVip;
    for (const [address, port] of [
      ['127.0.12.98', 0],
      ['127.0.12.98', 70000],
      ['224.0.0.1', 4433],
      ['255.255.255.255', 4433],
      ['0.0.0.0', 4433],
      ['::1', 4433],
      ['not-an-address', 4433],
    ] as const)
      expect(() => a.send(Buffer.alloc(8), address, port, p)).not.toThrow();
    expect(a.socket.stats.sentVip).toBe(sent);
    const after = await metricsOf(a);
    expect(delta(after, before, 'quic_lb_send_errors_total{reason="bad_port"}')).toBe(2);
    expect(delta(after, before, 'quic_lb_send_errors_total{reason="bad_address"}')).toBe(5);
    s.close();
  });

  it('a stack handler that throws is counted (listenerErrors), never escapes a socket handler; the server goes on', async () => {
    const { s, replies } = await socketAt('127.0.12.97');
    const errors = a.socket.stats.listenerErrors + b.socket.stats.listenerErrors;
    throwOnNext = true;
    // A short header no config routes: the fallback puts it on s1 (local) or s2 (peer path).
    await send(s, Buffer.concat([Buffer.of(0x41), randomBytes(40)]), VIP_A);
    await waitFor(
      'thrown and counted',
      () => a.socket.stats.listenerErrors + b.socket.stats.listenerErrors === errors + 1,
    );
    expect(throwOnNext).toBe(false);
    expect(replies).toEqual([]);
    await send(s, Buffer.concat([Buffer.of(0x41), randomBytes(40)]), VIP_A);
    await waitFor('the server still answers', () => replies.length === 1);
    expect(replies[0].length).toBe(8);
    s.close();
  });
});

describe.runIf(canUseNetns())('anycast server mode: port-0 sources (raw sockets)', () => {
  it('datagrams from source port 0 on the VIP reach the stack, whose replies to port 0 are refused and counted', async () => {
    const bin = buildRawUdp();
    const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-anycast-raw-'));
    const file = path.join(dir, 'payloads');
    const initials = Array.from({ length: 8 }, (_, i) =>
      longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, 0x60 + i), Buffer.alloc(4, 9), 1200),
    );
    writePayloads(file, initials);
    const before = await Promise.all([metricsOf(a), metricsOf(b)]);
    got.length = 0;
    const r = spawnSync(
      bin,
      [
        'send',
        '--file',
        file,
        '--dst',
        `${VIP_A.address}:${VIP_A.port}`,
        '--src',
        ATTACKER,
        '--sport',
        '0',
        '--count',
        '8',
        '--rate',
        '1000',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    await waitFor('all 8 handed to a stack', () => got.length === 8);
    for (const g of got) expect(g.rinfo).toEqual({ address: ATTACKER, port: 0 });
    const after = await Promise.all([metricsOf(a), metricsOf(b)]);
    // Every reply (one per datagram, on whichever server took it) refused for its port.
    const badPort =
      delta(after[0], before[0], 'quic_lb_send_errors_total{reason="bad_port"}') +
      delta(after[1], before[1], 'quic_lb_send_errors_total{reason="bad_port"}');
    expect(badPort).toBe(8);
  });
});
