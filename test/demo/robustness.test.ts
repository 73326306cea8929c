// Malformed input never throws out of the demo server: a real gtlsclient Initial (captured on
// a plain UDP socket), every truncation of it, bit flips, random datagrams, and mutated
// ClientHello messages fed to the TLS layer. Addresses 127.0.2.38, port 25190.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { readVarint, varintSizeAt } from '../../src/wire/index.js';
import { DemoServer, generateSelfSigned, type PathVia } from '../../src/demo/index.js';
import { AEAD_TAG_LEN, initialKeys } from '../../src/demo/crypto.js';
import { openPacket, PN_LEN, sealPacket } from '../../src/demo/packet.js';
import { TlsServerHandshake } from '../../src/demo/tls.js';
import { createConfig, QuicLbEncoder } from '../../src/cid/index.js';
import { createBackendCids } from '../../src/backend/index.js';

/** A socket double that records what the server sends (the server under test is real). */
class RecordingSocket extends EventEmitter {
  sent: Buffer[] = [];
  send(msg: Uint8Array): void {
    this.sent.push(Buffer.from(msg));
  }
}
const via: PathVia = { name: 'test' };

let initial: Buffer;
beforeAll(async () => {
  // Capture the first datagram of a real client.
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(25190, '127.0.2.38', () => r()));
  const got = new Promise<Buffer>((resolve) => sock.once('message', (m) => resolve(m)));
  const child = spawn('gtlsclient', ['--timeout=2s', '127.0.2.38', '25190', 'https://127.0.2.38:25190/'], {
    stdio: 'ignore',
  });
  initial = await got;
  process.kill(child.pid as number, 'SIGKILL');
  await new Promise<void>((r) => sock.close(() => r()));
});

let minted = 0;
function newServer(): { server: DemoServer; socket: RecordingSocket } {
  const config = createConfig({ configId: 1, serverIdLength: 2, nonceLength: 6, key: randomBytes(16) });
  const encoder = new QuicLbEncoder({ configs: [{ config, serverId: Uint8Array.of(1, 2) }] });
  const cids = createBackendCids(encoder, randomBytes(32));
  const counting = {
    generate: (): Uint8Array => {
      minted++;
      return cids.generate();
    },
    resetToken: cids.resetToken,
    cidLength: cids.cidLength,
  };
  minted = 0;
  const socket = new RecordingSocket();
  const server = new DemoServer({ socket, cids: counting, identity: identity, issueNewConnectionIds: false });
  return { server, socket };
}
const identity = generateSelfSigned();
const deliver = (s: RecordingSocket, msg: Buffer): boolean =>
  s.emit('message', msg, { address: '127.0.0.1', port: 5000 }, via);

/** The ClientHello carried by the captured Initial (decrypted with the RFC 9001 Initial keys). */
function clientHelloOf(datagram: Buffer): Buffer {
  const pkt = Buffer.from(datagram);
  const dcid = pkt.subarray(6, 6 + pkt[5]);
  let o = 6 + pkt[5];
  o += 1 + pkt[o];
  o += varintSizeAt(pkt, o) + readVarint(pkt, o);
  const len = readVarint(pkt, o);
  o += varintSizeAt(pkt, o);
  const keys = initialKeys(dcid).rx;
  const mask = keys.mask(pkt.subarray(o + 4, o + 20));
  pkt[0] ^= mask[0] & 0x0f;
  const pnLen = (pkt[0] & 3) + 1;
  let pn = 0;
  for (let i = 0; i < pnLen; i++) {
    pkt[o + i] ^= mask[1 + i];
    pn = pn * 256 + pkt[o + i];
  }
  const payload = keys.open(pn, pkt.subarray(0, o + pnLen), pkt.subarray(o + pnLen, o + len));
  if (!payload) throw new Error('could not open the captured Initial');
  // First frame after PADDING: CRYPTO(0x06) offset 0.
  let p = 0;
  while (payload[p] === 0) p++;
  expect(payload[p]).toBe(0x06);
  p++;
  p += varintSizeAt(payload, p);
  const clen = readVarint(payload, p);
  p += varintSizeAt(payload, p);
  return payload.subarray(p, p + clen);
}

/**
 * A client Initial (RFC 9000 §17.2.2) carrying `frames`, padded to a 1200-octet datagram and
 * protected with the Initial keys of `dcid` (RFC 9001 §5.2).
 */
function clientInitial(dcid: Buffer, scid: Buffer, frames: Buffer): Buffer {
  const header = Buffer.concat([
    Buffer.of(0xc0 | (PN_LEN - 1), 0, 0, 0, 1, dcid.length),
    dcid,
    Buffer.of(scid.length),
    scid,
    Buffer.of(0 /* token length */),
    Buffer.alloc(2 + PN_LEN),
  ]);
  const payload = Buffer.alloc(1200 - header.length - AEAD_TAG_LEN);
  frames.copy(payload);
  header.writeUInt16BE(0x4000 | (PN_LEN + payload.length + AEAD_TAG_LEN), header.length - 2 - PN_LEN);
  return sealPacket(initialKeys(dcid).rx, header, header.length - PN_LEN, 0, payload);
}

/** The frames of the server's Initial that opens `datagram`, with the server Initial keys of `dcid`. */
function serverInitialPayload(datagram: Buffer, dcid: Buffer): Buffer | undefined {
  let o = 6 + datagram[5]; // first octet, version, DCID length, DCID
  o += 1 + datagram[o]; // SCID length, SCID
  o += varintSizeAt(datagram, o) + readVarint(datagram, o); // token
  const length = readVarint(datagram, o);
  o += varintSizeAt(datagram, o);
  return openPacket(initialKeys(dcid).tx, datagram.subarray(0, o + length), o, -1)?.payload;
}

describe('demo server robustness', () => {
  it('accepts the captured Initial (sanity: the fixture is a real client Initial)', () => {
    const { server, socket } = newServer();
    deliver(socket, initial);
    expect(server.stats.connectionsAccepted).toBe(1);
    expect(socket.sent.length).toBeGreaterThanOrEqual(1);
    expect(socket.sent[0].length).toBeGreaterThanOrEqual(1200);
    server.close();
  });

  it('a spoofed Initial is never amplified: nothing beyond the octets received, until the client sends more', async () => {
    const { server, socket } = newServer();
    deliver(socket, initial);
    const sent = (): number => socket.sent.reduce((n, b) => n + b.length, 0);
    expect(sent()).toBe(initial.length); // the whole first flight, in one datagram
    // The server's PTO passes (several times) with no answer: RFC 9000 §8.1 would allow 3x; this server sends nothing more.
    await new Promise((r) => setTimeout(r, 3500));
    expect(sent()).toBe(initial.length);
    // The client's anti-deadlock probe (its Initial again) brings budget: the flight is resent, still 1:1.
    deliver(socket, initial);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sent()).toBeGreaterThan(initial.length);
    expect(sent()).toBeLessThanOrEqual(2 * initial.length);
    server.close();
  }, 15_000);

  it('every truncation, 2000 bit flips and 2000 random datagrams: nothing thrown, no internal error', () => {
    const { server, socket } = newServer();
    for (let n = 0; n < initial.length; n++) deliver(socket, initial.subarray(0, n));
    for (let i = 0; i < 2000; i++) {
      const m = Buffer.from(initial);
      m[i % m.length] ^= 1 << (i % 8);
      deliver(socket, m);
    }
    for (let i = 0; i < 2000; i++) deliver(socket, randomBytes(1 + (i % 1300)));
    expect(server.stats.internalErrors).toBe(0);
    expect(server.stats.datagramsDropped).toBeGreaterThan(0);
    // Garbage Initials leave no state behind and mint no CID (the encoder's nonces are not spent).
    expect(server.connectionCount).toBe(0);
    expect(minted).toBe(0);
    server.close();
  });

  it('mutated and truncated ClientHello messages give an alert or a flight, never an exception', () => {
    const ch = clientHelloOf(initial);
    expect(ch[0]).toBe(1);
    const ok = new TlsServerHandshake(identity, ['h3']).onClientHello(Buffer.from(ch), () => Buffer.alloc(0));
    expect(ok.ok).toBe(true);
    let alerts = 0;
    const tryOne = (m: Buffer): void => {
      const r = new TlsServerHandshake(identity, ['h3']).onClientHello(m, () => Buffer.alloc(0));
      if (!r.ok) alerts++;
    };
    for (let n = 4; n < ch.length; n += 7) tryOne(ch.subarray(0, n));
    for (let i = 0; i < 400; i++) {
      const m = Buffer.from(ch);
      m[4 + ((i * 37) % (m.length - 4))] = i & 0xff;
      tryOne(m);
    }
    expect(alerts).toBeGreaterThan(0);
  });

  it('closes with CRYPTO_BUFFER_EXCEEDED (0x0d, RFC 9000 §20.1) when CRYPTO data lies beyond the buffer', () => {
    const { server, socket } = newServer();
    const errors: Array<Record<string, unknown>> = [];
    server.on('event', (e: Record<string, unknown>) => {
      if (e.event === 'error') errors.push(e);
    });
    const dcid = randomBytes(8);
    // CRYPTO (0x06) of one octet at offset 65536 (a 4-octet varint): the server buffers 64 KiB of
    // CRYPTO data per packet-number space (RFC 9000 §7.5).
    const frame = Buffer.of(0x06, 0x80, 0x01, 0x00, 0x00, 0x01, 0x16);
    deliver(socket, clientInitial(dcid, randomBytes(8), frame));
    expect(server.stats.connectionsAccepted).toBe(1);
    expect(socket.sent.length).toBe(1);
    const payload = serverInitialPayload(socket.sent[0], dcid);
    expect(payload).toBeDefined();
    // CONNECTION_CLOSE (0x1c): Error Code, Frame Type, Reason Phrase.
    expect(payload![0]).toBe(0x1c);
    expect(readVarint(payload!, 1)).toBe(0x0d);
    expect(errors.map((e) => e.code)).toEqual([0x0d]);
    server.close();
  });

  it('answers an unknown version with Version Negotiation listing QUIC v1 (RFC 9000 §17.2.1), only for 1200-octet datagrams', () => {
    const { server, socket } = newServer();
    const probe = Buffer.alloc(1200);
    Buffer.from('c0' + '1a2a3a4a' + '08' + '0102030405060708' + '04' + 'a1a2a3a4', 'hex').copy(probe);
    deliver(socket, probe.subarray(0, 1199));
    expect(socket.sent.length).toBe(0);
    deliver(socket, probe);
    expect(socket.sent.length).toBe(1);
    const vn = socket.sent[0];
    expect(vn[0] & 0x80).toBe(0x80);
    expect(vn.readUInt32BE(1)).toBe(0);
    // DCID = the client's SCID, SCID = the client's DCID, then the supported versions.
    expect(vn.subarray(5).toString('hex')).toBe('04a1a2a3a4' + '080102030405060708' + '00000001');
    expect(server.stats.versionNegotiations).toBe(1);
    server.close();
  });
});
