// Test helpers for Retry offload at the demo server: a real client Initial (captured from
// gtlsclient) carrying a chosen token under a chosen DCID, re-sealed under that DCID's Initial keys
// (RFC 9001 §5.2: after a Retry the client derives them from the Retry's SCID), and a one-client
// "Retry LB" relay that answers a token-less Initial with a Retry the way the LB does.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { initialKeys } from '../../src/demo/crypto.js';
import { openPacket, PN_LEN, sealPacket } from '../../src/demo/packet.js';
import {
  encodeRetry,
  initialTokenOf,
  QUIC_V1,
  readVarint,
  sealRetryToken,
  varintLength,
  varintSizeAt,
  writeVarint,
  type RetryTokenKeys,
} from '../../src/wire/index.js';

const MIN_INITIAL_DATAGRAM = 1200;
const AEAD_TAG = 16;

function varint(v: number, length?: 1 | 2 | 4 | 8): Buffer {
  const b = Buffer.alloc(length ?? varintLength(v));
  writeVarint(b, 0, v, length);
  return b;
}

/** DCID, SCID and the packet bounds of the v1 Initial at the start of `d` (RFC 9000 §17.2.2). */
export function initialFields(d: Buffer): { dcid: Buffer; scid: Buffer; pnOffset: number; end: number } {
  let o = 5;
  const dcid = d.subarray(o + 1, o + 1 + d[o]);
  o += 1 + d[o];
  const scid = d.subarray(o + 1, o + 1 + d[o]);
  o += 1 + d[o];
  o += varintSizeAt(d, o) + readVarint(d, o);
  const length = readVarint(d, o);
  const pnOffset = o + varintSizeAt(d, o);
  return { dcid, scid, pnOffset, end: pnOffset + length };
}

/**
 * The captured client Initial with `token` in its Token field and `dcid` as its DCID, sealed
 * under `dcid`'s client Initial keys; PADDING frames keep the datagram at 1200 octets or more.
 */
export function initialWithToken(captured: Buffer, token: Uint8Array, dcid: Uint8Array): Buffer {
  const l = initialFields(captured);
  const opened = openPacket(initialKeys(l.dcid).rx, captured.subarray(0, l.end), l.pnOffset, -1);
  if (!opened) throw new Error('captured Initial does not open');
  let content = opened.payload.length;
  while (content > 0 && opened.payload[content - 1] === 0) content--; // trailing PADDING
  const prefix = (length: number): Buffer =>
    Buffer.concat([
      Buffer.of((opened.first & 0xfc) | (PN_LEN - 1)),
      captured.subarray(1, 5),
      Buffer.of(dcid.length),
      dcid,
      Buffer.of(l.scid.length),
      l.scid,
      varint(token.length),
      token,
      varint(length, 2),
      Buffer.alloc(PN_LEN),
    ]);
  const headerLength = prefix(0).length;
  const padded = Math.max(content, MIN_INITIAL_DATAGRAM - headerLength - AEAD_TAG);
  const payload = Buffer.alloc(padded);
  opened.payload.copy(payload, 0, 0, content);
  const header = prefix(PN_LEN + padded + AEAD_TAG);
  return sealPacket(initialKeys(dcid).rx, header, header.length - PN_LEN, opened.pn, payload);
}

/** The octets of a dotted-quad IPv4 literal. */
export const ipv4 = (a: string): Uint8Array => Uint8Array.from(a.split('.').map(Number));

export interface RetryRelay {
  /** Retries sent, datagrams relayed each way. */
  stats: { retries: number; toServer: number; toClient: number };
  /** The Retry SCIDs (hex) and the ODCIDs they stood for. */
  issued: Array<{ rscid: string; odcid: string }>;
  close(): void;
}

/**
 * A one-client stand-in for an LB doing Retry offload: the client talks to `listen`; a token-less
 * Initial is answered with a Retry (token sealed with `keys` for the address the server sees,
 * the relay's `upstream` socket; SCID random, 12 octets), everything else is relayed to
 * `server` from `upstream`, and the server's datagrams back to the client.
 */
export async function startRetryRelay(o: {
  listen: { address: string; port: number };
  upstream: { address: string; port: number };
  server: { address: string; port: number };
  keys: RetryTokenKeys;
  lifetimeSeconds?: number;
}): Promise<RetryRelay> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  await Promise.all([
    new Promise<void>((r) => front.bind(o.listen.port, o.listen.address, () => r())),
    new Promise<void>((r) => back.bind(o.upstream.port, o.upstream.address, () => r())),
  ]);
  const stats = { retries: 0, toServer: 0, toClient: 0 };
  const issued: RetryRelay['issued'] = [];
  const at = { tokenOffset: 0, tokenLength: 0 };
  let client: dgram.RemoteInfo | undefined;
  front.on('message', (m, r) => {
    client = r;
    if (initialTokenOf(m, at) && at.tokenLength === 0) {
      const { dcid, scid } = initialFields(m);
      const rscid = randomBytes(12);
      const token = sealRetryToken(o.keys, {
        clientIp: ipv4(o.upstream.address),
        clientPort: o.upstream.port,
        odcid: dcid,
        rscid,
        expiresAt: Math.floor(Date.now() / 1000) + (o.lifetimeSeconds ?? 10),
      });
      issued.push({ rscid: rscid.toString('hex'), odcid: dcid.toString('hex') });
      stats.retries++;
      front.send(encodeRetry({ version: QUIC_V1, dcid: scid, scid: rscid, token, odcid: dcid }), r.port, r.address);
      return;
    }
    stats.toServer++;
    back.send(m, o.server.port, o.server.address);
  });
  back.on('message', (m) => {
    if (!client) return;
    stats.toClient++;
    front.send(m, client.port, client.address);
  });
  return {
    stats,
    issued,
    close() {
      front.close();
      back.close();
    },
  };
}
