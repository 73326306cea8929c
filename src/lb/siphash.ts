// SipHash-2-4 (Aumasson & Bernstein, 2012) with 64-bit lanes held as two uint32 halves, so the
// fallback hash runs without BigInt or allocation. Used for the keyed 4-tuple hash of the
// draft-ietf-quic-load-balancers-21 §4.3 baseline fallback and for the Maglev permutations.

/** A SipHash-2-4 instance bound to one 128-bit key. `hash()` leaves the result in `hi`/`lo`. */
export class SipHash24 {
  /** High 32 bits of the last result. */
  hi = 0;
  /** Low 32 bits of the last result. */
  lo = 0;
  private readonly k0h: number;
  private readonly k0l: number;
  private readonly k1h: number;
  private readonly k1l: number;
  private v0h = 0;
  private v0l = 0;
  private v1h = 0;
  private v1l = 0;
  private v2h = 0;
  private v2l = 0;
  private v3h = 0;
  private v3l = 0;

  /** @param key 16 octets; throws RangeError otherwise (a programming error, never per packet). */
  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new RangeError('SipHash-2-4 key must be 16 octets');
    this.k0l = le32(key, 0);
    this.k0h = le32(key, 4);
    this.k1l = le32(key, 8);
    this.k1h = le32(key, 12);
  }

  /** Hashes `buf[off, off+len)`; the 64-bit result is left in `this.hi` and `this.lo`. */
  hash(buf: Uint8Array, off: number, len: number): void {
    // Initialisation constants "somepseudorandomlygeneratedbytes".
    this.v0h = (this.k0h ^ 0x736f6d65) >>> 0;
    this.v0l = (this.k0l ^ 0x70736575) >>> 0;
    this.v1h = (this.k1h ^ 0x646f7261) >>> 0;
    this.v1l = (this.k1l ^ 0x6e646f6d) >>> 0;
    this.v2h = (this.k0h ^ 0x6c796765) >>> 0;
    this.v2l = (this.k0l ^ 0x6e657261) >>> 0;
    this.v3h = (this.k1h ^ 0x74656462) >>> 0;
    this.v3l = (this.k1l ^ 0x79746573) >>> 0;
    const end = off + len - (len & 7);
    let i = off;
    for (; i < end; i += 8) this.compress(le32(buf, i + 4), le32(buf, i));
    // Last block: remaining octets little-endian, message length mod 256 in the top octet.
    let mh = (len & 0xff) << 24;
    let ml = 0;
    const rem = len & 7;
    for (let j = 0; j < rem; j++) {
      const b = buf[i + j];
      if (j < 4) ml |= b << (8 * j);
      else mh |= b << (8 * (j - 4));
    }
    this.compress(mh >>> 0, ml >>> 0);
    this.v2l = (this.v2l ^ 0xff) >>> 0;
    this.round();
    this.round();
    this.round();
    this.round();
    this.hi = (this.v0h ^ this.v1h ^ this.v2h ^ this.v3h) >>> 0;
    this.lo = (this.v0l ^ this.v1l ^ this.v2l ^ this.v3l) >>> 0;
  }

  /** Hashes and returns the 64-bit result reduced modulo `m` (exact; m < 2^21). */
  hashMod(buf: Uint8Array, off: number, len: number, m: number): number {
    this.hash(buf, off, len);
    return ((this.hi % m) * 4294967296 + this.lo) % m;
  }

  private compress(mh: number, ml: number): void {
    this.v3h = (this.v3h ^ mh) >>> 0;
    this.v3l = (this.v3l ^ ml) >>> 0;
    this.round();
    this.round();
    this.v0h = (this.v0h ^ mh) >>> 0;
    this.v0l = (this.v0l ^ ml) >>> 0;
  }

  private round(): void {
    let lo: number;
    let h: number;
    let l: number;
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    lo = (this.v0l + this.v1l) >>> 0;
    this.v0h = (this.v0h + this.v1h + (lo < this.v0l ? 1 : 0)) >>> 0;
    this.v0l = lo;
    h = this.v1h;
    l = this.v1l;
    this.v1h = ((h << 13) | (l >>> 19)) ^ this.v0h;
    this.v1l = ((l << 13) | (h >>> 19)) ^ this.v0l;
    h = this.v0h;
    this.v0h = this.v0l;
    this.v0l = h;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    lo = (this.v2l + this.v3l) >>> 0;
    this.v2h = (this.v2h + this.v3h + (lo < this.v2l ? 1 : 0)) >>> 0;
    this.v2l = lo;
    h = this.v3h;
    l = this.v3l;
    this.v3h = (((h << 16) | (l >>> 16)) ^ this.v2h) >>> 0;
    this.v3l = (((l << 16) | (h >>> 16)) ^ this.v2l) >>> 0;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    lo = (this.v0l + this.v3l) >>> 0;
    this.v0h = (this.v0h + this.v3h + (lo < this.v0l ? 1 : 0)) >>> 0;
    this.v0l = lo;
    h = this.v3h;
    l = this.v3l;
    this.v3h = (((h << 21) | (l >>> 11)) ^ this.v0h) >>> 0;
    this.v3l = (((l << 21) | (h >>> 11)) ^ this.v0l) >>> 0;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    this.v1h >>>= 0;
    this.v1l >>>= 0;
    lo = (this.v2l + this.v1l) >>> 0;
    this.v2h = (this.v2h + this.v1h + (lo < this.v2l ? 1 : 0)) >>> 0;
    this.v2l = lo;
    h = this.v1h;
    l = this.v1l;
    this.v1h = (((h << 17) | (l >>> 15)) ^ this.v2h) >>> 0;
    this.v1l = (((l << 17) | (h >>> 15)) ^ this.v2l) >>> 0;
    h = this.v2h;
    this.v2h = this.v2l;
    this.v2l = h;
  }
}

function le32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}
