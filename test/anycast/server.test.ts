// The server mode on loopback, two servers in this process (src/anycast). On one host two
// sockets cannot share one VIP, so each server binds its own VIP literal of the same `listen`
// list (`vips`): a datagram "ECMP sent to A" is one sent to A's VIP. Replies to a client that
// addressed A's VIP but belongs to B leave from B's VIP socket (in a fleet both are the one VIP;
// test/netns covers that). Addresses 127.0.12.0/24, ports 24433/24434.
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { startAnycastServer, type AnycastServer } from '../../src/anycast/index.js';
import type { BackendPath } from '../../src/backend/index.js';
import { configFromSpec, encodeConnectionId } from '../../src/cid/index.js';
import { type LbConfig, FourTuple, buildRouterState, decide, validateConfig } from '../../src/lb/index.js';
import { QUIC_V1, parseIPv4Into } from '../../src/wire/index.js';
import { longHeader, shortHeader, V1 } from '../lb/fixtures.js';
import { parseMetrics } from '../helpers/metrics.js';
import { waitFor } from '../helpers/wait.js';

const VIP_A = { address: '127.0.12.1', port: 24433 };
const VIP_B = { address: '127.0.12.2', port: 24433 };
const SIDS = { s1: '0001', s2: '0002' };

function doc(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: ['127.0.12.1:24433', '127.0.12.2:24433'],
    quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: '8f95f09245765f80256934e50c66207f' }],
    backends: [
      { name: 's1', address: '127.0.12.11:24434', serverIds: { 0: SIDS.s1 } },
      { name: 's2', address: '127.0.12.12:24434', serverIds: { 0: SIDS.s2 } },
    ],
    fallback: { key: '000102030405060708090a0b0c0d0e0f', tableSize: 251 },
    health: { type: 'udp', intervalMs: 50, timeoutMs: 100, rise: 1, fall: 2 },
    returnPath: { mode: 'direct' },
    anycast: { forward: true, announce: { intervalMs: 50 } },
    log: { level: 'silent' },
    ...overrides,
  };
}

interface Got {
  msg: Buffer;
  rinfo: { address: string; port: number };
  path: BackendPath;
}

const logger = pino({ level: 'silent' });
let config: LbConfig;
let a: AnycastServer;
let b: AnycastServer;
const gotA: Got[] = [];
const gotB: Got[] = [];
let client: dgram.Socket;
const replies: { msg: Buffer; from: dgram.RemoteInfo }[] = [];

beforeAll(async () => {
  config = validateConfig(doc());
  a = await startAnycastServer(config, {
    name: 's1',
    vips: [VIP_A],
    metrics: { address: '127.0.12.1', port: 0 },
    logger,
  });
  b = await startAnycastServer(config, {
    name: 's2',
    vips: [VIP_B],
    metrics: { address: '127.0.12.2', port: 0 },
    logger,
  });
  a.on('message', (msg, rinfo, path) => gotA.push({ msg: Buffer.from(msg), rinfo, path }));
  b.on('message', (msg, rinfo, path) => gotB.push({ msg: Buffer.from(msg), rinfo, path }));
  client = dgram.createSocket('udp4');
  client.on('message', (msg, from) => replies.push({ msg, from }));
  await new Promise<void>((r) => client.bind(0, '127.0.12.100', () => r()));
  // Both announce (first sample with an answered self-probe), then see each other up.
  await waitFor('both announced', () => a.announcement.announced && b.announcement.announced);
  await waitFor('both servers up in both views', () =>
    [a, b].every((s) => s.lb.healthView().get('s1') === 'up' && s.lb.healthView().get('s2') === 'up'),
  );
});

afterAll(async () => {
  client?.close();
  await a?.close();
  await b?.close();
});

function sendTo(vip: { address: string; port: number }, msg: Buffer, from = client): Promise<void> {
  return new Promise((r) => from.send(msg, vip.port, vip.address, () => r()));
}

/** A CID of the test config (four-pass AES, 2-octet server IDs) naming server `name`. */
function cidFor(name: 's1' | 's2', seed: number): Buffer {
  const lib = configFromSpec(config.quicLb[0]);
  const nonce = Buffer.alloc(lib.nonceLength);
  for (let i = 0; i < nonce.length; i++) nonce[i] = (seed * 31 + i * 7) & 0xff;
  return Buffer.from(encodeConnectionId(lib, Buffer.from(SIDS[name], 'hex'), nonce));
}

async function metricsOf(s: AnycastServer): Promise<Map<string, number>> {
  const m = s.addresses().metrics!;
  const res = await fetch(`http://${m.address}:${m.port}/metrics`);
  return parseMetrics(await res.text());
}

async function healthz(s: AnycastServer): Promise<{ status: number; body: string }> {
  const m = s.addresses().metrics!;
  const res = await fetch(`http://${m.address}:${m.port}/healthz`);
  return { status: res.status, body: await res.text() };
}

describe('anycast server mode: the data path', () => {
  it('a VIP datagram whose CID names the peer reaches the peer encapsulated; it answers from a VIP socket', async () => {
    const beforeA = await metricsOf(a);
    const peerBefore = b.socket.stats.lbDatagrams;
    const d = shortHeader(cidFor('s2', 1), 40);
    gotB.length = 0;
    await sendTo(VIP_A, d);
    await waitFor('s2 got the datagram', () => gotB.length === 1);
    const g = gotB[0];
    expect(g.msg.equals(d)).toBe(true); // the QUIC datagram, header stripped
    expect(g.rinfo).toEqual({ address: '127.0.12.100', port: client.address().port });
    expect(g.path.kind).toBe('lb');
    expect(g.path.local).toEqual(VIP_A); // the VIP the client addressed (from the PROXY header)
    expect(b.socket.stats.lbDatagrams).toBe(peerBefore + 1);
    expect(gotA.some((x) => x.msg.equals(d))).toBe(false);
    // B answers on that path: from its VIP socket (one host: B's VIP literal; a fleet: the one VIP).
    replies.length = 0;
    const sentVip = b.socket.stats.sentVip;
    b.send(Buffer.from('reply-from-b'), g.rinfo.address, g.rinfo.port, g.path);
    await waitFor('client got the reply', () => replies.length === 1);
    expect(replies[0].msg.toString()).toBe('reply-from-b');
    expect({ address: replies[0].from.address, port: replies[0].from.port }).toEqual(VIP_B);
    expect(b.socket.stats.sentVip).toBe(sentVip + 1);
    const afterA = await metricsOf(a);
    const afterB = await metricsOf(b);
    const peer = 'quic_lb_anycast_datagrams_total{path="peer"}';
    expect(afterA.get(peer)! - beforeA.get(peer)!).toBe(1);
    expect(afterB.get('quic_lb_anycast_peer_received_total')).toBe(b.socket.stats.lbDatagrams);
  });

  it('a local CID is handed to the local stack: no PROXY header, no network send, counted local', async () => {
    const before = await metricsOf(a);
    const peerB = b.socket.stats.lbDatagrams;
    const d = shortHeader(cidFor('s1', 2), 30);
    gotA.length = 0;
    await sendTo(VIP_A, d);
    await waitFor('s1 got it', () => gotA.length === 1);
    expect(gotA[0].msg.equals(d)).toBe(true);
    expect(gotA[0].path.name).toBe('vip:127.0.12.1:24433');
    expect(gotA[0].path.local).toEqual(VIP_A);
    expect(gotA[0].rinfo.port).toBe(client.address().port);
    const after = await metricsOf(a);
    const k = (p: string): string => `quic_lb_anycast_datagrams_total{path="${p}"}`;
    expect(after.get(k('local'))! - before.get(k('local'))!).toBe(1);
    expect(after.get(k('peer'))).toBe(before.get(k('peer')));
    expect(b.socket.stats.lbDatagrams).toBe(peerB); // no encapsulated copy went anywhere
    // And the reply leaves from A's VIP.
    replies.length = 0;
    a.send(Buffer.from('local-reply'), gotA[0].rinfo.address, gotA[0].rinfo.port, gotA[0].path);
    await waitFor('reply', () => replies.length === 1);
    expect({ address: replies[0].from.address, port: replies[0].from.port }).toEqual(VIP_A);
  });

  it('an unroutable Initial lands where the shared Maglev table puts its 4-tuple, on either server', async () => {
    // Both servers route on the same config and the same health view: identical fallback tables.
    const stateA = buildRouterState(a.currentConfig(), a.lb.healthView());
    const stateB = buildRouterState(b.currentConfig(), b.lb.healthView());
    expect(Array.from(stateA.table)).toEqual(Array.from(stateB.table));
    const placed = { s1: 0, s2: 0 };
    for (let i = 0; i < 24; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.12.100', () => r()));
      const port = s.address().port;
      const initial = longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, i + 1), Buffer.alloc(4, 9), 1200);
      for (const [vip, state] of [
        [VIP_A, stateA],
        [VIP_B, stateB],
      ] as const) {
        const t = new FourTuple();
        parseIPv4Into('127.0.12.100', t.client, 0);
        t.clientPort = port;
        parseIPv4Into(vip.address, t.vip, 0);
        t.vipPort = vip.port;
        const want = state.config.backends[decide(initial, t, state).backend].name;
        gotA.length = 0;
        gotB.length = 0;
        await sendTo(vip, initial, s);
        await waitFor('placed', () => gotA.length + gotB.length === 1);
        const got = gotA.length === 1 ? 's1' : 's2';
        expect(got, `client port ${port} via ${vip.address}`).toBe(want);
        placed[got]++;
      }
      s.close();
    }
    // Both servers took some: the test crossed both the local and the peer path.
    expect(placed.s1).toBeGreaterThan(0);
    expect(placed.s2).toBeGreaterThan(0);
  });
});

describe('anycast server mode: withdrawal', () => {
  it('a drained server answers probes DRAINING, leaves every fallback, and still gets its CID-routed datagrams', async () => {
    expect(await healthz(b)).toEqual({ status: 200, body: 'ok\n' });
    b.drain();
    expect(b.announcement).toMatchObject({ announced: false, reason: 'draining' });
    expect(await healthz(b)).toEqual({ status: 503, body: 'withdrawn: draining\n' });
    await waitFor('s2 draining in both views', () => [a, b].every((s) => s.lb.healthView().get('s2') === 'draining'));
    const m = await metricsOf(b);
    expect(m.get('quic_lb_anycast_announced')).toBe(0);
    expect(m.get('quic_lb_anycast_withdrawn{reason="draining"}')).toBe(1);
    expect(m.get('quic_lb_anycast_withdrawals_total{reason="draining"}')).toBe(1);
    // New flows: every unroutable Initial, to either VIP, goes to s1.
    for (let i = 0; i < 12; i++) {
      const initial = longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, 0x40 + i), Buffer.alloc(4, 9), 1200);
      for (const vip of [VIP_A, VIP_B]) {
        const s = dgram.createSocket('udp4');
        await new Promise<void>((r) => s.bind(0, '127.0.12.100', () => r()));
        gotA.length = 0;
        gotB.length = 0;
        await sendTo(vip, initial, s);
        await waitFor('placed', () => gotA.length + gotB.length === 1);
        s.close();
        expect(gotA.length, `Initial ${i} via ${vip.address}`).toBe(1);
      }
    }
    // Existing connections: a datagram whose CID names s2 still reaches it, through either VIP.
    for (const vip of [VIP_A, VIP_B]) {
      gotB.length = 0;
      const d = shortHeader(cidFor('s2', 7), 33);
      await sendTo(vip, d);
      await waitFor('s2 got its datagram', () => gotB.length === 1);
      expect(gotB[0].msg.equals(d)).toBe(true);
    }
    b.drain(false);
    await waitFor('s2 up again in both views', () => [a, b].every((s) => s.lb.healthView().get('s2') === 'up'));
    expect(await healthz(b)).toEqual({ status: 200, body: 'ok\n' });
  });
});

describe('anycast server mode: load-aware announcement', () => {
  it('over maxConnections (set by a reload) withdraws for connections, and re-announces once calm', async () => {
    const r = await b.reload(
      validateConfig(
        doc({ anycast: { announce: { intervalMs: 50, maxConnections: 2, withdrawAfter: 2, announceAfter: 2 } } }),
      ),
    );
    expect(r.ok).toBe(true);
    let active = 5;
    b.setActiveConnections(() => active);
    await waitFor('withdrawn for connections', () => b.announcement.reason === 'connections');
    expect(b.announcement.announced).toBe(false);
    expect(await healthz(b)).toEqual({ status: 503, body: 'withdrawn: connections\n' });
    await waitFor('s1 sees s2 draining', () => a.lb.healthView().get('s2') === 'draining');
    const m = await metricsOf(b);
    expect(m.get('quic_lb_anycast_withdrawn{reason="connections"}')).toBe(1);
    expect(m.get('quic_lb_anycast_withdrawals_total{reason="connections"}')).toBe(1);
    expect(m.get('quic_lb_anycast_active_connections')).toBe(5);
    active = 1; // at or under resumeConnections = floor(0.8 * 2) = 1
    await waitFor('announced again', () => b.announcement.announced);
    await waitFor('s1 sees s2 up', () => a.lb.healthView().get('s2') === 'up');
    expect(await healthz(b)).toEqual({ status: 200, body: 'ok\n' });
  });

  it('a reload that drops this server from the config is refused and changes nothing', async () => {
    const without = validateConfig(
      doc({ backends: [{ name: 's1', address: '127.0.12.11:24434', serverIds: { 0: SIDS.s1 } }] }),
    );
    const r = await b.reload(without);
    expect(r.ok).toBe(false);
    expect(b.currentConfig().backends.map((x) => x.name)).toEqual(['s1', 's2']);
  });
});
