// Small data structures of the demo QUIC stack: a byte writer, a set of integer ranges
// (packet numbers, acknowledged stream bytes) and an in-order reassembler (CRYPTO and STREAM).
import { varintLength, writeVarint } from '../wire/index.js';

/** Appends to a fixed-capacity buffer; `room` tells how much still fits. */
export class Writer {
  readonly buf: Buffer;
  pos = 0;
  constructor(capacity: number) {
    this.buf = Buffer.alloc(capacity);
  }
  get room(): number {
    return this.buf.length - this.pos;
  }
  u8(v: number): this {
    this.buf[this.pos++] = v;
    return this;
  }
  varint(v: number): this {
    this.pos = writeVarint(this.buf, this.pos, v);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Size of a varint holding `v` (RFC 9000 §16). */
export const vlen = (v: number): number => varintLength(v);

/** Sorted, merged, half-open integer ranges [start, end). */
export class RangeSet {
  readonly ranges: Array<[number, number]> = [];

  constructor(private readonly maxRanges = Infinity) {}

  add(start: number, end: number): void {
    if (end <= start) return;
    const r = this.ranges;
    let i = 0;
    while (i < r.length && r[i][1] < start) i++;
    let s = start;
    let e = end;
    let j = i;
    while (j < r.length && r[j][0] <= e) {
      s = Math.min(s, r[j][0]);
      e = Math.max(e, r[j][1]);
      j++;
    }
    r.splice(i, j - i, [s, e]);
    // Keep the newest ranges when bounded (ACK frames list the largest ranges first).
    if (r.length > this.maxRanges) r.splice(0, r.length - this.maxRanges);
  }

  has(v: number): boolean {
    for (const [s, e] of this.ranges) if (v >= s && v < e) return true;
    return false;
  }

  /** True when [start, end) is entirely inside one range. */
  covers(start: number, end: number): boolean {
    if (end <= start) return true;
    for (const [s, e] of this.ranges) if (start >= s && end <= e) return true;
    return false;
  }

  get largest(): number {
    const last = this.ranges[this.ranges.length - 1];
    return last ? last[1] - 1 : -1;
  }
}

/**
 * Reassembles a byte stream from chunks at arbitrary offsets. `push` returns the bytes that
 * became contiguous (possibly empty). Duplicates and overlaps are handled; data beyond
 * `limit` octets past the read offset is refused (returns undefined: a flow-control error).
 */
export class Reassembler {
  offset = 0;
  finalSize = -1;
  /** Highest end offset seen (for flow-control accounting). */
  highest = 0;
  private pending = new Map<number, Buffer>();

  constructor(private readonly limit = 1 << 24) {}

  push(offset: number, data: Buffer, fin = false): Buffer | undefined {
    const end = offset + data.length;
    if (end - this.offset > this.limit) return undefined;
    if (end > this.highest) this.highest = end;
    if (fin) this.finalSize = end;
    if (end <= this.offset) return Buffer.alloc(0);
    if (offset < this.offset) {
      data = data.subarray(this.offset - offset);
      offset = this.offset;
    }
    if (offset > this.offset) {
      const prev = this.pending.get(offset);
      if (!prev || prev.length < data.length) this.pending.set(offset, Buffer.from(data));
      return Buffer.alloc(0);
    }
    const out: Buffer[] = [data];
    this.offset = end;
    // Pull in any buffered chunks that now touch the read offset.
    for (let progressed = true; progressed && this.pending.size > 0;) {
      progressed = false;
      for (const [o, b] of this.pending) {
        if (o <= this.offset) {
          this.pending.delete(o);
          if (o + b.length > this.offset) {
            out.push(b.subarray(this.offset - o));
            this.offset = o + b.length;
          }
          progressed = true;
        }
      }
    }
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }

  /** True once every octet up to the final size has been delivered. */
  get finished(): boolean {
    return this.finalSize >= 0 && this.offset >= this.finalSize;
  }
}
