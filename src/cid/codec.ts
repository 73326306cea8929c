// The three QUIC-LB server-ID encodings (draft-21 §5.4): plaintext, single-pass, four-pass.
// Each codec works on the n-octet block that follows a CID's first octet and is built once per
// config with all lengths, masks and scratch space precomputed: encode and decode allocate nothing.

import type { BlockCipher } from './cipher.js';
import {
  AES_BLOCK_LENGTH,
  BITS_PER_OCTET,
  BYTE_MASK,
  EXPAND_LENGTH_SHIFT,
  LEFT_SHARED_OCTET_MASK,
  MAX_PLAINTEXT_LENGTH,
  PASS_1,
  PASS_2,
  PASS_3,
  PASS_4,
  RIGHT_SHARED_OCTET_MASK,
  SHIFT_OCTET_0,
  SHIFT_OCTET_1,
  SHIFT_OCTET_2,
  WORD_OCTETS,
} from './constants.js';

/** Per-config codec. Offsets point at the octet after the CID's first octet. */
export interface Codec {
  /** First octet encodeConnectionId() writes: (configId << 5) | (cidLength - 1 or 0); set by createConfig. */
  firstOctet: number;
  /** Writes the encoded block of serverId || nonce to out[offset .. offset + n). */
  encode(serverId: Uint8Array, nonce: Uint8Array, out: Uint8Array, offset: number): void;
  /** Reads the block at buf[offset .. offset + n) (length already checked); writes the server ID to out[0 .. serverIdLength). */
  decode(buf: Uint8Array, offset: number, out: Uint8Array): void;
}

/** Plaintext (draft-21 §5.4.1 "unencrypted"): the server ID is in the clear after the first octet. */
export class PlaintextCodec implements Codec {
  firstOctet = 0;
  constructor(
    private readonly serverIdLength: number,
    private readonly nonceLength: number,
  ) {}

  encode(serverId: Uint8Array, nonce: Uint8Array, out: Uint8Array, offset: number): void {
    const s = this.serverIdLength;
    for (let i = 0; i < s; i++) out[offset + i] = serverId[i];
    for (let i = 0; i < this.nonceLength; i++) out[offset + s + i] = nonce[i];
  }

  decode(buf: Uint8Array, offset: number, out: Uint8Array): void {
    for (let i = 0; i < this.serverIdLength; i++) out[i] = buf[offset + i];
  }
}

/** Single-pass (draft-21 §5.4.1): one AES-128-ECB block when serverIdLength + nonceLength == 16. */
export class SinglePassCodec implements Codec {
  firstOctet = 0;
  private readonly block = new Uint8Array(AES_BLOCK_LENGTH);

  constructor(
    private readonly serverIdLength: number,
    private readonly nonceLength: number,
    private readonly cipher: BlockCipher,
  ) {}

  encode(serverId: Uint8Array, nonce: Uint8Array, out: Uint8Array, offset: number): void {
    const b = this.block;
    const s = this.serverIdLength;
    for (let i = 0; i < s; i++) b[i] = serverId[i];
    for (let i = 0; i < this.nonceLength; i++) b[s + i] = nonce[i];
    this.cipher.encryptBlock(b, 0, out, offset);
  }

  decode(buf: Uint8Array, offset: number, out: Uint8Array): void {
    // The one case needing the AES decrypt direction (draft-21 §5.5.1).
    const b = this.block;
    this.cipher.decryptBlock(buf, offset, b, 0);
    for (let i = 0; i < this.serverIdLength; i++) out[i] = b[i];
  }
}

/** Reads `len` (0..4) octets as the most significant octets of a big-endian word; the rest are zero. */
function readPartial(b: Uint8Array, o: number, len: number): number {
  switch (len) {
    case 4:
      return (b[o] << SHIFT_OCTET_0) | (b[o + 1] << SHIFT_OCTET_1) | (b[o + 2] << SHIFT_OCTET_2) | b[o + 3];
    case 3:
      return (b[o] << SHIFT_OCTET_0) | (b[o + 1] << SHIFT_OCTET_1) | (b[o + 2] << SHIFT_OCTET_2);
    case 2:
      return (b[o] << SHIFT_OCTET_0) | (b[o + 1] << SHIFT_OCTET_1);
    case 1:
      return b[o] << SHIFT_OCTET_0;
    default:
      return 0;
  }
}

/** Writes the `len` (0..4) most significant octets of w to b[o ..]. */
function writePartial(b: Uint8Array, o: number, w: number, len: number): void {
  if (len <= 0) return;
  b[o] = w >>> SHIFT_OCTET_0;
  if (len === 1) return;
  b[o + 1] = (w >>> SHIFT_OCTET_1) & BYTE_MASK;
  if (len === 2) return;
  b[o + 2] = (w >>> SHIFT_OCTET_2) & BYTE_MASK;
  if (len === 3) return;
  b[o + 3] = w & BYTE_MASK;
}

/** Mask keeping the first `len` (0..4) octets of a big-endian word. */
function octetMask(len: number): number {
  return len >= WORD_OCTETS ? -1 : len <= 0 ? 0 : ~0 << ((WORD_OCTETS - len) * BITS_PER_OCTET);
}

function clampWordLength(len: number): number {
  return len < 0 ? 0 : len > WORD_OCTETS ? WORD_OCTETS : len;
}

/**
 * Four-pass Feistel (draft-21 §5.4.2) for every n = serverIdLength + nonceLength other than 16.
 *
 * Each half is held as three big-endian words (half <= 10 octets, so at most 2.5 words), zero
 * beyond `half` octets: exactly the x || zeros part of expand(n, pass, x). The fourth word of the
 * AES input is then always n << 8 | pass (octets 15 and 16, draft-21 §5.4.2.2), and truncate(…, half)
 * is a mask on the first three output words.
 */
export class FourPassCodec implements Codec {
  firstOctet = 0;
  private readonly n: number;
  private readonly half: number;
  /** Start of the right half: n - half (equal to half - 1 when n is odd: the shared octet). */
  private readonly rightOffset: number;
  private readonly odd: boolean;
  /** LB shortcut: the server ID lies inside L0 when serverIdLength <= nonceLength (draft-21 §5.5.2). */
  private readonly threePass: boolean;
  private readonly serverIdLength: number;
  private readonly nonceLength: number;
  /** expand() word 3: n in octet 15, the pass number is OR-ed into octet 16. */
  private readonly expandTail: number;
  /** Octets of `half` falling into words 0, 1, 2. */
  private readonly len0: number;
  private readonly len1: number;
  private readonly len2: number;
  /** Octets of the server ID falling into words 0, 1, 2 (three-pass output). */
  private readonly sid0: number;
  private readonly sid1: number;
  private readonly sid2: number;
  /** Masks for a new left half (odd n: clear the shared octet's low nibble) and right half (clear its high nibble). */
  private readonly lm0: number;
  private readonly lm1: number;
  private readonly lm2: number;
  private readonly rm0: number;
  private readonly rm1: number;
  private readonly rm2: number;
  private readonly aesOut = new Int32Array(WORD_OCTETS);
  private readonly scratch = new Uint8Array(MAX_PLAINTEXT_LENGTH + 1);

  constructor(
    serverIdLength: number,
    nonceLength: number,
    private readonly cipher: BlockCipher,
  ) {
    const n = serverIdLength + nonceLength;
    this.n = n;
    this.serverIdLength = serverIdLength;
    this.nonceLength = nonceLength;
    this.half = Math.ceil(n / 2);
    this.rightOffset = n - this.half;
    this.odd = n % 2 === 1;
    this.threePass = serverIdLength <= nonceLength;
    this.expandTail = n << EXPAND_LENGTH_SHIFT;
    this.len0 = clampWordLength(this.half);
    this.len1 = clampWordLength(this.half - WORD_OCTETS);
    this.len2 = clampWordLength(this.half - 2 * WORD_OCTETS);
    this.sid0 = clampWordLength(serverIdLength);
    this.sid1 = clampWordLength(serverIdLength - WORD_OCTETS);
    this.sid2 = clampWordLength(serverIdLength - 2 * WORD_OCTETS);
    const m = [octetMask(this.len0), octetMask(this.len1), octetMask(this.len2)];
    const lm = m.slice();
    const rm = m.slice();
    if (this.odd) {
      // draft-21 §5.4.2.2: L keeps the high nibble of the shared octet, R the low nibble.
      const last = this.half - 1;
      const shift = (WORD_OCTETS - 1 - (last % WORD_OCTETS)) * BITS_PER_OCTET;
      lm[Math.floor(last / WORD_OCTETS)] &= ~(RIGHT_SHARED_OCTET_MASK << shift);
      rm[0] &= ~(LEFT_SHARED_OCTET_MASK << SHIFT_OCTET_0);
    }
    [this.lm0, this.lm1, this.lm2] = lm;
    [this.rm0, this.rm1, this.rm2] = rm;
  }

  /** round(pass, x) = truncate(AES(expand(n, pass, x)), half) (draft-21 §5.4.2.2); result in aesOut[0..2]. */
  private round(pass: number, x0: number, x1: number, x2: number): Int32Array {
    this.cipher.encryptWords(x0, x1, x2, this.expandTail | pass, this.aesOut);
    return this.aesOut;
  }

  /** Writes join(L, R) (draft-21 §5.4.2.2) to b[o .. o + n). */
  private join(b: Uint8Array, o: number, l0: number, l1: number, l2: number, r0: number, r1: number, r2: number): void {
    writePartial(b, o, l0, this.len0);
    writePartial(b, o + WORD_OCTETS, l1, this.len1);
    writePartial(b, o + 2 * WORD_OCTETS, l2, this.len2);
    const shared = o + this.half - 1;
    const leftPart = b[shared];
    const r = o + this.rightOffset;
    writePartial(b, r, r0, this.len0);
    writePartial(b, r + WORD_OCTETS, r1, this.len1);
    writePartial(b, r + 2 * WORD_OCTETS, r2, this.len2);
    // Odd n: the shared octet is L's high nibble | R's low nibble.
    if (this.odd) b[shared] |= leftPart;
  }

  encode(serverId: Uint8Array, nonce: Uint8Array, out: Uint8Array, offset: number): void {
    const p = this.scratch;
    const s = this.serverIdLength;
    for (let i = 0; i < s; i++) p[i] = serverId[i];
    for (let i = 0; i < this.nonceLength; i++) p[s + i] = nonce[i];
    const { lm0, lm1, lm2, rm0, rm1, rm2 } = this;
    const ro = this.rightOffset;
    // split (draft-21 §5.4.2.2)
    let l0 = readPartial(p, 0, this.len0) & lm0;
    let l1 = readPartial(p, WORD_OCTETS, this.len1) & lm1;
    let l2 = readPartial(p, 2 * WORD_OCTETS, this.len2) & lm2;
    let r0 = readPartial(p, ro, this.len0) & rm0;
    let r1 = readPartial(p, ro + WORD_OCTETS, this.len1) & rm1;
    let r2 = readPartial(p, ro + 2 * WORD_OCTETS, this.len2) & rm2;
    // draft-21 §5.4.2.3: four passes, masking after every XOR.
    let t = this.round(PASS_1, l0, l1, l2);
    r0 ^= t[0] & rm0;
    r1 ^= t[1] & rm1;
    r2 ^= t[2] & rm2;
    t = this.round(PASS_2, r0, r1, r2);
    l0 ^= t[0] & lm0;
    l1 ^= t[1] & lm1;
    l2 ^= t[2] & lm2;
    t = this.round(PASS_3, l0, l1, l2);
    r0 ^= t[0] & rm0;
    r1 ^= t[1] & rm1;
    r2 ^= t[2] & rm2;
    t = this.round(PASS_4, r0, r1, r2);
    l0 ^= t[0] & lm0;
    l1 ^= t[1] & lm1;
    l2 ^= t[2] & lm2;
    this.join(out, offset, l0, l1, l2, r0, r1, r2);
  }

  decode(buf: Uint8Array, offset: number, out: Uint8Array): void {
    const { lm0, lm1, lm2, rm0, rm1, rm2 } = this;
    const ro = offset + this.rightOffset;
    let l0 = readPartial(buf, offset, this.len0) & lm0;
    let l1 = readPartial(buf, offset + WORD_OCTETS, this.len1) & lm1;
    let l2 = readPartial(buf, offset + 2 * WORD_OCTETS, this.len2) & lm2;
    let r0 = readPartial(buf, ro, this.len0) & rm0;
    let r1 = readPartial(buf, ro + WORD_OCTETS, this.len1) & rm1;
    let r2 = readPartial(buf, ro + 2 * WORD_OCTETS, this.len2) & rm2;
    // draft-21 §5.5.2, with the erratum fixed: after right_1 clear right_1's high nibble.
    let t = this.round(PASS_4, r0, r1, r2);
    l0 ^= t[0] & lm0;
    l1 ^= t[1] & lm1;
    l2 ^= t[2] & lm2;
    t = this.round(PASS_3, l0, l1, l2);
    r0 ^= t[0] & rm0;
    r1 ^= t[1] & rm1;
    r2 ^= t[2] & rm2;
    t = this.round(PASS_2, r0, r1, r2);
    l0 ^= t[0] & lm0;
    l1 ^= t[1] & lm1;
    l2 ^= t[2] & lm2;
    if (this.threePass) {
      // serverIdLength <= nonceLength: the server ID is the start of left_0 (never the shared nibble).
      writePartial(out, 0, l0, this.sid0);
      writePartial(out, WORD_OCTETS, l1, this.sid1);
      writePartial(out, 2 * WORD_OCTETS, l2, this.sid2);
      return;
    }
    t = this.round(PASS_1, l0, l1, l2);
    r0 ^= t[0] & rm0;
    r1 ^= t[1] & rm1;
    r2 ^= t[2] & rm2;
    const p = this.scratch;
    this.join(p, 0, l0, l1, l2, r0, r1, r2);
    for (let i = 0; i < this.serverIdLength; i++) out[i] = p[i];
  }

  /** Intermediate values of an encryption, for tests against the draft-21 §5.4.2.4 example. */
  trace(serverId: Uint8Array, nonce: Uint8Array): Record<string, Uint8Array> {
    const h = this.half;
    const p = new Uint8Array(this.n);
    p.set(serverId, 0);
    p.set(nonce, this.serverIdLength);
    const words = (b: Uint8Array, o: number): number[] => [
      readPartial(b, o, this.len0),
      readPartial(b, o + WORD_OCTETS, this.len1),
      readPartial(b, o + 2 * WORD_OCTETS, this.len2),
    ];
    const bytes = (w: number[]): Uint8Array => {
      const b = new Uint8Array(3 * WORD_OCTETS);
      w.forEach((x, i) => writePartial(b, i * WORD_OCTETS, x, WORD_OCTETS));
      return b.slice(0, h);
    };
    const lm = [this.lm0, this.lm1, this.lm2];
    const rm = [this.rm0, this.rm1, this.rm2];
    const aes = (pass: number, x: number[]): { input: Uint8Array; output: Uint8Array; words: number[] } => {
      const input = new Uint8Array(AES_BLOCK_LENGTH);
      x.forEach((w, i) => writePartial(input, i * WORD_OCTETS, w, WORD_OCTETS));
      input[AES_BLOCK_LENGTH - 2] = this.n;
      input[AES_BLOCK_LENGTH - 1] = pass;
      const output = new Uint8Array(AES_BLOCK_LENGTH);
      this.cipher.encryptBlock(input, 0, output, 0);
      return { input, output, words: [...this.round(pass, x[0], x[1], x[2])] };
    };
    const l = words(p, 0).map((w, i) => w & lm[i]);
    const r = words(p, this.rightOffset).map((w, i) => w & rm[i]);
    const trace: Record<string, Uint8Array> = { left_0: bytes(l), right_0: bytes(r) };
    const steps: [number, 'left' | 'right', string][] = [
      [PASS_1, 'right', 'right_1'],
      [PASS_2, 'left', 'left_1'],
      [PASS_3, 'right', 'right_2'],
      [PASS_4, 'left', 'left_2'],
    ];
    for (const [pass, target, name] of steps) {
      const src = target === 'right' ? l : r;
      const dst = target === 'right' ? r : l;
      const mask = target === 'right' ? rm : lm;
      const a = aes(pass, src);
      trace[`pass${pass}_aes_in`] = a.input;
      trace[`pass${pass}_aes_out`] = a.output;
      for (let i = 0; i < dst.length; i++) dst[i] = (dst[i] ^ a.words[i]) & mask[i];
      trace[name] = bytes(dst);
    }
    return trace;
  }
}
