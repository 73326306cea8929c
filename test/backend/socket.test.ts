// The backend kit on real UDP sockets: LB encapsulation in, replies out via the LB or from the
// VIP, direct unicast traffic, health probes, HMAC, and the CID / preferred_address helpers.
// Addresses 127.0.2.30-39, ports 25200-25299.
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BackendError,
  BackendSocket,
  buildPreferredAddress,
  createBackendCids,
  type BackendPath,
} from '../../src/backend/index.js';
import {
  decodePreferredAddress,
  encodeHealthProbe,
  encodeProxyHeader,
  HealthProbeKind,
  parseHealthProbe,
  formatProxyAddress,
  parseProxyHeader,
  ProxyDirection,
  ProxyHeader,
  QuicWireError,
} from '../../src/wire/index.js';
import { createConfig, decodeServerId, QuicLbEncoder, statelessResetToken } from '../../src/cid/index.js';

const toClose: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const c of toClose.splice(0)) await c.close();
});

async function udp(address: string, port = 0): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(port, address, () => r()));
  toClose.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
  return s;
}

function next(s: dgram.Socket): Promise<{ msg: Buffer; rinfo: dgram.RemoteInfo }> {
  return new Promise((resolve) => s.once('message', (msg, rinfo) => resolve({ msg, rinfo })));
}

async function backend(opts: ConstructorParameters<typeof BackendSocket>[0]): Promise<BackendSocket> {
  const b = new BackendSocket(opts);
  await b.bind();
  toClose.push(b);
  return b;
}

type Got = { msg: Buffer; rinfo: { address: string; port: number }; path: BackendPath };
function nextMessage(b: BackendSocket): Promise<Got> {
  return new Promise((resolve) =>
    b.once('message', (msg: Buffer, rinfo: Got['rinfo'], path: BackendPath) => resolve({ msg, rinfo, path })),
  );
}

const quic = Buffer.concat([Buffer.of(0x41), randomBytes(60)]);
/** The test LB's source address (allowLbAddresses). */
const LB = '127.0.2.31';

describe('BackendSocket', () => {
  it('presents LB-encapsulated datagrams with the client address and answers through the sending LB socket', async () => {
    const b = await backend({ listen: { address: '127.0.2.30', port: 25200 }, allowLbAddresses: [LB] });
    const lb = await udp('127.0.2.31');
    const got = nextMessage(b);
    const hdr = encodeProxyHeader({ srcAddr: '192.0.2.7', srcPort: 40000, dstAddr: '127.0.2.31', dstPort: 4433 });
    lb.send(Buffer.concat([hdr, quic]), 25200, '127.0.2.30');
    const m = await got;
    expect(m.msg.equals(quic)).toBe(true);
    expect(m.rinfo).toEqual({ address: '192.0.2.7', port: 40000 });
    expect(m.path.kind).toBe('lb');
    expect(m.path.local).toEqual({ address: '127.0.2.31', port: 4433 });

    const reply = next(lb);
    b.send(Buffer.from('reply'), '192.0.2.7', 40000, m.path);
    const r = await reply;
    const h = new ProxyHeader();
    const hl = parseProxyHeader(r.msg, h);
    expect(hl).toBeGreaterThan(0);
    expect(formatProxyAddress(h, 'src')).toBe('127.0.2.31'); // the VIP the reply must leave from
    expect(h.srcPort).toBe(4433);
    expect(formatProxyAddress(h, 'dst')).toBe('192.0.2.7');
    expect(h.dstPort).toBe(40000);
    expect(r.msg.subarray(hl).toString()).toBe('reply');
    expect(r.rinfo.port).toBe(25200); // sent from the forwarding socket (the LB allows that source)
    expect(b.stats.lbDatagrams).toBe(1);
    expect(b.stats.sentViaLb).toBe(1);
  });

  it('IPv6: encapsulated from an IPv6 LB, answered with an IPv6 header naming the VIP and the client', async () => {
    const b = await backend({ listen: { address: '::1', port: 25210 }, allowLbAddresses: ['::1'] });
    const lb = dgram.createSocket('udp6');
    await new Promise<void>((r) => lb.bind(0, '::1', () => r()));
    toClose.push({ close: () => new Promise<void>((r) => lb.close(() => r())) });
    const got = nextMessage(b);
    lb.send(
      Buffer.concat([
        encodeProxyHeader({ srcAddr: '2001:db8::7', srcPort: 443, dstAddr: '2001:db8::1', dstPort: 4433 }),
        quic,
      ]),
      25210,
      '::1',
    );
    const m = await got;
    expect(m.rinfo).toEqual({ address: '2001:db8::7', port: 443 });
    expect(m.path.name).toBe('lb:[2001:db8::1]:4433');
    const reply = next(lb);
    b.send(Buffer.from('v6'), m.rinfo.address, m.rinfo.port, m.path);
    const r = await reply;
    const h = new ProxyHeader();
    const hl = parseProxyHeader(r.msg, h);
    expect(h.family).toBe(6);
    expect(formatProxyAddress(h, 'src')).toBe('2001:db8::1');
    expect(formatProxyAddress(h, 'dst')).toBe('2001:db8::7');
    expect(r.msg.subarray(hl).toString()).toBe('v6');
  });

  it('sends replies to a configured return port instead, and uses the last path when send() gets none (trackPaths)', async () => {
    const ret = await udp('127.0.2.32');
    const b = await backend({
      listen: { address: '127.0.2.30', port: 25201 },
      returnPath: { mode: 'via-lb', address: '127.0.2.32', port: ret.address().port },
      trackPaths: true,
      allowLbAddresses: [LB],
    });
    const lb = await udp('127.0.2.31');
    const got = nextMessage(b);
    lb.send(
      Buffer.concat([
        encodeProxyHeader({ srcAddr: '192.0.2.8', srcPort: 1234, dstAddr: '127.0.2.31', dstPort: 4433 }),
        quic,
      ]),
      25201,
      '127.0.2.30',
    );
    await got;
    const reply = next(ret);
    b.send(Buffer.from('x'), '192.0.2.8', 1234);
    const h = new ProxyHeader();
    const r = await reply;
    expect(parseProxyHeader(r.msg, h)).toBeGreaterThan(0);
    expect(formatProxyAddress(h, 'dst')).toBe('192.0.2.8');
  });

  it('delivers plain QUIC datagrams (after migration) on a direct path and answers from the same socket', async () => {
    const b = await backend({
      listen: { address: '127.0.2.30', port: 25202 },
      unicast: [{ address: '127.0.2.33', port: 25203 }],
      allowLbAddresses: [LB],
    });
    const client = await udp('127.0.2.34');
    const got = nextMessage(b);
    client.send(quic, 25203, '127.0.2.33');
    const m = await got;
    expect(m.path.kind).toBe('direct');
    expect(m.path.name).toBe('direct:127.0.2.33:25203');
    expect(m.rinfo.address).toBe('127.0.2.34');
    const reply = next(client);
    b.send(Buffer.from('pong'), m.rinfo.address, m.rinfo.port, m.path);
    const r = await reply;
    expect(r.msg.toString()).toBe('pong');
    expect(r.rinfo).toMatchObject({ address: '127.0.2.33', port: 25203 });
    expect(b.addresses()).toEqual([
      { address: '127.0.2.30', port: 25202 },
      { address: '127.0.2.33', port: 25203 },
    ]);
  });

  it('answers the LB health probe "up", then "draining" after drain()', async () => {
    const b = await backend({ listen: { address: '127.0.2.30', port: 25204 }, allowLbAddresses: [LB] });
    const lb = await udp('127.0.2.31');
    const token = randomBytes(8);
    let reply = next(lb);
    lb.send(encodeHealthProbe(HealthProbeKind.REQUEST, token), 25204, '127.0.2.30');
    let r = await reply;
    expect(parseHealthProbe(r.msg)).toBe(HealthProbeKind.UP);
    expect(r.msg.subarray(20).equals(token)).toBe(true);
    b.drain();
    reply = next(lb);
    lb.send(encodeHealthProbe(HealthProbeKind.REQUEST, token), 25204, '127.0.2.30');
    r = await reply;
    expect(parseHealthProbe(r.msg)).toBe(HealthProbeKind.DRAINING);
    expect(b.stats.healthProbesAnswered).toBe(2);
  });

  it('drops malformed headers, senders outside allowLbAddresses and unsigned headers when a key is set (counted, no throw)', async () => {
    const key = randomBytes(32);
    const b = await backend({
      listen: { address: '127.0.2.30', port: 25205 },
      hmacKey: key,
      signForward: true,
      allowLbAddresses: ['127.0.2.31'],
    });
    const lb = await udp('127.0.2.31');
    const other = await udp('127.0.2.35');
    const delivered: Buffer[] = [];
    b.on('message', (m: Buffer) => delivered.push(m));
    const plainHdr = encodeProxyHeader({ srcAddr: '192.0.2.9', srcPort: 1, dstAddr: '127.0.2.31', dstPort: 4433 });
    const bad = Buffer.concat([plainHdr, quic]);
    bad[12] = 0x31; // version 3
    lb.send(bad, 25205, '127.0.2.30');
    lb.send(Buffer.concat([plainHdr, quic]), 25205, '127.0.2.30'); // unsigned
    other.send(
      Buffer.concat([
        encodeProxyHeader(
          { srcAddr: '192.0.2.9', srcPort: 1, dstAddr: '127.0.2.31', dstPort: 4433, hmacKey: key },
          quic,
        ),
        quic,
      ]),
      25205,
      '127.0.2.30',
    );
    const signed = encodeProxyHeader(
      {
        srcAddr: '192.0.2.9',
        srcPort: 1,
        dstAddr: '127.0.2.31',
        dstPort: 4433,
        hmacKey: key,
        direction: ProxyDirection.TO_BACKEND,
      },
      quic,
    );
    const reply = next(lb);
    const got = nextMessage(b);
    lb.send(Buffer.concat([signed, quic]), 25205, '127.0.2.30');
    const m = await got;
    expect(delivered.length).toBe(1);
    expect(b.stats.dropped).toEqual({ source: 1, header: 1, auth: 1, probe_rate: 0 });
    // Replies are signed: the LB's return port verifies them with the same key.
    b.send(Buffer.from('signed reply'), m.rinfo.address, m.rinfo.port, m.path);
    const r = await reply;
    const h = new ProxyHeader();
    const hl = parseProxyHeader(r.msg, h, key);
    expect(hl).toBeGreaterThan(0);
    expect(h.authenticated).toBe(true);
    expect(h.direction).toBe(ProxyDirection.TO_CLIENT);
  });

  it('direct (DSR) mode answers LB-delivered clients from the VIP itself', async () => {
    const b = await backend({
      listen: { address: '127.0.2.30', port: 25206 },
      returnPath: { mode: 'direct', vip: { address: '127.0.2.36', port: 25207 } },
      allowLbAddresses: [LB],
    });
    const lb = await udp('127.0.2.31');
    const client = await udp('127.0.2.37');
    const got = nextMessage(b);
    lb.send(
      Buffer.concat([
        encodeProxyHeader({
          srcAddr: '127.0.2.37',
          srcPort: client.address().port,
          dstAddr: '127.0.2.36',
          dstPort: 25207,
        }),
        quic,
      ]),
      25206,
      '127.0.2.30',
    );
    const m = await got;
    const reply = next(client);
    b.send(Buffer.from('from vip'), m.rinfo.address, m.rinfo.port, m.path);
    const r = await reply;
    expect(r.msg.toString()).toBe('from vip');
    expect(r.rinfo).toMatchObject({ address: '127.0.2.36', port: 25207 });
    expect(b.stats.sentDirect).toBe(1);
    // A datagram sent straight to the VIP is answered from the VIP as well.
    const got2 = nextMessage(b);
    client.send(quic, 25207, '127.0.2.36');
    const m2 = await got2;
    expect(m2.path.name).toBe('vip:127.0.2.36:25207');
    const reply2 = next(client);
    b.send(Buffer.from('vip again'), m2.rinfo.address, m2.rinfo.port, m2.path);
    expect((await reply2).rinfo).toMatchObject({ address: '127.0.2.36', port: 25207 });
  });

  it('rejects bad options with typed errors', () => {
    expect(
      () =>
        new BackendSocket({
          listen: { address: '127.0.2.30', port: 0 },
          returnPath: { mode: 'bogus' } as never,
          allowLbAddresses: [LB],
        }),
    ).toThrow(BackendError);
    expect(
      () =>
        new BackendSocket({
          listen: { address: '127.0.2.30', port: 0 },
          returnPath: { mode: 'via-lb', address: '127.0.0.1' },
          allowLbAddresses: [LB],
        }),
    ).toThrow(expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS', field: 'returnPath.port' }));
  });
});

describe('createBackendCids and buildPreferredAddress', () => {
  const config = createConfig({ configId: 3, serverIdLength: 2, nonceLength: 6, key: randomBytes(16) });
  const encoder = new QuicLbEncoder({ configs: [{ config, serverId: Uint8Array.of(7, 9) }] });
  const resetKey = randomBytes(32);
  const cids = createBackendCids(encoder, resetKey);

  it('mints routable CIDs, knows their length from the first octet and derives reset tokens', () => {
    const cid = cids.generate();
    expect(cid.length).toBe(cids.length);
    expect(cids.cidLength(cid[0])).toBe(cid.length);
    expect(cids.cidLength((5 << 5) | 3)).toBe(-1); // config 5 unknown
    expect(Buffer.from(decodeServerId(config, cid) ?? []).toString('hex')).toBe('0709');
    expect(Buffer.from(cids.resetToken(cid)).equals(Buffer.from(statelessResetToken(resetKey, cid)))).toBe(true);
    expect(cids.allowsAdditionalCids).toBe(true);
    expect(() => createBackendCids(encoder, randomBytes(8))).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_RESET_KEY' }),
    );
  });

  it('builds a preferred_address whose CID is routable and whose token matches', () => {
    const { preferredAddress, encoded } = buildPreferredAddress({ ipv4: { address: '127.0.0.2', port: 4434 }, cids });
    const back = decodePreferredAddress(encoded);
    expect(back.ipv4).toEqual({ address: '127.0.0.2', port: 4434 });
    expect(Buffer.from(back.connectionId).equals(Buffer.from(preferredAddress.connectionId))).toBe(true);
    expect(Buffer.from(decodeServerId(config, back.connectionId) ?? []).toString('hex')).toBe('0709');
    expect(Buffer.from(back.statelessResetToken).equals(Buffer.from(cids.resetToken(back.connectionId)))).toBe(true);
    expect(() => buildPreferredAddress({ cids })).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS', field: 'ipv4' }),
    );
    expect(() => buildPreferredAddress({ ipv4: { address: '::1', port: 1 }, cids })).toThrow(BackendError);
    expect(() => buildPreferredAddress({ ipv4: { address: '127.0.0.2', port: 70000 }, cids })).toThrow(QuicWireError);
  });
});
