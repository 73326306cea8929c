/**
 * QUIC variable-length integers (RFC 9000 §16).
 *
 * The two most significant bits of the first octet give the encoded length (00 -> 1, 01 -> 2,
 * 10 -> 4, 11 -> 8 octets); the remaining bits are the value in network byte order, so values
 * reach 2^62 - 1.
 *
 * Numbers vs bigint: JavaScript numbers are exact only up to 2^53 - 1
 * (Number.MAX_SAFE_INTEGER). The `number` API covers every value up to that and reports larger
 * ones with the sentinel {@link VARINT_TOO_LARGE}; the `*BigInt` variants cover the full 62 bits.
 * Readers never throw and never allocate; writers throw {@link QuicWireError} on misuse.
 */
import { QuicWireError } from './errors.js';

/** Largest value a QUIC varint can carry: 2^62 - 1 (RFC 9000 §16). */
export const VARINT_MAX_BIGINT = (1n << 62n) - 1n;
/** Largest value the `number` API handles exactly (2^53 - 1). */
export const VARINT_MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** `readVarint` sentinel: the buffer ends before the varint does (or offset is out of range). */
export const VARINT_TRUNCATED = -1;
/** `readVarint` sentinel: the value is above 2^53 - 1; use `readVarintBigInt`. */
export const VARINT_TOO_LARGE = -2;

// RFC 9000 §16: 2-bit length prefix and the largest value of each encoding length.
const LENGTH_PREFIX_SHIFT = 6;
const VALUE_MASK_FIRST = 0x3f;
const MAX_1 = 63;
const MAX_2 = 16383;
const MAX_4 = 1073741823;
const TWO_32 = 4294967296;

/** Reusable result of {@link readVarintInto}. Allocate once with `new VarintResult()`. */
export class VarintResult {
  /** The decoded value (exact up to 2^53 - 1; see `readVarintInto`). */
  value = 0;
  /** Number of octets the encoding used: 1, 2, 4 or 8. */
  length = 0;
}

/**
 * Octets occupied by the varint starting at `buf[offset]`, read from its 2-bit prefix
 * (1, 2, 4 or 8), or -1 when `offset` is outside the buffer. Does not check the rest is present.
 */
export function varintSizeAt(buf: Uint8Array, offset: number): number {
  if (offset < 0 || offset >= buf.length) return -1;
  return 1 << (buf[offset] >> LENGTH_PREFIX_SHIFT);
}

/**
 * Reads the varint at `offset`. Returns its value, {@link VARINT_TRUNCATED} (-1) when the buffer
 * ends first, or {@link VARINT_TOO_LARGE} (-2) when the value exceeds 2^53 - 1. The number of
 * octets consumed is `varintSizeAt(buf, offset)`. Never throws, never allocates.
 */
export function readVarint(buf: Uint8Array, offset: number): number {
  if (offset < 0 || offset >= buf.length) return VARINT_TRUNCATED;
  const first = buf[offset];
  const len = 1 << (first >> LENGTH_PREFIX_SHIFT);
  if (offset + len > buf.length) return VARINT_TRUNCATED;
  const v0 = first & VALUE_MASK_FIRST;
  switch (len) {
    case 1:
      return v0;
    case 2:
      return (v0 << 8) | buf[offset + 1];
    case 4:
      return v0 * 0x1000000 + ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
    default: {
      // 8 octets: high 30 bits and low 32 bits.
      const hi = v0 * 0x1000000 + ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
      if (hi > 0x1fffff) return VARINT_TOO_LARGE; // hi * 2^32 would exceed 2^53 - 1
      const lo = buf[offset + 4] * 0x1000000 + ((buf[offset + 5] << 16) | (buf[offset + 6] << 8) | buf[offset + 7]);
      return hi * TWO_32 + lo;
    }
  }
}

/**
 * Reads the varint at `offset` into `out` (value and length) and returns the offset just past
 * it, or {@link VARINT_TRUNCATED} / {@link VARINT_TOO_LARGE} (out is then left unchanged).
 * Never throws, never allocates: the hot-path form for frame parsers.
 */
export function readVarintInto(buf: Uint8Array, offset: number, out: VarintResult): number {
  const v = readVarint(buf, offset);
  if (v < 0) return v;
  const len = 1 << (buf[offset] >> LENGTH_PREFIX_SHIFT);
  out.value = v;
  out.length = len;
  return offset + len;
}

/**
 * Reads the varint at `offset` as a bigint (full 62-bit range). Returns -1n when truncated.
 * Allocates a bigint: for control-plane use (transport parameters), not per packet.
 */
export function readVarintBigInt(buf: Uint8Array, offset: number): bigint {
  if (offset < 0 || offset >= buf.length) return -1n;
  const len = 1 << (buf[offset] >> LENGTH_PREFIX_SHIFT);
  if (offset + len > buf.length) return -1n;
  let v = BigInt(buf[offset] & VALUE_MASK_FIRST);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[offset + i]);
  return v;
}

function checkValue(v: number | bigint): void {
  if (typeof v === 'bigint') {
    if (v < 0n || v > VARINT_MAX_BIGINT) {
      throw new QuicWireError('ERR_VARINT_RANGE', `varint value ${v} outside 0..2^62-1`, 'value');
    }
  } else if (!Number.isSafeInteger(v) || v < 0) {
    throw new QuicWireError(
      'ERR_VARINT_RANGE',
      `varint value ${v} is not an integer in 0..2^53-1 (use a bigint for larger values)`,
      'value',
    );
  }
}

/**
 * Minimal encoded size (1, 2, 4 or 8) of `v`. Throws `ERR_VARINT_RANGE` for negative,
 * non-integer or too large values (numbers above 2^53 - 1 must be passed as bigint).
 */
export function varintLength(v: number | bigint): 1 | 2 | 4 | 8 {
  checkValue(v);
  if (typeof v === 'bigint') {
    if (v <= BigInt(MAX_1)) return 1;
    if (v <= BigInt(MAX_2)) return 2;
    if (v <= BigInt(MAX_4)) return 4;
    return 8;
  }
  if (v <= MAX_1) return 1;
  if (v <= MAX_2) return 2;
  if (v <= MAX_4) return 4;
  return 8;
}

/**
 * Writes `v` at `buf[offset]` and returns the offset just past it. `length` forces a longer
 * encoding (1, 2, 4 or 8; RFC 9000 §16 allows any length that fits, e.g. to reserve a 2-octet
 * Length field before the payload size is known). Throws `ERR_VARINT_RANGE`,
 * `ERR_VARINT_LENGTH` (forced length invalid or too small) or `ERR_BUFFER_TOO_SMALL`.
 */
export function writeVarint(buf: Uint8Array, offset: number, v: number | bigint, length?: 1 | 2 | 4 | 8): number {
  const min = varintLength(v);
  let len: number = min;
  if (length !== undefined) {
    if (length !== 1 && length !== 2 && length !== 4 && length !== 8) {
      throw new QuicWireError('ERR_VARINT_LENGTH', `varint length ${String(length)} is not 1, 2, 4 or 8`, 'length');
    }
    if (length < min) {
      throw new QuicWireError('ERR_VARINT_LENGTH', `value ${v} needs ${min} octets, ${length} forced`, 'length');
    }
    len = length;
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + len > buf.length) {
    throw new QuicWireError('ERR_BUFFER_TOO_SMALL', `no room for a ${len}-octet varint at offset ${offset}`, 'buf');
  }
  const prefix = (31 - Math.clz32(len)) << LENGTH_PREFIX_SHIFT; // 1->0, 2->1, 4->2, 8->3
  if (typeof v === 'bigint') {
    let x = v;
    for (let i = len - 1; i > 0; i--) {
      buf[offset + i] = Number(x & 0xffn);
      x >>= 8n;
    }
    buf[offset] = prefix | Number(x);
    return offset + len;
  }
  let lo = v % TWO_32;
  let hi = (v - lo) / TWO_32;
  if (len === 8) {
    buf[offset + 7] = lo & 0xff;
    buf[offset + 6] = (lo >>> 8) & 0xff;
    buf[offset + 5] = (lo >>> 16) & 0xff;
    buf[offset + 4] = (lo >>> 24) & 0xff;
    lo = hi;
    hi = 0;
  }
  for (let i = Math.min(len, 4) - 1; i > 0; i--) {
    buf[offset + i] = lo & 0xff;
    lo = Math.floor(lo / 256);
  }
  buf[offset] = prefix | lo;
  return offset + len;
}

/** `writeVarint` for the full 62-bit range; identical behaviour (the number form accepts bigint too). */
export const writeVarintBigInt: (buf: Uint8Array, offset: number, v: bigint, length?: 1 | 2 | 4 | 8) => number =
  writeVarint;
