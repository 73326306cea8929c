// The block-cipher seam: AES-128 on one 16-octet block, two implementations.
//
// - 'table': the pure TypeScript T-table AES in aes.ts. Fast in V8 (no native call per block),
//   zero allocation. NOT constant-time: table lookups depend on key and data, so cache timing can
//   leak in principle to an attacker sharing the CPU.
// - 'node': node:crypto (OpenSSL, AES-NI where the CPU has it: constant time). One cipher object
//   per key and direction, reused; each call still crosses into C++ and allocates the output Buffer.

import { createCipheriv, createDecipheriv, type Cipher, type Decipher } from 'node:crypto';
import { aesDecryptWords, aesEncryptWords, expandDecryptKey, expandEncryptKey } from './aes.js';
import { AES_BLOCK_LENGTH, BYTE_MASK, SHIFT_OCTET_0, SHIFT_OCTET_1, SHIFT_OCTET_2, WORD_OCTETS } from './constants.js';

/** Name of a block-cipher implementation. */
export type CipherName = 'table' | 'node';

/** One AES-128 key, both directions, on one block. Implementations never allocate in the table case. */
export interface BlockCipher {
  readonly name: CipherName;
  /** True when the implementation runs in constant time (AES-NI). */
  readonly constantTime: boolean;
  /** Encrypts src[srcOffset..+16) into dst[dstOffset..+16) (may overlap exactly). */
  encryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void;
  /** Decrypts src[srcOffset..+16) into dst[dstOffset..+16) (may overlap exactly). */
  decryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void;
  /** Encrypts the block given as four big-endian 32-bit words; writes four words to out[0..3]. */
  encryptWords(w0: number, w1: number, w2: number, w3: number, out: Int32Array): void;
}

function readWord(b: Uint8Array, o: number): number {
  return (b[o] << SHIFT_OCTET_0) | (b[o + 1] << SHIFT_OCTET_1) | (b[o + 2] << SHIFT_OCTET_2) | b[o + 3];
}

function writeWord(b: Uint8Array, o: number, w: number): void {
  b[o] = w >>> SHIFT_OCTET_0;
  b[o + 1] = (w >>> SHIFT_OCTET_1) & BYTE_MASK;
  b[o + 2] = (w >>> SHIFT_OCTET_2) & BYTE_MASK;
  b[o + 3] = w & BYTE_MASK;
}

/** Pure TypeScript T-table AES-128 (aes.ts). Fast, allocation-free, not constant-time. */
export class TableCipher implements BlockCipher {
  readonly name = 'table' as const;
  readonly constantTime = false;
  private readonly ek: Int32Array;
  private readonly dk: Int32Array;
  private readonly words = new Int32Array(WORD_OCTETS);

  constructor(key: Uint8Array) {
    this.ek = expandEncryptKey(key);
    this.dk = expandDecryptKey(this.ek);
  }

  encryptWords(w0: number, w1: number, w2: number, w3: number, out: Int32Array): void {
    aesEncryptWords(this.ek, w0, w1, w2, w3, out);
  }

  encryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void {
    const w = this.words;
    aesEncryptWords(
      this.ek,
      readWord(src, srcOffset),
      readWord(src, srcOffset + 4),
      readWord(src, srcOffset + 8),
      readWord(src, srcOffset + 12),
      w,
    );
    writeWord(dst, dstOffset, w[0]);
    writeWord(dst, dstOffset + 4, w[1]);
    writeWord(dst, dstOffset + 8, w[2]);
    writeWord(dst, dstOffset + 12, w[3]);
  }

  decryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void {
    const w = this.words;
    aesDecryptWords(
      this.dk,
      readWord(src, srcOffset),
      readWord(src, srcOffset + 4),
      readWord(src, srcOffset + 8),
      readWord(src, srcOffset + 12),
      w,
    );
    writeWord(dst, dstOffset, w[0]);
    writeWord(dst, dstOffset + 4, w[1]);
    writeWord(dst, dstOffset + 8, w[2]);
    writeWord(dst, dstOffset + 12, w[3]);
  }
}

/** node:crypto AES-128-ECB (OpenSSL; AES-NI, constant time). One reused cipher per direction. */
export class NodeCipher implements BlockCipher {
  readonly name = 'node' as const;
  readonly constantTime = true;
  private readonly enc: Cipher;
  private readonly dec: Decipher;
  private readonly block = Buffer.alloc(AES_BLOCK_LENGTH);

  constructor(key: Uint8Array) {
    // ECB on single blocks, no padding: update() returns exactly one block per 16-octet input.
    this.enc = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
    this.dec = createDecipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  }

  private run(c: Cipher | Decipher, src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void {
    const block = this.block;
    for (let i = 0; i < AES_BLOCK_LENGTH; i++) block[i] = src[srcOffset + i];
    const r = c.update(block);
    for (let i = 0; i < AES_BLOCK_LENGTH; i++) dst[dstOffset + i] = r[i];
  }

  encryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void {
    this.run(this.enc, src, srcOffset, dst, dstOffset);
  }

  decryptBlock(src: Uint8Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void {
    this.run(this.dec, src, srcOffset, dst, dstOffset);
  }

  encryptWords(w0: number, w1: number, w2: number, w3: number, out: Int32Array): void {
    const block = this.block;
    writeWord(block, 0, w0);
    writeWord(block, 4, w1);
    writeWord(block, 8, w2);
    writeWord(block, 12, w3);
    const r = this.enc.update(block);
    out[0] = readWord(r, 0);
    out[1] = readWord(r, 4);
    out[2] = readWord(r, 8);
    out[3] = readWord(r, 12);
  }
}

/** The default implementation, chosen by measurement (bench/codec; see docs/library.md). */
export const DEFAULT_CIPHER: CipherName = 'table';

/** Creates the named implementation for a 16-octet key (the caller validated the key). */
export function createBlockCipher(key: Uint8Array, name: CipherName = DEFAULT_CIPHER): BlockCipher {
  return name === 'node' ? new NodeCipher(key) : new TableCipher(key);
}
