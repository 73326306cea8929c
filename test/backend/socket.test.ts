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
import { waitFor } from '../helpers/wait.js';

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

describe('server mode: returnPath vip and receiveFromVip', () => {
  /** A VipSender that records what it is asked to send (the co-located forwarder's part). */
  function recordingSender(vips: { address: string; port: number }[]) {
    const sent: { msg: Buffer; address: string; port: number; index: number }[] = [];
    return {
      sent,
      sender: {
        vipAddresses: () => vips,
        vipIndexOf: (v: { address: string; port: number }) =>
          vips.findIndex((x) => x.address === v.address && x.port === v.port),
        sendFromVip: (msg: Uint8Array, address: string, port: number, index: number) => {
          sent.push({ msg: Buffer.from(msg), address, port, index });
          return true;
        },
      },
    };
  }

  it('a VIP datagram handed over arrives on that VIP path; replies on it and on peer paths go through the sender', async () => {
    const vips = [
      { address: '192.0.2.10', port: 443 },
      { address: '192.0.2.11', port: 443 },
    ];
    const { sent, sender } = recordingSender(vips);
    const b = await backend({
      listen: { address: '127.0.2.38', port: 0 },
      returnPath: { mode: 'vip', sender },
      allowLbAddresses: ['127.0.2.39'],
    });
    const got: { msg: Buffer; rinfo: { address: string; port: number }; path: BackendPath }[] = [];
    b.on('message', (msg: Buffer, rinfo: { address: string; port: number }, path: BackendPath) =>
      got.push({ msg, rinfo, path }),
    );
    const d = randomBytes(30);
    b.receiveFromVip(d, { address: '198.51.100.1', port: 5000 }, 1);
    b.receiveFromVip(d, { address: '198.51.100.2', port: 5001 }, 1);
    expect(got).toHaveLength(2);
    expect(got[0].msg.equals(d)).toBe(true);
    expect(got[0].path).toMatchObject({ kind: 'lb', name: 'vip:192.0.2.11:443', local: vips[1] });
    expect(got[1].path).toBe(got[0].path); // one path object per VIP
    b.send(Buffer.from('r1'), '198.51.100.1', 5000, got[0].path);
    // A peer-forwarded datagram whose header names VIP 0: its reply leaves from VIP 0.
    const peer = await udp('127.0.2.39');
    const pkt = Buffer.concat([
      encodeProxyHeader({ srcAddr: '198.51.100.3', srcPort: 6000, dstAddr: '192.0.2.10', dstPort: 443 }),
      Buffer.from([0x41, 1, 2, 3]),
    ]);
    peer.send(pkt, b.addresses()[0].port, '127.0.2.38');
    await waitFor('the peer-forwarded datagram', () => got.length === 3);
    expect(got[2].path).toMatchObject({ kind: 'lb', local: vips[0] });
    b.send(Buffer.from('r2'), '198.51.100.3', 6000, got[2].path);
    expect(sent.map((s) => [s.msg.toString(), s.address, s.port, s.index])).toEqual([
      ['r1', '198.51.100.1', 5000, 1],
      ['r2', '198.51.100.3', 6000, 0],
    ]);
    expect(b.stats).toMatchObject({ vipDatagrams: 2, lbDatagrams: 1, sentVip: 2, sentViaLb: 0 });
  });

  it('without mode vip a handed-over datagram is dropped and counted; mode vip needs a sender', async () => {
    const b = await backend({ listen: { address: '127.0.2.38', port: 0 }, allowLbAddresses: ['127.0.2.39'] });
    let n = 0;
    b.on('message', () => n++);
    b.receiveFromVip(Buffer.alloc(10), { address: '198.51.100.1', port: 5000 }, 0);
    expect(n).toBe(0);
    expect(b.stats.dropped.header).toBe(1);
    expect(
      () =>
        new BackendSocket({
          listen: { address: '127.0.2.38', port: 0 },
          returnPath: { mode: 'vip' } as never,
          allowLbAddresses: ['127.0.2.39'],
        }),
    ).toThrow(expect.objectContaining({ code: 'ERR_BACKEND_RETURN_MODE' }));
  });

  it('setAllowedLbAddresses swaps the allow list; a bad or empty list keeps the running one', async () => {
    const b = await backend({ listen: { address: '127.0.2.38', port: 0 }, allowLbAddresses: ['127.0.2.39'] });
    expect(() => b.setAllowedLbAddresses(['not-an-ip'])).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_ADDRESS' }),
    );
    expect(() => b.setAllowedLbAddresses([])).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_LB_UNAUTHENTICATED' }),
    );
    const probe = encodeHealthProbe(HealthProbeKind.REQUEST, Buffer.alloc(8, 1));
    const port = b.addresses()[0].port;
    const old = await udp('127.0.2.39');
    const fresh = await udp('127.0.2.37');
    // Still the old list: .39 answered, .37 dropped.
    old.send(probe, port, '127.0.2.38');
    expect(parseHealthProbe((await next(old)).msg)).toBe(HealthProbeKind.UP);
    b.setAllowedLbAddresses(['127.0.2.37']);
    fresh.send(probe, port, '127.0.2.38');
    expect(parseHealthProbe((await next(fresh)).msg)).toBe(HealthProbeKind.UP);
    const dropped = b.stats.dropped.source;
    old.send(probe, port, '127.0.2.38');
    await new Promise((r) => setTimeout(r, 50));
    expect(b.stats.dropped.source).toBe(dropped + 1);
  });
});
