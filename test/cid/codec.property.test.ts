// Property tests over every legal (serverIdLength, nonceLength) pair (draft-21 §5.3), plaintext and
// encrypted: round trip, encoding at an offset inside a larger buffer, every truncated prefix.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createConfig,
  decodeServerId,
  encodeConnectionId,
  encodeConnectionIdInto,
  QuicLbDecoder,
  TOO_SHORT,
  UNKNOWN_CONFIG,
  UNROUTABLE,
  type QuicLbConfig,
} from '../../src/cid/index.js';
import { toHex } from './vectors.js';

const pairs: [number, number][] = [];
for (let s = 1; s <= 15; s++) for (let n = 4; s + n <= 19; n++) pairs.push([s, n]);

const KEY = Uint8Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff);

function bytes(len: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: len, maxLength: len });
}

function checkPair(config: QuicLbConfig, runs: number): void {
  const decoder = new QuicLbDecoder([config]);
  const out = new Uint8Array(20);
  fc.assert(
    fc.property(
      bytes(config.serverIdLength),
      bytes(config.nonceLength),
      fc.integer({ min: 0, max: 40 }),
      bytes(64),
      (sid, nonce, offset, background) => {
        const cid = encodeConnectionId(config, sid, nonce);
        expect(cid.length).toBe(config.cidLength);
        expect(cid[0] >>> 5).toBe(config.configId);
        expect(toHex(decodeServerId(config, cid)!)).toBe(toHex(sid));
        // Encoding at an offset writes exactly cidLength octets and nothing around them.
        const big = background.slice();
        const buf = new Uint8Array(offset + config.cidLength + 20);
        buf.set(big.subarray(0, buf.length));
        const before = buf.slice();
        expect(encodeConnectionIdInto(config, sid, nonce, buf, offset)).toBe(config.cidLength);
        expect(toHex(buf.subarray(offset, offset + config.cidLength))).toBe(toHex(cid));
        expect(toHex(buf.subarray(0, offset))).toBe(toHex(before.subarray(0, offset)));
        expect(toHex(buf.subarray(offset + config.cidLength))).toBe(toHex(before.subarray(offset + config.cidLength)));
        // Decoding inside the larger buffer, trailing octets ignored.
        out.fill(0);
        expect(decoder.decode(buf, offset, buf.length - offset, out)).toBe(config.configId);
        expect(toHex(out.subarray(0, config.serverIdLength))).toBe(toHex(sid));
        expect(out.subarray(config.serverIdLength).every((b) => b === 0)).toBe(true);
        // Every truncated prefix is TOO_SHORT: by `available` and by the buffer's own end.
        for (let len = 0; len < config.cidLength; len++) {
          out.fill(0xee);
          expect(decoder.decode(buf, offset, len, out)).toBe(TOO_SHORT);
          expect(decoder.decode(cid.subarray(0, len), 0, config.cidLength, out)).toBe(TOO_SHORT);
          expect(out.every((b) => b === 0xee)).toBe(true);
          expect(decodeServerId(config, cid.subarray(0, len))).toBeUndefined();
        }
      },
    ),
    { numRuns: runs, seed: 0x5eed },
  );
}

describe('every legal (serverIdLength, nonceLength) pair', () => {
  it('covers 120 pairs', () => expect(pairs.length).toBe(120));

  it('plaintext: round trip, offsets, truncations', () => {
    for (const [s, n] of pairs)
      checkPair(createConfig({ configId: (s + n) % 7, serverIdLength: s, nonceLength: n }), 15);
  });

  it('encrypted, table AES: round trip, offsets, truncations', () => {
    for (const [s, n] of pairs) {
      const config = createConfig({ configId: s % 7, serverIdLength: s, nonceLength: n, key: KEY });
      expect(config.algorithm).toBe(s + n === 16 ? 'single-pass' : 'four-pass');
      expect(config.decodePasses).toBe(s + n === 16 ? 1 : s <= n ? 3 : 4);
      checkPair(config, 15);
    }
  });

  it('encrypted, node:crypto AES: round trip, offsets, truncations', () => {
    for (const [s, n] of pairs)
      checkPair(createConfig({ configId: n % 7, serverIdLength: s, nonceLength: n, key: KEY, cipher: 'node' }), 4);
  });

  it('table and node ciphers produce identical CIDs', () => {
    fc.assert(
      fc.property(fc.constantFrom(...pairs), bytes(16), bytes(19), ([s, n], key, material) => {
        const a = createConfig({ configId: 1, serverIdLength: s, nonceLength: n, key, cipher: 'table' });
        const b = createConfig({ configId: 1, serverIdLength: s, nonceLength: n, key, cipher: 'node' });
        const sid = material.subarray(0, s);
        const nonce = material.subarray(s, s + n);
        expect(toHex(encodeConnectionId(a, sid, nonce))).toBe(toHex(encodeConnectionId(b, sid, nonce)));
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it('encryption changes with the nonce: distinct nonces give distinct CIDs (a permutation)', () => {
    for (const [s, n] of pairs) {
      const config = createConfig({ configId: 0, serverIdLength: s, nonceLength: n, key: KEY });
      const sid = new Uint8Array(s).fill(0x42);
      const seen = new Set<string>();
      for (let i = 0; i < 64; i++) {
        const nonce = new Uint8Array(n);
        nonce[n - 1] = i;
        seen.add(toHex(encodeConnectionId(config, sid, nonce)));
      }
      expect(seen.size).toBe(64);
    }
  });

  it('random CIDs never decode to a wrong config or crash (any bytes, any lengths)', () => {
    const configs = [
      createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY }),
      createConfig({ configId: 1, serverIdLength: 10, nonceLength: 5, key: KEY }),
      createConfig({ configId: 2, serverIdLength: 8, nonceLength: 8, key: KEY }),
      createConfig({ configId: 3, serverIdLength: 2, nonceLength: 6 }),
    ];
    const decoder = new QuicLbDecoder(configs);
    const out = new Uint8Array(20);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 30 }),
        fc.integer({ min: -5, max: 40 }),
        fc.integer({ min: -5, max: 40 }),
        (buf, offset, available) => {
          const r = decoder.decode(buf, offset, available, out);
          if (r < 0) {
            // Why not, from the codepoint and the length alone.
            const room = Math.min(available, buf.length - offset);
            const cp = buf[offset] >>> 5;
            if (!(room >= 1) || !Number.isInteger(offset) || offset < 0) expect(r).toBe(TOO_SHORT);
            else if (cp === 7) expect(r).toBe(UNROUTABLE);
            else if (configs[cp] === undefined) expect(r).toBe(UNKNOWN_CONFIG);
            else expect(r).toBe(TOO_SHORT);
            return;
          }
          expect(r).toBe(buf[offset] >>> 5);
          expect(Math.min(available, buf.length - offset)).toBeGreaterThanOrEqual(configs[r].cidLength);
        },
      ),
      { numRuns: 3000, seed: 3 },
    );
    const cid = Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7);
    for (const [offset, available] of [
      [NaN, 8],
      [0, NaN],
      [NaN, NaN],
      [0.5, 8],
      [Infinity, 8],
      [0, -Infinity],
    ]) {
      expect(decoder.decode(cid, offset, available, out)).toBe(TOO_SHORT);
    }
    expect(decoder.decode(cid, 0, Infinity, out)).toBe(0);
    const long = new Uint8Array(40);
    expect(decoder.decode(long, 1.5, 30, out)).toBe(TOO_SHORT);
  });
});
