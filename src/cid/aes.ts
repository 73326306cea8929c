// AES-128 in pure TypeScript, written from FIPS-197 (sections cited inline), T-table form.
//
// Side channels: the round tables are indexed by secret-dependent values, so cache timing can in
// principle leak key material to a co-located attacker (Bernstein 2005; Osvik, Shamir, Tromer
// 2006). Use the node:crypto cipher (`cipher: 'node'`, AES-NI, constant time) where that matters.
//
// State layout: four 32-bit words, one per column, the column's row-0 octet most significant
// (the same big-endian column words FIPS-197 §5.1 uses). All words are signed int32 values.

import { BYTE_MASK, SHIFT_OCTET_0, SHIFT_OCTET_1, SHIFT_OCTET_2 } from './constants.js';

/** AES-128: Nk = 4 key words, Nr = 10 rounds, Nb = 4 columns (FIPS-197 §5, Figure 4). */
const NK = 4;
const NR = 10;
const NB = 4;
const SCHEDULE_WORDS = NB * (NR + 1);
/** The irreducible polynomial m(x) = x^8 + x^4 + x^3 + x + 1 (FIPS-197 §4.2), reduced to 8 bits. */
const REDUCTION = 0x1b;
const HIGH_BIT = 0x80;
/** Affine transformation constant c = {63} (FIPS-197 §5.1.1). */
const AFFINE_CONSTANT = 0x63;
/** {03} generates the multiplicative group of GF(2^8); used to build log/antilog tables. */
const FIELD_SIZE = 256;
const GROUP_ORDER = 255;
const BITS_PER_OCTET = 8;

/** xtime(): multiplication by {02} in GF(2^8) (FIPS-197 §4.2.1). */
function xtime(a: number): number {
  return ((a << 1) ^ (a & HIGH_BIT ? REDUCTION : 0)) & BYTE_MASK;
}

function rotl8(b: number, n: number): number {
  return ((b << n) | (b >>> (BITS_PER_OCTET - n))) & BYTE_MASK;
}

function pack(b0: number, b1: number, b2: number, b3: number): number {
  return (b0 << SHIFT_OCTET_0) | (b1 << SHIFT_OCTET_1) | (b2 << SHIFT_OCTET_2) | b3;
}

function rotr32(w: number, bits: number): number {
  return (w >>> bits) | (w << (32 - bits));
}

// --- Tables, computed once at module load (FIPS-197 §5.1.1 S-box, §5.1.3 MixColumns, §5.3.3). ---
const SBOX = new Uint8Array(FIELD_SIZE);
const INV_SBOX = new Uint8Array(FIELD_SIZE);
const TE0 = new Int32Array(FIELD_SIZE);
const TE1 = new Int32Array(FIELD_SIZE);
const TE2 = new Int32Array(FIELD_SIZE);
const TE3 = new Int32Array(FIELD_SIZE);
const TD0 = new Int32Array(FIELD_SIZE);
const TD1 = new Int32Array(FIELD_SIZE);
const TD2 = new Int32Array(FIELD_SIZE);
const TD3 = new Int32Array(FIELD_SIZE);
/** Round constants Rcon[i] = x^(i-1) in the leftmost octet (FIPS-197 §5.2). */
const RCON = new Int32Array(NR + 1);

(function buildTables(): void {
  const exp = new Uint8Array(FIELD_SIZE);
  const log = new Uint8Array(FIELD_SIZE);
  let x = 1;
  for (let i = 0; i < GROUP_ORDER; i++) {
    exp[i] = x;
    log[x] = i;
    x ^= xtime(x); // x * {03}
  }
  const mul = (a: number, b: number): number => (a === 0 || b === 0 ? 0 : exp[(log[a] + log[b]) % GROUP_ORDER]);

  for (let i = 0; i < FIELD_SIZE; i++) {
    // §5.1.1: multiplicative inverse ({00} maps to itself), then the affine transformation.
    const inv = i === 0 ? 0 : exp[(GROUP_ORDER - log[i]) % GROUP_ORDER];
    const s = inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^ rotl8(inv, 4) ^ AFFINE_CONSTANT;
    SBOX[i] = s;
    INV_SBOX[s] = i;
  }
  for (let i = 0; i < FIELD_SIZE; i++) {
    // Encryption: SubBytes then MixColumns column [02 01 01 03] for the row-0 input (§5.1.3).
    const s = SBOX[i];
    const te = pack(mul(s, 2), s, s, mul(s, 3));
    TE0[i] = te;
    TE1[i] = rotr32(te, 8);
    TE2[i] = rotr32(te, 16);
    TE3[i] = rotr32(te, 24);
    // Decryption: InvSubBytes then InvMixColumns column [0e 09 0d 0b] (§5.3.3).
    const si = INV_SBOX[i];
    const td = pack(mul(si, 0x0e), mul(si, 0x09), mul(si, 0x0d), mul(si, 0x0b));
    TD0[i] = td;
    TD1[i] = rotr32(td, 8);
    TD2[i] = rotr32(td, 16);
    TD3[i] = rotr32(td, 24);
  }
  let rc = 1;
  for (let i = 1; i <= NR; i++) {
    RCON[i] = rc << SHIFT_OCTET_0;
    rc = xtime(rc);
  }
})();

function subWord(w: number): number {
  return pack(
    SBOX[w >>> SHIFT_OCTET_0],
    SBOX[(w >>> SHIFT_OCTET_1) & BYTE_MASK],
    SBOX[(w >>> SHIFT_OCTET_2) & BYTE_MASK],
    SBOX[w & BYTE_MASK],
  );
}

/** KeyExpansion (FIPS-197 §5.2) for a 16-octet key: 44 words. */
export function expandEncryptKey(key: Uint8Array): Int32Array {
  const w = new Int32Array(SCHEDULE_WORDS);
  for (let i = 0; i < NK; i++) {
    w[i] = pack(key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]);
  }
  for (let i = NK; i < SCHEDULE_WORDS; i++) {
    let temp = w[i - 1];
    if (i % NK === 0) temp = subWord(rotr32(temp, 24)) ^ RCON[i / NK]; // RotWord = rotate left one octet
    w[i] = w[i - NK] ^ temp;
  }
  return w;
}

/**
 * Key schedule of the equivalent inverse cipher (FIPS-197 §5.3.5): round keys in reverse order,
 * InvMixColumns applied to rounds 1..Nr-1.
 */
export function expandDecryptKey(encryptSchedule: Int32Array): Int32Array {
  const d = new Int32Array(SCHEDULE_WORDS);
  for (let round = 0; round <= NR; round++) {
    for (let c = 0; c < NB; c++) {
      const w = encryptSchedule[(NR - round) * NB + c];
      d[round * NB + c] =
        round === 0 || round === NR
          ? w
          : // TDk[SBOX[x]] = InvMixColumns contribution of x (InvSubBytes undoes SubBytes).
            TD0[SBOX[w >>> SHIFT_OCTET_0]] ^
            TD1[SBOX[(w >>> SHIFT_OCTET_1) & BYTE_MASK]] ^
            TD2[SBOX[(w >>> SHIFT_OCTET_2) & BYTE_MASK]] ^
            TD3[SBOX[w & BYTE_MASK]];
    }
  }
  return d;
}

/** Cipher (FIPS-197 §5.1) on four column words; writes four words to out[0..3]. */
export function aesEncryptWords(rk: Int32Array, i0: number, i1: number, i2: number, i3: number, out: Int32Array): void {
  let s0 = i0 ^ rk[0];
  let s1 = i1 ^ rk[1];
  let s2 = i2 ^ rk[2];
  let s3 = i3 ^ rk[3];
  let k = NB;
  for (let round = 1; round < NR; round++) {
    // SubBytes + ShiftRows (row r taken from column c + r) + MixColumns + AddRoundKey.
    const t0 = TE0[s0 >>> 24] ^ TE1[(s1 >>> 16) & 0xff] ^ TE2[(s2 >>> 8) & 0xff] ^ TE3[s3 & 0xff] ^ rk[k];
    const t1 = TE0[s1 >>> 24] ^ TE1[(s2 >>> 16) & 0xff] ^ TE2[(s3 >>> 8) & 0xff] ^ TE3[s0 & 0xff] ^ rk[k + 1];
    const t2 = TE0[s2 >>> 24] ^ TE1[(s3 >>> 16) & 0xff] ^ TE2[(s0 >>> 8) & 0xff] ^ TE3[s1 & 0xff] ^ rk[k + 2];
    const t3 = TE0[s3 >>> 24] ^ TE1[(s0 >>> 16) & 0xff] ^ TE2[(s1 >>> 8) & 0xff] ^ TE3[s2 & 0xff] ^ rk[k + 3];
    s0 = t0;
    s1 = t1;
    s2 = t2;
    s3 = t3;
    k += NB;
  }
  // Final round: SubBytes + ShiftRows + AddRoundKey, no MixColumns. S[x] sits in every T-table
  // entry (TE0 = [2s, s, s, 3s]): taking it from the table already in cache avoids a second array.
  out[0] =
    ((TE2[s0 >>> 24] & 0xff000000) |
      (TE3[(s1 >>> 16) & 0xff] & 0x00ff0000) |
      (TE0[(s2 >>> 8) & 0xff] & 0x0000ff00) |
      (TE1[s3 & 0xff] & 0x000000ff)) ^
    rk[k];
  out[1] =
    ((TE2[s1 >>> 24] & 0xff000000) |
      (TE3[(s2 >>> 16) & 0xff] & 0x00ff0000) |
      (TE0[(s3 >>> 8) & 0xff] & 0x0000ff00) |
      (TE1[s0 & 0xff] & 0x000000ff)) ^
    rk[k + 1];
  out[2] =
    ((TE2[s2 >>> 24] & 0xff000000) |
      (TE3[(s3 >>> 16) & 0xff] & 0x00ff0000) |
      (TE0[(s0 >>> 8) & 0xff] & 0x0000ff00) |
      (TE1[s1 & 0xff] & 0x000000ff)) ^
    rk[k + 2];
  out[3] =
    ((TE2[s3 >>> 24] & 0xff000000) |
      (TE3[(s0 >>> 16) & 0xff] & 0x00ff0000) |
      (TE0[(s1 >>> 8) & 0xff] & 0x0000ff00) |
      (TE1[s2 & 0xff] & 0x000000ff)) ^
    rk[k + 3];
}

/** Equivalent inverse cipher (FIPS-197 §5.3.5) on four column words, with expandDecryptKey()'s schedule. */
export function aesDecryptWords(dk: Int32Array, i0: number, i1: number, i2: number, i3: number, out: Int32Array): void {
  let s0 = i0 ^ dk[0];
  let s1 = i1 ^ dk[1];
  let s2 = i2 ^ dk[2];
  let s3 = i3 ^ dk[3];
  let k = NB;
  for (let round = 1; round < NR; round++) {
    // InvSubBytes + InvShiftRows (row r taken from column c - r) + InvMixColumns + AddRoundKey.
    const t0 = TD0[s0 >>> 24] ^ TD1[(s3 >>> 16) & 0xff] ^ TD2[(s2 >>> 8) & 0xff] ^ TD3[s1 & 0xff] ^ dk[k];
    const t1 = TD0[s1 >>> 24] ^ TD1[(s0 >>> 16) & 0xff] ^ TD2[(s3 >>> 8) & 0xff] ^ TD3[s2 & 0xff] ^ dk[k + 1];
    const t2 = TD0[s2 >>> 24] ^ TD1[(s1 >>> 16) & 0xff] ^ TD2[(s0 >>> 8) & 0xff] ^ TD3[s3 & 0xff] ^ dk[k + 2];
    const t3 = TD0[s3 >>> 24] ^ TD1[(s2 >>> 16) & 0xff] ^ TD2[(s1 >>> 8) & 0xff] ^ TD3[s0 & 0xff] ^ dk[k + 3];
    s0 = t0;
    s1 = t1;
    s2 = t2;
    s3 = t3;
    k += NB;
  }
  out[0] =
    ((INV_SBOX[s0 >>> 24] << 24) |
      (INV_SBOX[(s3 >>> 16) & 0xff] << 16) |
      (INV_SBOX[(s2 >>> 8) & 0xff] << 8) |
      INV_SBOX[s1 & 0xff]) ^
    dk[k];
  out[1] =
    ((INV_SBOX[s1 >>> 24] << 24) |
      (INV_SBOX[(s0 >>> 16) & 0xff] << 16) |
      (INV_SBOX[(s3 >>> 8) & 0xff] << 8) |
      INV_SBOX[s2 & 0xff]) ^
    dk[k + 1];
  out[2] =
    ((INV_SBOX[s2 >>> 24] << 24) |
      (INV_SBOX[(s1 >>> 16) & 0xff] << 16) |
      (INV_SBOX[(s0 >>> 8) & 0xff] << 8) |
      INV_SBOX[s3 & 0xff]) ^
    dk[k + 2];
  out[3] =
    ((INV_SBOX[s3 >>> 24] << 24) |
      (INV_SBOX[(s2 >>> 16) & 0xff] << 16) |
      (INV_SBOX[(s1 >>> 8) & 0xff] << 8) |
      INV_SBOX[s0 & 0xff]) ^
    dk[k + 3];
}

/** Exposed for tests: FIPS-197 Figure 7 S-box entries can be checked directly. */
export function sboxValue(x: number): number {
  return SBOX[x & BYTE_MASK];
}

/** Copies of the lookup tables, for code generators: scripts/xdp-aes-tables.ts writes them into
 *  the XDP program (xdp/aes_tables.h), so the BPF AES and this one share one source. */
export function aesTables(): { te: Int32Array[]; td: Int32Array[]; sbox: Uint8Array; invSbox: Uint8Array } {
  return {
    te: [TE0, TE1, TE2, TE3].map((t) => t.slice()),
    td: [TD0, TD1, TD2, TD3].map((t) => t.slice()),
    sbox: SBOX.slice(),
    invSbox: INV_SBOX.slice(),
  };
}

/**
 * The AES-128 round keys of `key` (16 octets): the KeyExpansion words (FIPS-197 §5.2) and those
 * of the equivalent inverse cipher (§5.3.5), 44 each, row-0 octet most significant. What a
 * table-based AES elsewhere needs (the XDP program's map, src/lb/xdp-maps.ts) so that it runs
 * no key schedule of its own.
 */
export function aesRoundKeys(key: Uint8Array): { encrypt: Int32Array; decrypt: Int32Array } {
  const encrypt = expandEncryptKey(key);
  return { encrypt, decrypt: expandDecryptKey(encrypt) };
}
