// The sinks' bookkeeping: ownership by first arrival, misdelivery, PROXY v2 stripping, stale and
// foreign datagrams — over real UDP sockets on loopback.
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyHeader, encodeProxyHeader, formatProxyAddress, parseProxyHeader } from '../../src/wire/index.js';
import { buildShort } from '../../bench/lib/packets.js';
import { Prng } from '../../bench/lib/prng.js';
import { nowUs, stampTrailer } from '../../bench/lib/trailer.js';
import { NO_OWNER, SinkSet } from '../../bench/sink/sinks.js';
import { sleep } from '../helpers/wait.js';

describe('SinkSet', () => {
  const owner = new Int8Array(8).fill(NO_OWNER);
  const sinks = new SinkSet(['127.0.3.20', '127.0.3.21'], owner);
  let ports: number[] = [];
  let client: Socket;
  const rng = new Prng(1);
  const cid = Uint8Array.of(0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09);

  beforeAll(async () => {
    ports = await sinks.start();
    client = createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.3.22', () => r()));
  });
  afterAll(async () => {
    await sinks.close();
    await new Promise<void>((r) => client.close(() => r()));
  });

  const send = (buf: Buffer, sink: number): Promise<void> =>
    new Promise((r) => client.send(buf, ports[sink], `127.0.3.${20 + sink}`, () => r()));
  const packet = (trial: number, conn: number, seq: number): Buffer => {
    const b = buildShort(rng, 300, trial, conn, cid);
    stampTrailer(b, seq, nowUs());
    return b;
  };
  const settle = async (want: number): Promise<void> => {
    for (let i = 0; i < 100 && sinks.stats().received.reduce((a, b) => a + b, 0) < want; i++) await sleep(10);
  };

  it('gives a connection to the sink that receives it first and counts later arrivals elsewhere as misdelivered', async () => {
    sinks.reset(5);
    // [conn, sink] in arrival order (each waits for the previous: two sockets give no order).
    const order = [
      [0, 0],
      [0, 0],
      [0, 1],
      [1, 1],
      [1, 0],
    ];
    for (const [i, [conn, sink]] of order.entries()) {
      await send(packet(5, conn, i), sink);
      await settle(i + 1);
    }
    const s = sinks.stats();
    expect(owner[0]).toBe(0);
    expect(owner[1]).toBe(1);
    expect(s.received).toEqual([3, 2]);
    expect(s.wrong).toBe(2);
    expect(s.corrupt).toBe(0);
    expect(s.hist.reduce((a, b) => a + b, 0)).toBe(5);
  });

  it("counts packets of a retired owner's connections delivered elsewhere as orphaned, not misdelivered (pool change)", async () => {
    owner.fill(NO_OWNER);
    sinks.reset(9);
    await send(packet(9, 3, 0), 1); // conn 3 belongs to sink 1
    await settle(1);
    await send(packet(9, 3, 1), 0); // sink 1 still in the pool: a misdelivery
    await settle(2);
    sinks.retire(1); // sink 1 leaves the pool; the router then sends conn 3's packets elsewhere
    await send(packet(9, 3, 2), 0);
    await send(packet(9, 3, 3), 0);
    await settle(4);
    let s = sinks.stats();
    expect(s.received).toEqual([3, 1]);
    expect(s.wrong).toBe(1);
    expect(s.orphaned).toBe(2);
    // reset() puts every sink back in the pool.
    sinks.reset(10);
    await send(packet(10, 3, 0), 0);
    await settle(1);
    s = sinks.stats();
    expect(s.orphaned).toBe(0);
    expect(s.wrong).toBe(1);
  });

  it('strips a PROXY v2 header and checks the datagram behind it is intact', async () => {
    sinks.reset(6);
    const quic = packet(6, 0, 10);
    const hdr = encodeProxyHeader({ srcAddr: '127.0.3.22', srcPort: 4000, dstAddr: '127.0.3.100', dstPort: 443 });
    await send(Buffer.concat([hdr, quic]), 0);
    // The same header in front of a datagram that lost bytes in transit: counted as corrupt.
    const cut = Buffer.concat([hdr, quic.subarray(0, 50), quic.subarray(quic.length - 24)]);
    await send(cut, 0);
    await settle(2);
    const s = sinks.stats();
    expect(s.proxied).toBe(2);
    expect(s.corrupt).toBe(1);
    expect(s.wrong).toBe(0);
  });

  it('reflects packets in echo mode, mirroring the PROXY v2 header for an LB return path', async () => {
    sinks.reset(8, true);
    const replies: Buffer[] = [];
    const onReply = (m: Buffer): void => void replies.push(m);
    client.on('message', onReply);
    try {
      const quic = packet(8, 2, 0);
      const hdr = encodeProxyHeader({ srcAddr: '127.0.3.23', srcPort: 4001, dstAddr: '127.0.3.100', dstPort: 443 });
      await send(Buffer.concat([hdr, quic]), 0);
      await send(packet(8, 2, 1), 0); // no header: reflected as is
      for (let i = 0; i < 100 && replies.length < 2; i++) await sleep(10);
      expect(sinks.stats().echoed).toBe(2);
      const withHeader = replies.find((r) => r[0] === 0x0d)!;
      const h = new ProxyHeader();
      const n = parseProxyHeader(withHeader, h);
      expect(n).toBeGreaterThan(0);
      expect(formatProxyAddress(h, 'src')).toBe('127.0.3.100');
      expect(h.srcPort).toBe(443);
      expect(formatProxyAddress(h, 'dst')).toBe('127.0.3.23');
      expect(h.dstPort).toBe(4001);
      expect(withHeader.subarray(n)).toEqual(quic);
      expect(replies.find((r) => r[0] !== 0x0d)!.length).toBe(300);
    } finally {
      client.off('message', onReply);
    }
  });

  it('ignores datagrams from an earlier trial and datagrams without a trailer', async () => {
    sinks.reset(7);
    await send(packet(6, 0, 11), 1);
    await send(Buffer.from('not a bench datagram, no trailer here'), 1);
    for (let i = 0; i < 50 && sinks.stats().stale + sinks.stats().foreign < 2; i++) await sleep(10);
    const s = sinks.stats();
    expect(s.stale).toBe(1);
    expect(s.foreign).toBe(1);
    expect(s.received).toEqual([0, 0]);
    expect(s.wrong).toBe(0);
  });
});

// Session mode (bench/sessions): a frame's bit is set only at its owner, only owned frames are
// echoed, and frames that did not come from a client address count as having crossed the tier.
describe('SinkSet session mode', () => {
  const owner = Int8Array.of(0, 1, NO_OWNER);
  const sinks = new SinkSet(['127.0.3.26', '127.0.3.27'], owner);
  const rowBytes = 2;
  const up = new SharedArrayBuffer(owner.length * rowBytes);
  const bits = new Uint8Array(up);
  let ports: number[] = [];
  let client: Socket; // a client address
  let tier: Socket; // anything else: the forwarding tier
  const echoes: number[] = [];
  const rng = new Prng(2);
  const cid = Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2, 1);

  beforeAll(async () => {
    ports = await sinks.start();
    client = createSocket('udp4');
    tier = createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.3.28', () => r()));
    await new Promise<void>((r) => tier.bind(0, '127.0.3.29', () => r()));
    client.on('message', (m) => echoes.push(m.readUInt32BE(m.length - 16)));
    sinks.sessionMode({ up, rowBytes, clientHosts: ['127.0.3.28'], latencyFrames: 3 });
  });
  afterAll(async () => {
    await sinks.close();
    await new Promise<void>((r) => client.close(() => r()));
    await new Promise<void>((r) => tier.close(() => r()));
  });

  it('records frames at their owner only, echoes those, and counts what came through the tier', async () => {
    sinks.reset(9, true);
    // [from, conn, seq, sink]: conn 0 is owned by sink 0, conn 1 by sink 1.
    const sends: [Socket, number, number, number][] = [
      [client, 0, 0, 0],
      [client, 0, 1, 1], // at the wrong backend: not delivered, not echoed
      [tier, 0, 4, 0],
      [tier, 1, 9, 1],
      [client, 0, 99, 0], // beyond the row: counted, no bit
    ];
    for (const [i, [from, conn, seq, sink]] of sends.entries()) {
      const b = buildShort(rng, 160, 9, conn, cid);
      stampTrailer(b, seq, nowUs());
      await new Promise<void>((r) => from.send(b, ports[sink], `127.0.3.${26 + sink}`, () => r()));
      for (let k = 0; k < 100 && sinks.stats().received.reduce((a, c) => a + c, 0) < i + 1; k++) await sleep(10);
    }
    await sleep(50);
    const s = sinks.stats();
    expect(Array.from(bits)).toEqual([0b10001, 0, 0, 0b10, 0, 0]);
    expect(s.wrong).toBe(1);
    expect(s.viaTier).toBe(2);
    // Owned: frames 0, 4, 99 of conn 0 and 9 of conn 1; those from the tier went back to the tier socket.
    expect(s.echoed).toBe(4);
    expect(echoes.sort((a, b) => a - b)).toEqual([0, 99]);
    // Latency only for frames numbered below 3: frame 0 of conn 0 and frame 1 at the wrong sink.
    expect(s.hist.reduce((a, c) => a + c, 0)).toBe(2);
  });
});
