// What the attacker sends (UDP payloads; raw-udp.c adds the IP and UDP headers with any source):
// short-header datagrams with a chosen CID, undecryptable and unknown-version long headers, real
// client Initials re-sealed under fresh random DCIDs (so every copy opens a new handshake), health
// probe requests, and PROXY v2 headers: forged (valid format, naming a victim), truncated,
// oversized and replayed (a correctly signed header captured once, sent again).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { initialKeys } from '../../src/demo/crypto.js';
import { openPacket, sealPacket, PN_LEN } from '../../src/demo/packet.js';
import { createConfig, encodeConnectionId } from '../../src/cid/index.js';
import { encodeHealthProbe, HealthProbeKind } from '../../src/wire/health-probe.js';
import { encodeProxyHeader, ProxyDirection } from '../../src/wire/proxy-v2.js';
import { readVarint, varintLength, varintSizeAt, writeVarint } from '../../src/wire/varint.js';

/** UDP payload that fits a 1500-octet MTU over IPv4 (20 + 8 octets of headers). */
export const MAX_UDP_PAYLOAD = 1472;
/** QUIC v1 (RFC 9000 §15). */
const QUIC_V1 = 0x00000001;
/** A reserved version that forces Version Negotiation (RFC 9000 §15: 0x?a?a?a?a). */
const GREASE_VERSION = 0x1a2a3a4a;
/** RFC 9000 §14.1: a client's Initial datagram is at least 1200 octets. */
export const MIN_INITIAL_DATAGRAM = 1200;

/** A short-header (1-RTT) datagram of `size` octets whose DCID is `cid` (RFC 9000 §17.3.1). */
export function shortHeader(cid: Uint8Array, size = 60): Buffer {
  const b = randomBytes(Math.max(size, 1 + cid.length + 20));
  b[0] = 0x40 | (b[0] & 0x3f);
  b.set(cid, 1);
  return b;
}

/** A CID minted for `serverId` under a QUIC-LB config (so the LB routes it to that backend). */
export function mintedCid(configId: number, keyHex: string, serverId: Uint8Array): Uint8Array {
  const config = createConfig({
    configId,
    serverIdLength: serverId.length,
    nonceLength: 6,
    key: Buffer.from(keyHex, 'hex'),
  });
  return encodeConnectionId(config, serverId, randomBytes(6));
}

/** A long header of `version` with random DCID/SCID padded with random octets (not decryptable). */
export function longHeader(version = QUIC_V1, size = MIN_INITIAL_DATAGRAM): Buffer {
  const b = randomBytes(size);
  b[0] = 0xc0 | (b[0] & 0x0f); // Initial type when version 1
  b.writeUInt32BE(version >>> 0, 1);
  b[5] = 8; // DCID length, DCID 6..13
  b[14] = 8; // SCID length, SCID 15..22
  return b;
}

/** A long header with an unknown (greased) version: the server answers Version Negotiation. */
export const unknownVersion = (size = MIN_INITIAL_DATAGRAM): Buffer => longHeader(GREASE_VERSION, size);

/** A health probe request with a random token (src/wire/health-probe.ts). */
export function probeRequest(): Buffer {
  return Buffer.from(encodeHealthProbe(HealthProbeKind.REQUEST, randomBytes(8)));
}

/** Offsets of a v1 long-header Initial (RFC 9000 §17.2.2) at the start of `d`. */
export interface InitialLayout {
  dcid: Buffer;
  scid: Buffer;
  token: Buffer;
  /** Offset of the Length field, of the protected packet number, and the end of the packet. */
  lengthOffset: number;
  pnOffset: number;
  end: number;
}

/** A varint as a new Buffer (`length` forces the encoding's size, RFC 9000 §16). */
function varint(v: number, length?: 1 | 2 | 4 | 8): Buffer {
  const b = Buffer.alloc(length ?? varintLength(v));
  writeVarint(b, 0, v, length);
  return b;
}

/** The fields of the v1 Initial at the start of `d` (RFC 9000 §17.2.2); throws when it is not one. */
export function parseInitial(d: Buffer): InitialLayout {
  if ((d[0] & 0xf0) !== 0xc0 || d.readUInt32BE(1) !== QUIC_V1) throw new Error('not a v1 Initial');
  let o = 5;
  const dcid = d.subarray(o + 1, o + 1 + d[o]);
  o += 1 + d[o];
  const scid = d.subarray(o + 1, o + 1 + d[o]);
  o += 1 + d[o];
  const tokenLength = readVarint(d, o);
  o += varintSizeAt(d, o);
  const token = d.subarray(o, o + tokenLength);
  o += tokenLength;
  const lengthOffset = o;
  const length = readVarint(d, o);
  const pnOffset = o + varintSizeAt(d, o);
  if (tokenLength < 0 || length < 0 || pnOffset + length > d.length) throw new Error('truncated Initial');
  return { dcid, scid, token, lengthOffset, pnOffset, end: pnOffset + length };
}

/**
 * Re-seals a client Initial under `count` fresh random DCIDs (RFC 9001 §5.2: the Initial keys
 * derive from the DCID, so a copy with another DCID must be re-encrypted to be accepted). Each
 * result is a complete datagram that opens a new handshake at the server.
 */
export function resealInitial(captured: Buffer, count: number): Buffer[] {
  const l = parseInitial(captured);
  const opened = openPacket(initialKeys(l.dcid).rx, captured.subarray(0, l.end), l.pnOffset, -1);
  if (opened === undefined) throw new Error('captured Initial does not open');
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const dcid = randomBytes(l.dcid.length);
    const length = PN_LEN + opened.payload.length + 16; // packet number + payload + AEAD tag
    const header = Buffer.concat([
      Buffer.of((opened.first & 0xfc) | (PN_LEN - 1)),
      captured.subarray(1, 5),
      Buffer.of(dcid.length),
      dcid,
      Buffer.of(l.scid.length),
      l.scid,
      varint(l.token.length),
      l.token,
      varint(length, 2),
      Buffer.alloc(PN_LEN),
    ]);
    const pkt = sealPacket(initialKeys(dcid).rx, header, header.length - PN_LEN, opened.pn, opened.payload);
    // keep the datagram at least as long as the original (padding after the packet, RFC 9000 §12.2 allows coalesced zero padding)
    out.push(pkt.length >= captured.length ? pkt : Buffer.concat([pkt, Buffer.alloc(captured.length - pkt.length)]));
  }
  return out;
}

/**
 * Captures the first datagram Debian's ngtcp2 client (gtlsclient) sends: its Initial with a real
 * ClientHello. Loopback of the calling process only; the client is stopped by its PID.
 */
export async function captureInitial(timeoutMs = 10_000): Promise<Buffer> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const port = sock.address().port;
  const child = spawn(
    'gtlsclient',
    [
      '--exit-on-first-stream-close',
      '--no-quic-dump',
      '--no-http-dump',
      '127.0.0.1',
      String(port),
      `https://127.0.0.1:${port}/`,
    ],
    { stdio: 'ignore' },
  );
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('gtlsclient sent no Initial')), timeoutMs);
      sock.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
    });
  } finally {
    if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
    sock.close();
  }
}

/** The kinds of malformed PROXY v2 headers sent at the backend's public address and the return port. */
export type ProxyForgery = 'forged' | 'truncated' | 'oversized' | 'replayed';

/**
 * PROXY v2 datagrams of one kind, each naming a victim in `victims` (an address list) as the
 * client (toward a backend, `direction` TO_BACKEND: src = victim) or as the destination (toward
 * the return port, TO_CLIENT: dst = victim), carrying `payload`:
 * - forged: a well-formed header, unsigned (or signed with a key the receiver does not have);
 * - truncated: the header cut short at every length from 1 to its end;
 * - oversized: the length field or a TLV claims more than the datagram has, or a TLV block fills the MTU;
 * - replayed: `signedWith` signs it once (as the real sender would), the same datagram repeats.
 */
export function proxyForgeries(
  kind: ProxyForgery,
  o: {
    victims: readonly string[];
    victimPort: number;
    vip: string;
    vipPort: number;
    payload: Uint8Array;
    direction: ProxyDirection;
    signedWith?: Uint8Array;
    count?: number;
  },
): Buffer[] {
  const n = o.count ?? 64;
  const header = (victim: string, key?: Uint8Array): Buffer => {
    const ends = { a: victim, ap: o.victimPort, b: o.vip, bp: o.vipPort };
    const toBackend = o.direction === ProxyDirection.TO_BACKEND;
    return encodeProxyHeader(
      {
        srcAddr: toBackend ? ends.a : ends.b,
        srcPort: toBackend ? ends.ap : ends.bp,
        dstAddr: toBackend ? ends.b : ends.a,
        dstPort: toBackend ? ends.bp : ends.ap,
        direction: o.direction,
        ...(key ? { hmacKey: key } : {}),
      },
      o.payload,
    );
  };
  const victim = (i: number): string => o.victims[i % o.victims.length];
  switch (kind) {
    case 'forged':
      return Array.from({ length: n }, (_, i) =>
        Buffer.concat([header(victim(i), i % 2 === 0 ? undefined : randomBytes(32)), o.payload]),
      );
    case 'truncated': {
      const full = Buffer.concat([header(victim(0)), o.payload]);
      return Array.from({ length: Math.min(n, full.length - 1) }, (_, i) =>
        full.subarray(0, 1 + ((i * 7) % (full.length - 1))),
      );
    }
    case 'oversized':
      // (IP_HDRINCL datagrams are never fragmented: every one stays within a 1500-octet MTU)
      return Array.from({ length: n }, (_, i) => {
        const h = header(victim(i));
        if (i % 3 === 0) {
          h.writeUInt16BE(0xffff, 14); // claims 64 kB of addresses + TLVs
          return Buffer.concat([h, o.payload]);
        }
        if (i % 3 === 1) {
          // a TLV that claims 60 000 octets, with a few behind it
          const tlv = Buffer.from([0xe5, 0xea, 0x60, 1, 2, 3]);
          const b = Buffer.concat([h, tlv]);
          b.writeUInt16BE(b.length - 16, 14);
          return Buffer.concat([b, o.payload]);
        }
        // a real TLV block (custom type) as large as the MTU leaves room for
        const room = Math.max(3, MAX_UDP_PAYLOAD - h.length - o.payload.length);
        const tlv = Buffer.alloc(room);
        tlv[0] = 0xe5;
        tlv.writeUInt16BE(room - 3, 1);
        const b = Buffer.concat([h, tlv]);
        b.writeUInt16BE(b.length - 16, 14);
        return Buffer.concat([b, o.payload]);
      });
    case 'replayed': {
      if (o.signedWith === undefined) throw new Error('replayed: needs the key the real sender signs with');
      const one = Buffer.concat([header(victim(0), o.signedWith), o.payload]);
      return [one];
    }
  }
}
