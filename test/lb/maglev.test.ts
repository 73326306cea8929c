// SipHash-2-4 against the reference vectors, and the Maglev table's properties.
import { describe, expect, it } from 'vitest';
import { SipHash24, buildMaglevTable, isPrime } from '../../src/lb/index.js';

const hex64 = (h: SipHash24): string => h.hi.toString(16).padStart(8, '0') + h.lo.toString(16).padStart(8, '0');

describe('SipHash-2-4', () => {
  // Reference vectors of the SipHash paper / reference implementation (vectors.h): key
  // 00..0f, message 00..(n-1), output as a little-endian 64-bit integer.
  const vectors: [number, string][] = [
    [0, '726fdb47dd0e0e31'],
    [7, 'ab0200f58b01d137'],
    [8, '93f5f5799a932462'],
    [15, 'a129ca6149be45e5'],
  ];
  const key = Uint8Array.from({ length: 16 }, (_, i) => i);
  for (const [n, want] of vectors) {
    it(`message of ${n} octets`, () => {
      const h = new SipHash24(key);
      const msg = Uint8Array.from({ length: n }, (_, i) => i);
      h.hash(msg, 0, n);
      expect(hex64(h)).toBe(want);
      // Same result at an offset inside a larger buffer.
      const big = new Uint8Array(n + 5);
      big.set(msg, 3);
      h.hash(big, 3, n);
      expect(hex64(h)).toBe(want);
    });
  }
  it('hashMod is the exact 64-bit remainder', () => {
    const h = new SipHash24(key);
    for (let n = 0; n < 40; n++) {
      const msg = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
      const m = 65537;
      const r = h.hashMod(msg, 0, n, m);
      const big = (BigInt(h.hi) << 32n) | BigInt(h.lo);
      expect(r).toBe(Number(big % BigInt(m)));
    }
  });
  it('rejects a key that is not 16 octets', () => {
    expect(() => new SipHash24(new Uint8Array(8))).toThrow(RangeError);
  });
});

describe('Maglev table', () => {
  const names = (n: number): { name: string; weight: number }[] =>
    Array.from({ length: n }, (_, i) => ({ name: `backend-${i}`, weight: 1 }));
  const counts = (t: Int32Array, n: number): number[] => {
    const c = new Array(n).fill(0);
    for (const v of t) c[v]++;
    return c;
  };

  it('is deterministic: two independently built tables are identical', () => {
    const a = buildMaglevTable(names(7));
    const b = buildMaglevTable(names(7).map((e) => ({ ...e })));
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  it('fills every slot and balances equal weights within 1 %', () => {
    for (const n of [1, 2, 3, 10, 100]) {
      const t = buildMaglevTable(names(n));
      expect(t.length).toBe(65537);
      const c = counts(t, n);
      const ideal = 65537 / n;
      for (const x of c) expect(Math.abs(x - ideal) / ideal).toBeLessThan(0.01);
    }
  });

  it('respects weights', () => {
    const entries = [
      { name: 'a', weight: 1 },
      { name: 'b', weight: 2 },
      { name: 'c', weight: 5 },
    ];
    const c = counts(buildMaglevTable(entries), 3);
    const total = 65537;
    expect(c[0] / total).toBeCloseTo(1 / 8, 2);
    expect(c[1] / total).toBeCloseTo(2 / 8, 2);
    expect(c[2] / total).toBeCloseTo(5 / 8, 2);
  });

  it('weight 0 gets no slot; all-zero weights give an empty table', () => {
    const t = buildMaglevTable([
      { name: 'a', weight: 0 },
      { name: 'b', weight: 3 },
    ]);
    expect(counts(t, 2)).toEqual([0, 65537]);
    expect(buildMaglevTable([{ name: 'a', weight: 0 }]).length).toBe(0);
    expect(buildMaglevTable([]).length).toBe(0);
  });

  it('minimal disruption: removing one of 10 backends moves little more than its own share', () => {
    const all = names(10);
    const before = buildMaglevTable(all);
    const rest = all.filter((e) => e.name !== 'backend-3');
    const after = buildMaglevTable(rest);
    let moved = 0;
    let ownMoved = 0;
    for (let i = 0; i < before.length; i++) {
      const b = all[before[i]].name;
      const a = rest[after[i]].name;
      if (b === 'backend-3') ownMoved++;
      else if (a !== b) moved++;
    }
    expect(ownMoved / before.length).toBeCloseTo(0.1, 2);
    // Slots of the other backends that changed owner: Maglev keeps this small (paper §3.4).
    expect(moved / before.length).toBeLessThan(0.03);
  });

  it('adding a backend takes about 1/(n+1) of the slots, mostly from others evenly', () => {
    const before = buildMaglevTable(names(5));
    const after = buildMaglevTable(names(6));
    let changed = 0;
    for (let i = 0; i < before.length; i++) if (after[i] !== before[i]) changed++;
    expect(changed / before.length).toBeLessThan(1 / 6 + 0.03);
  });

  it('table size must be prime', () => {
    expect(isPrime(65537)).toBe(true);
    expect(isPrime(65536)).toBe(false);
    expect(() => buildMaglevTable(names(2), 100)).toThrow(RangeError);
    expect(buildMaglevTable(names(2), 251).length).toBe(251);
  });
});
