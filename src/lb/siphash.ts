// SipHash-2-4 (Aumasson & Bernstein, 2012) with 64-bit lanes held as two uint32 halves, so the
// fallback hash runs without BigInt or allocation. Used for the keyed 4-tuple hash of the
// draft-ietf-quic-load-balancers-21 §4.3 baseline fallback and for the Maglev permutations.

/** A SipHash-2-4 instance bound to one 128-bit key. `hash()` leaves the result in `hi`/`lo`. */
export class SipHash24 {
  /** High 32 bits of the last result (unsigned). */
  hi = 0;
  /** Low 32 bits of the last result (unsigned). */
  lo = 0;
  private readonly k = new Int32Array(4);
  // v0h v0l v1h v1l v2h v2l v3h v3l as int32 (no heap numbers, no allocation).
  private readonly v = new Int32Array(8);

  /** @param key 16 octets; throws RangeError otherwise (a programming error, never per packet). */
  constructor(key: Uint8Array) {
    if (key.length !== 16) throw new RangeError('SipHash-2-4 key must be 16 octets');
    this.k[0] = le32(key, 4); // k0 high
    this.k[1] = le32(key, 0); // k0 low
    this.k[2] = le32(key, 12); // k1 high
    this.k[3] = le32(key, 8); // k1 low
  }

  /** Hashes `buf[off, off+len)`; the 64-bit result is left in `this.hi` and `this.lo`. */
  hash(buf: Uint8Array, off: number, len: number): void {
    const v = this.v;
    const k = this.k;
    // Initialisation constants "somepseudorandomlygeneratedbytes".
    v[0] = k[0] ^ 0x736f6d65;
    v[1] = k[1] ^ 0x70736575;
    v[2] = k[2] ^ 0x646f7261;
    v[3] = k[3] ^ 0x6e646f6d;
    v[4] = k[0] ^ 0x6c796765;
    v[5] = k[1] ^ 0x6e657261;
    v[6] = k[2] ^ 0x74656462;
    v[7] = k[3] ^ 0x79746573;
    const end = off + len - (len & 7);
    let i = off;
    for (; i < end; i += 8) compress(v, le32(buf, i + 4), le32(buf, i));
    // Last block: remaining octets little-endian, message length mod 256 in the top octet.
    let mh = (len & 0xff) << 24;
    let ml = 0;
    const rem = len & 7;
    for (let j = 0; j < rem; j++) {
      const b = buf[i + j];
      if (j < 4) ml |= b << (8 * j);
      else mh |= b << (8 * (j - 4));
    }
    compress(v, mh, ml);
    v[5] ^= 0xff;
    round(v);
    round(v);
    round(v);
    round(v);
    this.hi = (v[0] ^ v[2] ^ v[4] ^ v[6]) >>> 0;
    this.lo = (v[1] ^ v[3] ^ v[5] ^ v[7]) >>> 0;
  }

  /** Hashes and returns the 64-bit result reduced modulo `m` (exact; m < 2^21). */
  hashMod(buf: Uint8Array, off: number, len: number, m: number): number {
    this.hash(buf, off, len);
    return ((this.hi % m) * 4294967296 + this.lo) % m;
  }
}

function compress(v: Int32Array, mh: number, ml: number): void {
  v[6] ^= mh;
  v[7] ^= ml;
  round(v);
  round(v);
  v[0] ^= mh;
  v[1] ^= ml;
}

/** One SipRound on 64-bit lanes held as (high, low) int32 pairs. */
function round(v: Int32Array): void {
  let lo: number;
  let h: number;
  let l: number;
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  lo = (v[1] + v[3]) | 0;
  v[0] = (v[0] + v[2] + (lo >>> 0 < v[1] >>> 0 ? 1 : 0)) | 0;
  v[1] = lo;
  h = v[2];
  l = v[3];
  v[2] = ((h << 13) | (l >>> 19)) ^ v[0];
  v[3] = ((l << 13) | (h >>> 19)) ^ v[1];
  h = v[0];
  v[0] = v[1];
  v[1] = h;
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  lo = (v[5] + v[7]) | 0;
  v[4] = (v[4] + v[6] + (lo >>> 0 < v[5] >>> 0 ? 1 : 0)) | 0;
  v[5] = lo;
  h = v[6];
  l = v[7];
  v[6] = ((h << 16) | (l >>> 16)) ^ v[4];
  v[7] = ((l << 16) | (h >>> 16)) ^ v[5];
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  lo = (v[1] + v[7]) | 0;
  v[0] = (v[0] + v[6] + (lo >>> 0 < v[1] >>> 0 ? 1 : 0)) | 0;
  v[1] = lo;
  h = v[6];
  l = v[7];
  v[6] = ((h << 21) | (l >>> 11)) ^ v[0];
  v[7] = ((l << 21) | (h >>> 11)) ^ v[1];
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  lo = (v[5] + v[3]) | 0;
  v[4] = (v[4] + v[2] + (lo >>> 0 < v[5] >>> 0 ? 1 : 0)) | 0;
  v[5] = lo;
  h = v[2];
  l = v[3];
  v[2] = ((h << 17) | (l >>> 15)) ^ v[4];
  v[3] = ((l << 17) | (h >>> 15)) ^ v[5];
  h = v[4];
  v[4] = v[5];
  v[5] = h;
}

function le32(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}
