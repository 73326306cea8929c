// The backend kit facing an attacker (issue 10 "Hostile internet"): no send can throw out of a
// handler (bad ports and addresses from forged headers or odd sources are refused and counted),
// no reflection (headers and probes only from the allowed LBs, HMAC with key rotation), bounded
// per-source state. Addresses 127.0.2.40-49, ports 25300-25399.
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendError, BackendSocket, type BackendPath } from '../../src/backend/index.js';
import {
  AddressSet,
  encodeHealthProbe,
  encodeProxyHeader,
  HealthProbeKind,
  parseHealthProbe,
  parseProxyHeader,
  ProxyDirection,
  ProxyHeader,
} from '../../src/wire/index.js';
import { sleep, waitFor } from '../helpers/wait.js';

const toClose: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const c of toClose.splice(0)) await c.close();
});

const BE = '127.0.2.40';
const LB = '127.0.2.41';
const OTHER = '127.0.2.42';
const quic = Buffer.concat([Buffer.of(0x41), randomBytes(60)]);

async function udp(address: string, type: 'udp4' | 'udp6' = 'udp4'): Promise<dgram.Socket & { got: Buffer[] }> {
  const s = dgram.createSocket(type) as dgram.Socket & { got: Buffer[] };
  s.got = [];
  s.on('message', (m) => s.got.push(m));
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  toClose.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
  return s;
}

async function backend(opts: ConstructorParameters<typeof BackendSocket>[0]): Promise<BackendSocket> {
  const b = new BackendSocket(opts);
  await b.bind();
  toClose.push(b);
  return b;
}

type Got = { msg: Buffer; rinfo: { address: string; port: number }; path: BackendPath };
function collect(b: BackendSocket): Got[] {
  const out: Got[] = [];
  b.on('message', (msg: Buffer, rinfo: Got['rinfo'], path: BackendPath) => out.push({ msg, rinfo, path }));
  return out;
}

/** The backend's listen socket, to hand its handler a datagram the kernel cannot fake for us (source port 0, 100k sources). */
const listenSocketOf = (b: BackendSocket): dgram.Socket =>
  (b as unknown as { listenSocket: dgram.Socket }).listenSocket;
const inject = (b: BackendSocket, msg: Buffer, address: string, port: number): void => {
  listenSocketOf(b).emit('message', msg, {
    address,
    port,
    family: address.includes(':') ? 'IPv6' : 'IPv4',
    size: msg.length,
  });
};

const header = (
  src: string,
  srcPort: number,
  extra: Partial<Parameters<typeof encodeProxyHeader>[0]> = {},
  payload?: Buffer,
): Buffer => encodeProxyHeader({ srcAddr: src, srcPort, dstAddr: '192.0.2.1', dstPort: 4433, ...extra }, payload);

describe('BackendSocket: no send throws out of a handler', () => {
  it('replies to forged clients (port 0, 0.0.0.0, a v6 client on a v4 path) are refused and counted; the LB gets nothing', async () => {
    const b = await backend({ listen: { address: BE, port: 25300 }, allowLbAddresses: [LB] });
    const lb = await udp(LB);
    const got = collect(b);
    // A QUIC stack answering every datagram, as the demo server does.
    b.on('message', (_m: Buffer, rinfo: Got['rinfo'], p: BackendPath) =>
      b.send(Buffer.from('reply'), rinfo.address, rinfo.port, p),
    );
    lb.send(Buffer.concat([header('192.0.2.7', 0), quic]), 25300, BE);
    lb.send(Buffer.concat([header('0.0.0.0', 443), quic]), 25300, BE);
    await waitFor('got.length === 2', () => got.length === 2, 2000);
    expect(got.map((g) => g.rinfo)).toEqual([
      { address: '192.0.2.7', port: 0 },
      { address: '0.0.0.0', port: 443 },
    ]);
    // The stack hands back odd destinations itself: a v6 client on the v4 VIP path, ports out of range, a name.
    const v4path = got[0].path;
    expect(() => {
      b.send(Buffer.from('x'), '2001:db8::1', 443, v4path);
      b.send(Buffer.from('x'), '192.0.2.7', 65536, v4path);
      b.send(Buffer.from('x'), '192.0.2.7', 1.5, v4path);
      b.send(Buffer.from('x'), '192.0.2.7', -1, v4path);
      b.send(Buffer.from('x'), 'client.example', 443, v4path);
    }).not.toThrow();
    await sleep(150);
    expect(lb.got).toEqual([]);
    expect(b.stats.sendErrors).toEqual({ bad_port: 4, bad_address: 3, socket: 0 });
    expect(b.stats.sentViaLb).toBe(0);
    // The highest port is a fine destination: the reply reaches the LB.
    b.send(Buffer.from('ok'), '192.0.2.7', 65535, v4path);
    await waitFor('lb.got.length === 1', () => lb.got.length === 1, 2000);
    const h = new ProxyHeader();
    expect(parseProxyHeader(lb.got[0], h)).toBeGreaterThan(0);
    expect(h.dstPort).toBe(65535);
  });

  it('a datagram from source port 0 (direct path and LB path) draws no throw and no send', async () => {
    const b = await backend({ listen: { address: BE, port: 25301 }, allowLbAddresses: [LB] });
    const seen = collect(b);
    b.on('message', (_m: Buffer, rinfo: Got['rinfo'], p: BackendPath) =>
      b.send(Buffer.from('reply'), rinfo.address, rinfo.port, p),
    );
    expect(() => {
      inject(b, quic, OTHER, 0); // plain QUIC from port 0: the stack answers rinfo.port 0
      inject(b, encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8)) as Buffer, LB, 0); // probe from the LB's address, port 0
      inject(b, Buffer.concat([header('192.0.2.7', 1234), quic]), LB, 0); // a header from LB port 0: the reply would go to port 0
    }).not.toThrow();
    expect(seen.length).toBe(2);
    await sleep(50);
    expect(b.stats.sendErrors).toEqual({ bad_port: 3, bad_address: 0, socket: 0 });
    expect(b.stats.healthProbesAnswered).toBe(0);
    expect(b.stats.sentDirect + b.stats.sentViaLb).toBe(0);
  });

  it('direct (DSR) replies to a bad port or address are refused, and a send after close() is counted, not thrown', async () => {
    const b = await backend({
      listen: { address: BE, port: 25302 },
      returnPath: { mode: 'direct', vip: { address: '127.0.2.43', port: 25303 } },
      allowLbAddresses: [LB],
    });
    const lb = await udp(LB);
    const client = await udp('127.0.2.44');
    const got = collect(b);
    lb.send(
      Buffer.concat([header('127.0.2.44', client.address().port, { dstAddr: '127.0.2.43', dstPort: 25303 }), quic]),
      25302,
      BE,
    );
    await waitFor('got.length === 1', () => got.length === 1, 2000);
    const p = got[0].path;
    b.send(Buffer.from('x'), '127.0.2.44', 0, p);
    b.send(Buffer.from('x'), '::1', client.address().port, p);
    b.send(Buffer.from('x'), '0.0.0.0', client.address().port, p);
    b.send(Buffer.from('fine'), '127.0.2.44', client.address().port, p);
    await waitFor('client.got.length === 1', () => client.got.length === 1, 2000);
    expect(client.got[0].toString()).toBe('fine');
    expect(b.stats.sendErrors).toEqual({ bad_port: 1, bad_address: 2, socket: 0 });
    expect(b.stats.sentDirect).toBe(1);
    await b.close();
    expect(() => b.send(Buffer.from('late'), '127.0.2.44', client.address().port, p)).not.toThrow();
    expect(b.stats.sendErrors.socket).toBe(1);
  });

  it('a dual-stack [::] socket refuses plain IPv4 literals (not its family) but answers ::ffff: ones', async () => {
    const b = await backend({ listen: { address: '::', port: 25304 }, allowLbAddresses: [LB] });
    const client = await udp('127.0.2.45');
    const got = collect(b);
    client.send(quic, 25304, BE);
    await waitFor('got.length === 1', () => got.length === 1, 2000);
    expect(got[0].rinfo.address).toBe('::ffff:127.0.2.45');
    b.send(Buffer.from('x'), '127.0.2.45', client.address().port, got[0].path);
    b.send(Buffer.from('y'), got[0].rinfo.address, got[0].rinfo.port, got[0].path);
    await waitFor('client.got.length === 1', () => client.got.length === 1, 2000);
    expect(client.got[0].toString()).toBe('y');
    expect(b.stats.sendErrors.bad_address).toBe(1);
  });
});

describe('BackendSocket: no reflection', () => {
  it('headers and probes from a source outside allowLbAddresses get nothing back; the allowed LB gets a probe reply no larger than the probe', async () => {
    const b = await backend({ listen: { address: BE, port: 25310 }, allowLbAddresses: [LB] });
    const lb = await udp(LB);
    const other = await udp(OTHER);
    const got = collect(b);
    const probe = encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8));
    other.send(probe, 25310, BE);
    other.send(Buffer.concat([header(OTHER, other.address().port), quic]), 25310, BE); // "I am the client, answer me"
    await sleep(200);
    expect(other.got).toEqual([]);
    expect(got).toEqual([]);
    expect(b.stats.dropped.source).toBe(2);
    expect(b.stats.healthProbesAnswered).toBe(0);
    lb.send(probe, 25310, BE);
    await waitFor('lb.got.length === 1', () => lb.got.length === 1, 2000);
    expect(lb.got[0].length).toBeLessThanOrEqual(probe.length);
    expect(parseHealthProbe(lb.got[0])).toBe(HealthProbeKind.UP);
    expect(b.stats.healthProbesAnswered).toBe(1);
  });

  it('a dual-stack [::] backend takes an IPv4 LB of its allow list (::ffff:a.b.c.d) and answers it', async () => {
    const b = await backend({ listen: { address: '::', port: 25311 }, allowLbAddresses: [LB] });
    const lb = await udp(LB);
    const other = await udp(OTHER);
    const got = collect(b);
    lb.send(Buffer.concat([header('192.0.2.9', 5000), quic]), 25311, BE);
    other.send(Buffer.concat([header('192.0.2.9', 5000), quic]), 25311, BE);
    await waitFor('got.length === 1', () => got.length === 1, 2000);
    await sleep(50);
    expect(got.length).toBe(1);
    expect(got[0].rinfo).toEqual({ address: '192.0.2.9', port: 5000 });
    expect(b.stats.dropped.source).toBe(1);
    b.send(Buffer.from('back'), '192.0.2.9', 5000, got[0].path);
    lb.send(encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8)), 25311, BE);
    await waitFor('lb.got.length === 2', () => lb.got.length === 2, 2000);
    expect(lb.got.map((m) => (parseHealthProbe(m) === HealthProbeKind.UP ? 'probe' : 'reply')).sort()).toEqual([
      'probe',
      'reply',
    ]);
  });

  it('AddressSet compares octets: IPv4, IPv4-mapped and IPv6 forms, zones ignored, junk refused', () => {
    const s = new AddressSet(['10.0.0.1', '::ffff:10.0.0.2', '2001:db8::1', '10.0.0.1'], 'allow');
    expect(s.size).toBe(3);
    expect(
      [
        '10.0.0.1',
        '::ffff:10.0.0.1',
        '::FFFF:10.0.0.1',
        '10.0.0.2',
        '::ffff:a00:2',
        '2001:db8:0::1',
        '2001:db8::1%eth0',
      ].map((a) => s.has(a)),
    ).toEqual([true, true, true, true, true, true, true]);
    expect(
      ['10.0.0.3', '::1', '2001:db8::2', '', 'lb.example', '10.0.0.1.5', '::ffff:10.0.0.3'].map((a) => s.has(a)),
    ).toEqual([false, false, false, false, false, false, false]);
    expect(() => new AddressSet(['10.0.0.1', 'lb.example'], 'allowLbAddresses')).toThrow(
      expect.objectContaining({ code: 'ERR_ADDRESS_LITERAL', field: 'allowLbAddresses[1]' }),
    );
    // The backend kit reports it as its own error, naming its option.
    expect(
      () =>
        new BackendSocket({ listen: { address: '127.0.0.1', port: 0 }, allowLbAddresses: ['10.0.0.1', 'lb.example'] }),
    ).toThrow(expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS', field: 'allowLbAddresses[1]' }));
  });

  it('needs a way to authenticate the LB: allowLbAddresses, hmacKeys + signForward, or insecureAnyLb (with a warning at bind)', async () => {
    const listen = { address: BE, port: 0 };
    expect(() => new BackendSocket({ listen })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_LB_UNAUTHENTICATED', field: 'allowLbAddresses' }),
    );
    expect(() => new BackendSocket({ listen, allowLbAddresses: [] })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_LB_UNAUTHENTICATED' }),
    );
    expect(() => new BackendSocket({ listen, hmacKeys: [randomBytes(32)] })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_LB_UNAUTHENTICATED' }),
    );
    expect(() => new BackendSocket({ listen, allowLbAddresses: ['lb.example'] })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS' }),
    );
    expect(() => new BackendSocket({ listen, signForward: true, allowLbAddresses: [LB] })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_HMAC_KEY' }),
    );
    expect(
      () => new BackendSocket({ listen, hmacKey: randomBytes(32), hmacKeys: [randomBytes(32)], signForward: true }),
    ).toThrow(BackendError);
    expect(() => new BackendSocket({ listen, hmacKeys: [randomBytes(32), randomBytes(8)], signForward: true })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_HMAC_KEY', field: 'hmacKeys[1]' }),
    );
    expect(() => new BackendSocket({ listen, allowLbAddresses: [LB], maxTrackedPaths: 0 })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_RANGE' }),
    );
    // A return port the listen socket could never send to is refused up front.
    const v6 = { address: '::', port: 0 };
    for (const [l, address, port] of [
      [v6, '10.0.0.1', 4440],
      [listen, '::1', 4440],
      [listen, '0.0.0.0', 4440],
      [listen, '10.0.0.1', 0],
    ] as const) {
      expect(
        () => new BackendSocket({ listen: l, allowLbAddresses: [LB], returnPath: { mode: 'via-lb', address, port } }),
        `${address}:${port}`,
      ).toThrow(expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS', field: 'returnPath.address' }));
    }
    const mapped = new BackendSocket({
      listen: v6,
      allowLbAddresses: [LB],
      returnPath: { mode: 'via-lb', address: '::ffff:10.0.0.1', port: 4440 },
    });
    await mapped.close();
    const warnings: string[] = [];
    const insecure = new BackendSocket({ listen, insecureAnyLb: true });
    insecure.on('warning', (w: string) => warnings.push(w));
    await insecure.bind();
    toClose.push(insecure);
    const keyed = new BackendSocket({ listen, hmacKeys: [randomBytes(32)], signForward: true, insecureAnyLb: true });
    keyed.on('warning', (w: string) => warnings.push(w));
    await keyed.bind();
    toClose.push(keyed);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/^insecureAnyLb: /);
  });

  it('without an allow list (HMAC only), probes are answered at most probeReplyRate per second: a forged flood reflects a bounded trickle', async () => {
    let now = 1_000_000;
    const b = await backend({
      listen: { address: BE, port: 25312 },
      hmacKeys: [randomBytes(32)],
      signForward: true,
      probeReplyRate: 10,
      now: () => now,
    });
    const probe = encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8)) as Buffer;
    const victim = await udp(OTHER);
    for (let i = 0; i < 50; i++) inject(b, probe, OTHER, victim.address().port);
    expect(b.stats.healthProbesAnswered).toBe(10);
    expect(b.stats.dropped.probe_rate).toBe(40);
    now += 500; // half a second: five more
    for (let i = 0; i < 50; i++) inject(b, probe, OTHER, victim.address().port);
    expect(b.stats.healthProbesAnswered).toBe(15);
    await waitFor('victim.got.length === 15', () => victim.got.length === 15, 2000);
    expect(victim.got.every((m) => m.length === probe.length)).toBe(true);
    // Unsigned headers from anyone are still refused.
    inject(b, Buffer.concat([header('192.0.2.9', 5000), quic]), OTHER, victim.address().port);
    expect(b.stats.dropped.auth).toBe(1);
    expect(b.stats.lbDatagrams).toBe(0);
  });
});

describe('BackendSocket: bounded state and key rotation', () => {
  it('trackPaths never exceeds its bound under 100k distinct forged clients from an allowed LB; non-LB sources add nothing', async () => {
    const b = await backend({ listen: { address: BE, port: 25320 }, allowLbAddresses: [LB], trackPaths: true });
    const other = Buffer.concat([header('198.51.100.1', 1), quic]);
    for (let i = 0; i < 1000; i++) inject(b, other, OTHER, 40000);
    expect(b.trackedPaths).toBe(0);
    let max = 0;
    for (let i = 0; i < 100_000; i++) {
      const h = header(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 1 + (i % 60000));
      inject(b, Buffer.concat([h, quic]), LB, 40000);
      if ((i & 1023) === 0) max = Math.max(max, b.trackedPaths);
    }
    max = Math.max(max, b.trackedPaths);
    expect(b.stats.lbDatagrams).toBe(100_000);
    expect(max).toBe(65_536);
    expect(b.trackedPaths).toBe(65_536);
    expect(b.stats.trackedPathsEvicted).toBe(100_000 - 65_536);
    expect(b.stats.dropped.source).toBe(1000);
  }, 30_000);

  it('maxTrackedPaths: the oldest client goes first; a send without a path then falls back to the listen socket', async () => {
    const b = await backend({
      listen: { address: BE, port: 25321 },
      allowLbAddresses: [LB],
      trackPaths: true,
      maxTrackedPaths: 2,
    });
    const lb = await udp(LB);
    const got = collect(b);
    for (const port of [1001, 1002, 1003]) lb.send(Buffer.concat([header('192.0.2.9', port), quic]), 25321, BE);
    await waitFor('got.length === 3', () => got.length === 3, 2000);
    expect(b.trackedPaths).toBe(2);
    expect(b.stats.trackedPathsEvicted).toBe(1);
    b.send(Buffer.from('tracked'), '192.0.2.9', 1003); // via the LB path: a header to the LB
    await waitFor('lb.got.length === 1', () => lb.got.length === 1, 2000);
    expect(parseProxyHeader(lb.got[0], new ProxyHeader())).toBeGreaterThan(0);
    b.send(Buffer.from('evicted'), '192.0.2.9', 1001); // no path left: the listen socket, straight to 192.0.2.9
    expect(b.stats.sentDirect).toBe(1);
  });

  it('setKeys under traffic: headers signed with the old and the new key both verify during rotation; replies use the first key', async () => {
    const oldKey = randomBytes(32);
    const newKey = randomBytes(32);
    const b = await backend({
      listen: { address: BE, port: 25322 },
      hmacKeys: [oldKey],
      signForward: true,
      allowLbAddresses: [LB],
    });
    const lb = await udp(LB);
    const got = collect(b);
    const signed = (key: Buffer, port: number): Buffer => {
      const payload = Buffer.concat([quic, Buffer.from([port & 255])]);
      return Buffer.concat([
        header('192.0.2.9', port, { hmacKey: key, direction: ProxyDirection.TO_BACKEND }, payload),
        payload,
      ]);
    };
    const send = async (key: Buffer, ports: number[]): Promise<void> => {
      for (const p of ports) lb.send(signed(key, p), 25322, BE);
      await sleep(100);
    };
    await send(oldKey, [1, 2]);
    await send(newKey, [3]); // before rotation: refused
    expect(got.map((g) => g.rinfo.port)).toEqual([1, 2]);
    expect(b.stats.dropped.auth).toBe(1);
    // Rotation step 1: the new key verifies, the old one still signs; traffic of both keys in flight.
    b.setKeys([oldKey, newKey]);
    await send(oldKey, [4]);
    await send(newKey, [5]);
    // Step 2: the new key signs; the old one still verifies.
    b.setKeys([newKey, oldKey]);
    await send(newKey, [6]);
    await send(oldKey, [7]);
    expect(got.map((g) => g.rinfo.port)).toEqual([1, 2, 4, 5, 6, 7]);
    b.send(Buffer.from('r'), '192.0.2.9', 7, got[5].path);
    await waitFor('lb.got.length === 1', () => lb.got.length === 1, 2000);
    expect(parseProxyHeader(lb.got[0], new ProxyHeader(), newKey)).toBeGreaterThan(0);
    expect(parseProxyHeader(lb.got[0], new ProxyHeader(), oldKey)).toBeLessThan(0);
    // Step 3: the old key is gone.
    b.setKeys([newKey]);
    await send(oldKey, [8]);
    await send(newKey, [9]);
    expect(got.map((g) => g.rinfo.port)).toEqual([1, 2, 4, 5, 6, 7, 9]);
    expect(b.stats.dropped.auth).toBe(2);
    // A bad list is refused and the running keys stay.
    expect(() => b.setKeys([])).toThrow(expect.objectContaining({ code: 'ERR_BACKEND_HMAC_KEY' }));
    expect(() => b.setKeys([randomBytes(15)])).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_HMAC_KEY', field: 'hmacKeys[0]' }),
    );
    await send(newKey, [10]);
    expect(got.at(-1)?.rinfo.port).toBe(10);
  });
});
