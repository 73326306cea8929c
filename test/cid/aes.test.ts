// The pure TypeScript AES-128 against FIPS-197 and against node:crypto (OpenSSL) on thousands of
// random keys and blocks, and the two BlockCipher implementations against each other.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aesDecryptWords, aesEncryptWords, expandDecryptKey, expandEncryptKey, sboxValue } from '../../src/cid/aes.js';
import { NodeCipher, TableCipher, createBlockCipher } from '../../src/cid/cipher.js';
import { hex, toHex } from './vectors.js';

function ecb(key: Uint8Array, block: Uint8Array, decrypt = false): string {
  const c = decrypt ? createDecipheriv('aes-128-ecb', key, null) : createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(block), c.final()]).toString('hex');
}

describe('pure TypeScript AES-128 (aes.ts)', () => {
  it('S-box matches FIPS-197 Figure 7 samples', () => {
    expect(sboxValue(0x00)).toBe(0x63);
    expect(sboxValue(0x53)).toBe(0xed); // FIPS-197 §5.1.1 worked example
    expect(sboxValue(0xff)).toBe(0x16);
  });

  it('FIPS-197 Appendix C.1 (AES-128) encrypts and decrypts', () => {
    const key = hex('000102030405060708090a0b0c0d0e0f');
    const pt = hex('00112233445566778899aabbccddeeff');
    const c = new TableCipher(key);
    const out = new Uint8Array(16);
    c.encryptBlock(pt, 0, out, 0);
    expect(toHex(out)).toBe('69c4e0d86a7b0430d8cdb78070b4c55a');
    c.decryptBlock(out, 0, out, 0);
    expect(toHex(out)).toBe(toHex(pt));
  });

  it('FIPS-197 Appendix A.1 key expansion: last round key', () => {
    const w = expandEncryptKey(hex('2b7e151628aed2a6abf7158809cf4f3c'));
    expect(Array.from(w.subarray(40), (x) => (x >>> 0).toString(16).padStart(8, '0')).join('')).toBe(
      'd014f9a8c9ee2589e13f0cc8b6630ca6',
    );
  });

  it('agrees with node:crypto on 3000 random keys x 4 random blocks, both directions', () => {
    const words = new Int32Array(4);
    for (let k = 0; k < 3000; k++) {
      const key = randomBytes(16);
      const ek = expandEncryptKey(key);
      const dk = expandDecryptKey(ek);
      for (let b = 0; b < 4; b++) {
        const block = randomBytes(16);
        const w = [0, 4, 8, 12].map((o) => block.readInt32BE(o));
        aesEncryptWords(ek, w[0], w[1], w[2], w[3], words);
        const enc = Buffer.alloc(16);
        words.forEach((x, i) => enc.writeInt32BE(x, 4 * i));
        expect(enc.toString('hex')).toBe(ecb(key, block));
        aesDecryptWords(dk, w[0], w[1], w[2], w[3], words);
        const dec = Buffer.alloc(16);
        words.forEach((x, i) => dec.writeInt32BE(x, 4 * i));
        expect(dec.toString('hex')).toBe(ecb(key, block, true));
      }
    }
  });
});

describe('BlockCipher seam', () => {
  it('table and node implementations agree block for block, at offsets', () => {
    for (let k = 0; k < 200; k++) {
      const key = randomBytes(16);
      const t = new TableCipher(key);
      const n = new NodeCipher(key);
      const src = randomBytes(40);
      const a = new Uint8Array(40);
      const b = new Uint8Array(40);
      t.encryptBlock(src, 3, a, 11);
      n.encryptBlock(src, 3, b, 11);
      expect(toHex(a)).toBe(toHex(b));
      t.decryptBlock(src, 5, a, 2);
      n.decryptBlock(src, 5, b, 2);
      expect(toHex(a)).toBe(toHex(b));
      const wa = new Int32Array(4);
      const wb = new Int32Array(4);
      t.encryptWords(1, -2, 0x7fffffff, 0x0701, wa);
      n.encryptWords(1, -2, 0x7fffffff, 0x0701, wb);
      expect(Array.from(wa)).toEqual(Array.from(wb));
    }
  });

  it('createBlockCipher picks the implementation and reports its side-channel property', () => {
    const key = randomBytes(16);
    expect(createBlockCipher(key).name).toBe('table');
    expect(createBlockCipher(key).constantTime).toBe(false);
    expect(createBlockCipher(key, 'node').name).toBe('node');
    expect(createBlockCipher(key, 'node').constantTime).toBe(true);
  });
});
