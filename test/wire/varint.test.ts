import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  VARINT_TOO_LARGE,
  VARINT_TRUNCATED,
  VarintResult,
  readVarint,
  readVarintBigInt,
  readVarintInto,
  varintLength,
  varintSizeAt,
  writeVarint,
  writeVarintBigInt,
} from '../../src/wire/index.js';
import { codeOf, hex } from './helpers.js';

describe('varint: RFC 9000 §A.1 examples', () => {
  it('decodes the 8-octet example 0xc2197c5eff14e88c = 151288809941952652 (bigint; number API says too large)', () => {
    const b = hex('c2197c5eff14e88c');
    expect(readVarintBigInt(b, 0)).toBe(151288809941952652n);
    expect(readVarint(b, 0)).toBe(VARINT_TOO_LARGE);
    expect(varintSizeAt(b, 0)).toBe(8);
    const out = Buffer.alloc(8);
    expect(writeVarint(out, 0, 151288809941952652n)).toBe(8);
    expect(out.toString('hex')).toBe('c2197c5eff14e88c');
  });
  it.each([
    ['9d7f3e7d', 494878333, 4],
    ['7bbd', 15293, 2],
    ['25', 37, 1],
    ['4025', 37, 2], // §A.1: the two-octet 0x4025 also decodes to 37
  ] as const)('%s = %d', (h, v, len) => {
    const b = hex(h);
    expect(readVarint(b, 0)).toBe(v);
    expect(varintSizeAt(b, 0)).toBe(len);
    const r = new VarintResult();
    expect(readVarintInto(b, 0, r)).toBe(len);
    expect([r.value, r.length]).toEqual([v, len]);
    const out = Buffer.alloc(len);
    expect(writeVarint(out, 0, v, len)).toBe(len);
    expect(out.toString('hex')).toBe(h);
  });
  it('encodes minimally', () => {
    expect(
      [0, 63, 64, 16383, 16384, 1073741823, 1073741824, Number.MAX_SAFE_INTEGER].map((v) => varintLength(v)),
    ).toEqual([1, 1, 2, 2, 4, 4, 8, 8]);
    expect(varintLength((1n << 62n) - 1n)).toBe(8);
  });
  it('reads the largest safe number exactly and reports 2^53 as too large', () => {
    const b = Buffer.alloc(8);
    writeVarint(b, 0, Number.MAX_SAFE_INTEGER);
    expect(readVarint(b, 0)).toBe(Number.MAX_SAFE_INTEGER);
    writeVarint(b, 0, 1n << 53n);
    expect(readVarint(b, 0)).toBe(VARINT_TOO_LARGE);
    expect(readVarintBigInt(b, 0)).toBe(1n << 53n);
  });
});

describe('varint: misuse throws typed errors', () => {
  it.each([
    [() => varintLength(-1), 'ERR_VARINT_RANGE'],
    [() => varintLength(1.5), 'ERR_VARINT_RANGE'],
    [() => varintLength(2 ** 53), 'ERR_VARINT_RANGE'],
    [() => varintLength(1n << 62n), 'ERR_VARINT_RANGE'],
    [() => varintLength(-1n), 'ERR_VARINT_RANGE'],
    [() => writeVarint(Buffer.alloc(1), 0, 64), 'ERR_BUFFER_TOO_SMALL'],
    [() => writeVarint(Buffer.alloc(8), 7, 64), 'ERR_BUFFER_TOO_SMALL'],
    [() => writeVarint(Buffer.alloc(8), 0, 64, 1), 'ERR_VARINT_LENGTH'],
    [() => writeVarint(Buffer.alloc(8), 0, 1, 3 as 2), 'ERR_VARINT_LENGTH'],
  ])('%#', (f, code) => {
    expect(codeOf(f)).toBe(code);
  });
});

describe('varint: properties', () => {
  it('number round trip at any offset, every forced length that fits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 16 }), (v, pad) => {
        const min = varintLength(v);
        for (const len of [1, 2, 4, 8] as const) {
          if (len < min) continue;
          const buf = Buffer.alloc(pad + len + 3, 0xaa);
          expect(writeVarint(buf, pad, v, len)).toBe(pad + len);
          expect(readVarint(buf, pad)).toBe(v);
          expect(varintSizeAt(buf, pad)).toBe(len);
          expect(buf[pad + len]).toBe(0xaa); // nothing written past the end
          // every truncated prefix: sentinel, never a misread
          for (let cut = pad; cut < pad + len; cut++)
            expect(readVarint(buf.subarray(0, cut), pad)).toBe(VARINT_TRUNCATED);
        }
      }),
      { numRuns: 2000 },
    );
  });
  it('bigint round trip over the full 62-bit range', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }), (v) => {
        const buf = Buffer.alloc(8);
        const end = writeVarintBigInt(buf, 0, v);
        expect(end).toBe(varintLength(v));
        expect(readVarintBigInt(buf, 0)).toBe(v);
        const n = readVarint(buf, 0);
        if (v <= BigInt(Number.MAX_SAFE_INTEGER)) expect(n).toBe(Number(v));
        else expect(n).toBe(VARINT_TOO_LARGE);
        expect(readVarintBigInt(buf.subarray(0, end - 1), 0)).toBe(-1n);
      }),
      { numRuns: 2000 },
    );
  });
  it('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.integer({ min: -2, max: 14 }), (b, off) => {
        const v = readVarint(b, off);
        expect(v === VARINT_TRUNCATED || v === VARINT_TOO_LARGE || (Number.isSafeInteger(v) && v >= 0)).toBe(true);
      }),
    );
  });
});
