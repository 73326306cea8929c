// QUIC-shaped datagrams for the load generator. Only the RFC 8999 invariants and the v1 Initial
// layout matter to the routers; the rest is seeded random filler and the bench trailer.
import type { Prng } from './prng.js';
import { KIND_INITIAL, KIND_SHORT, TRAILER_LENGTH, writeTrailerStatic } from './trailer.js';

const QUIC_V1 = 0x00000001;
/** RFC 9000 §17.2: long header form bit | fixed bit; Initial type 0b00; 4-byte packet number. */
const INITIAL_FIRST_BYTE = 0xc0 | 0x03;
/** RFC 9000 §17.3.1: header form 0 | fixed bit 1. Low 6 bits are header-protected, any value. */
const SHORT_FIXED_BIT = 0x40;
/** RFC 9000 §14.1: datagrams carrying a client Initial are at least 1200 bytes. */
export const MIN_INITIAL_SIZE = 1200;

/** A v1 client Initial: random client-chosen DCID (8..20 bytes), 8-byte SCID, padded to `size`. */
export function buildInitial(rng: Prng, size: number, trial: number, conn: number, dcidLength: number): Buffer {
  const buf = Buffer.alloc(Math.max(size, MIN_INITIAL_SIZE));
  let o = 0;
  buf[o++] = INITIAL_FIRST_BYTE;
  buf.writeUInt32BE(QUIC_V1, o);
  o += 4;
  buf[o++] = dcidLength;
  rng.fill(buf, o, o + dcidLength);
  o += dcidLength;
  buf[o++] = 8;
  rng.fill(buf, o, o + 8);
  o += 8;
  buf[o++] = 0; // token length
  const rest = buf.length - o - 2; // 2-byte varint Length covers packet number + payload
  buf.writeUInt16BE(0x4000 | rest, o);
  o += 2;
  rng.fill(buf, o, buf.length - TRAILER_LENGTH);
  writeTrailerStatic(buf, trial, conn, KIND_INITIAL);
  return buf;
}

/** A 1-RTT short-header packet whose DCID is `cid` (minted for the backend that owns the connection). */
export function buildShort(rng: Prng, size: number, trial: number, conn: number, cid: Uint8Array): Buffer {
  const buf = Buffer.alloc(Math.max(size, 1 + cid.length + 1 + TRAILER_LENGTH));
  buf[0] = SHORT_FIXED_BIT | (rng.nextU32() & 0x3f);
  buf.set(cid, 1);
  rng.fill(buf, 1 + cid.length, buf.length - TRAILER_LENGTH);
  writeTrailerStatic(buf, trial, conn, KIND_SHORT);
  return buf;
}
