// Client Initials for the Retry offload tests (test/lb, test/demo, test/e2e): a real client Initial
// (captured from gtlsclient, test/hostile/payloads.ts) re-sealed under the Initial keys of a new
// DCID (RFC 9001 §5.2: after a Retry the client derives them from the Retry's SCID) with a token
// inserted (RFC 9000 §17.2.2), as a client answering a Retry sends it (RFC 9000 §8.1.2); and
// synthetic Initials (v2, short datagrams) for what the LB reads without decrypting.
import { initialKeys } from '../../src/demo/crypto.js';
import { PN_LEN, openPacket, sealPacket } from '../../src/demo/packet.js';
import { parseInitial } from '../hostile/payloads.js';
import { QUIC_V2, varintLength, writeVarint } from '../../src/wire/index.js';

const MIN_INITIAL_DATAGRAM = 1200;
const AEAD_TAG = 16;

function varint(v: number, length?: 1 | 2 | 4 | 8): Buffer {
  const b = Buffer.alloc(length ?? varintLength(v));
  writeVarint(b, 0, v, length);
  return b;
}

/**
 * `captured` (a real v1 client Initial) with `dcid` as its DCID and `token` in its Token field,
 * sealed under `dcid`'s client Initial keys: the ClientHello and packet number unchanged, PADDING
 * frames keeping the datagram at 1200 octets or more. Throws when `captured` does not open under
 * its own DCID.
 */
export function initialWithToken(captured: Buffer, dcid: Uint8Array, token: Uint8Array): Buffer {
  const l = parseInitial(captured);
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

/**
 * A synthetic long-header Initial of `version` (v1 type bits 00, v2 01: RFC 9369 §3.2) with a
 * token and random protected-looking content, `size` octets: for what the LB reads without
 * decrypting (version, CIDs, token, datagram size).
 */
export function syntheticInitial(
  version: number,
  dcid: Uint8Array,
  scid: Uint8Array,
  token: Uint8Array = Buffer.alloc(0),
  size = 1200,
): Buffer {
  const typeBits = version === QUIC_V2 ? 1 : 0;
  const head = Buffer.concat([
    Buffer.of(0xc0 | (typeBits << 4) | 0x03),
    Buffer.from([version >>> 24, (version >>> 16) & 0xff, (version >>> 8) & 0xff, version & 0xff]),
    Buffer.of(dcid.length),
    dcid,
    Buffer.of(scid.length),
    scid,
    varint(token.length),
    token,
  ]);
  const rest = Math.max(24, size - head.length - 2);
  return Buffer.concat([head, varint(rest, 2), Buffer.alloc(rest, 0x5c)]);
}
