// QuicLbEncoder: counter nonces seeded at random and never reused, exhaustion -> next config ->
// 0b111 (draft-21 §3.2, §9.6), rotation events (§3.1), plaintext CSPRNG nonces (§9.2), extra
// octets (§5.4), process index folding (§7.2), and the generator adapter.
import { describe, expect, it } from 'vitest';
import {
  createCidGenerator,
  createConfig,
  encodeConnectionId,
  QuicLbDecoder,
  QuicLbEncoder,
  QuicLbError,
  RandomPool,
  serverIdWithProcessIndex,
  UNROUTABLE,
  type RandomSource,
  type RotationEvent,
} from '../../src/cid/index.js';
import { hex, toHex } from './vectors.js';

const KEY_A = hex('8f95f09245765f80256934e50c66207f');
const KEY_B = hex('fdf726a9893ec05c0632d3956680baf0');

/** Deterministic source: hands out `seed` octets first, then a counting pattern; records every draw. */
class ScriptedRandom implements RandomSource {
  draws: number[][] = [];
  private next = 0;
  constructor(private readonly script: number[] = []) {}
  fill(out: Uint8Array, offset: number, length: number): void {
    const drawn: number[] = [];
    for (let i = 0; i < length; i++) {
      const v = this.script.length > 0 ? this.script.shift()! : (this.next++ * 29 + 3) & 0xff;
      out[offset + i] = v;
      drawn.push(v);
    }
    this.draws.push(drawn);
  }
}

function nonceBytes(value: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    b[i] = value & 0xff;
    value = Math.floor(value / 256);
  }
  return b;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(QuicLbError);
    return (e as QuicLbError).code;
  }
  throw new Error('did not throw');
}

describe('QuicLbEncoder nonces', () => {
  it('starts the counter at the random seed and increments it, wrapping past ff..ff', () => {
    const config = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    const sid = hex('ed793a');
    const enc = new QuicLbEncoder({
      configs: [{ config, serverId: sid }],
      random: new ScriptedRandom([0xff, 0xff, 0xff, 0xfd]),
    });
    const expected = [0xfffffffd, 0xfffffffe, 0xffffffff, 0, 1, 2];
    for (const n of expected) {
      expect(toHex(enc.generate())).toBe(toHex(encodeConnectionId(config, sid, nonceBytes(n, 4))));
    }
  });

  it('reports the nonce space: 2^(8n) for counters, the 2^(4n) birthday bound for plaintext random nonces', () => {
    const sid = new Uint8Array(3);
    const enc = new QuicLbEncoder({
      configs: [
        { config: createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A }), serverId: sid },
      ],
    });
    expect(enc.noncesRemaining).toBe(2n ** 32n);
    enc.generate();
    expect(enc.noncesRemaining).toBe(2n ** 32n - 1n);
    const big = new QuicLbEncoder({
      configs: [
        {
          config: createConfig({ configId: 0, serverIdLength: 1, nonceLength: 18, key: KEY_A }),
          serverId: new Uint8Array(1),
        },
      ],
    });
    expect(big.noncesRemaining).toBe(2n ** 144n);
    big.generate();
    expect(big.noncesRemaining).toBe(2n ** 144n - 1n);
    const plain = new QuicLbEncoder({
      configs: [{ config: createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4 }), serverId: sid }],
    });
    expect(plain.noncesRemaining).toBe(2n ** 16n);
  });

  it('never repeats a CID under one key (20000 CIDs, real CSPRNG seed)', () => {
    const enc = new QuicLbEncoder({
      configs: [
        { config: createConfig({ configId: 1, serverIdLength: 2, nonceLength: 4, key: KEY_A }), serverId: hex('0102') },
      ],
    });
    const seen = new Set<string>();
    for (let i = 0; i < 20000; i++) seen.add(toHex(enc.generate()));
    expect(seen.size).toBe(20000);
  });

  it('on exhaustion switches to the next config, then mints 0b111 CIDs, firing rotate each time', () => {
    const a = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    const b = createConfig({ configId: 1, serverIdLength: 2, nonceLength: 8, key: KEY_B });
    // Seed near the wrap so exhaustion also crosses ff..ff -> 00..00.
    const random = new ScriptedRandom([0xff, 0xff, 0xff, 0xfe]);
    const enc = new QuicLbEncoder({
      configs: [
        { config: a, serverId: hex('0a0b0c'), nonceLimit: 3n },
        { config: b, serverId: hex('0d0e'), nonceLimit: 2n },
      ],
      random,
    });
    const events: RotationEvent[] = [];
    enc.on('rotate', (e: RotationEvent) => events.push(e));
    const decoder = new QuicLbDecoder([a, b]);
    const out = new Uint8Array(20);

    const fromA = [enc.generate(), enc.generate(), enc.generate()];
    expect(fromA.map((c) => toHex(c))).toEqual(
      [0xfffffffe, 0xffffffff, 0].map((n) => toHex(encodeConnectionId(a, hex('0a0b0c'), nonceBytes(n, 4)))),
    );
    expect(enc.noncesRemaining).toBe(0n);
    expect(events).toEqual([]);

    const firstB = enc.generate();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ previous: a, current: b, reason: 'exhausted', connectionIdLength: 11 });
    expect(decoder.decode(firstB, 0, firstB.length, out)).toBe(1);
    expect(toHex(out.subarray(0, 2))).toBe('0d0e');
    expect(enc.activeConfig).toBe(b);
    enc.generate();

    const unroutable = enc.generate();
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ previous: b, current: undefined, reason: 'exhausted' });
    expect(enc.activeConfig).toBeUndefined();
    expect(enc.noncesRemaining).toBe(0n);
    expect(enc.allowsAdditionalCids).toBe(false);
    // draft-21 §3.2: 0b111, self-encoded length, at least 8 octets (here the longest config CID, 11).
    expect(unroutable.length).toBe(11);
    expect(unroutable[0]).toBe(0xe0 | 10);
    expect(decoder.decode(unroutable, 0, unroutable.length, out)).toBe(UNROUTABLE);
    const again = enc.generate();
    expect(toHex(again)).not.toBe(toHex(unroutable));
    expect(events).toHaveLength(2);
    // An exhausted config cannot be re-activated (its nonces would repeat).
    expect(codeOf(() => enc.setActiveConfig(0))).toBe('ERR_NONCE_LIMIT');
  });

  it('without any config mints 8-octet 0b111 CIDs', () => {
    const enc = new QuicLbEncoder({ configs: [] });
    const cid = enc.generate();
    expect(cid.length).toBe(8);
    expect(cid[0]).toBe(0xe7);
    expect(enc.connectionIdLength).toBe(8);
    expect(enc.allowsAdditionalCids).toBe(false);
  });
});

describe('QuicLbEncoder plaintext, extra octets, first octet', () => {
  it('plaintext nonces are fresh random octets (no counter) and extra CIDs are not offered', () => {
    const random = new ScriptedRandom();
    const config = createConfig({ configId: 2, serverIdLength: 3, nonceLength: 5 });
    const enc = new QuicLbEncoder({ configs: [{ config, serverId: hex('aabbcc') }], random });
    expect(enc.allowsAdditionalCids).toBe(false);
    const c1 = enc.generate();
    const c2 = enc.generate();
    expect(toHex(c1.subarray(1, 4))).toBe('aabbcc');
    expect(toHex(c1.subarray(4))).toBe(toHex(Uint8Array.from(random.draws[0])));
    expect(toHex(c2.subarray(4))).toBe(toHex(Uint8Array.from(random.draws[1])));
    expect(toHex(c1.subarray(4))).not.toBe(toHex(c2.subarray(4)));
  });

  it('encrypted configs allow additional CIDs', () => {
    const enc = new QuicLbEncoder({
      configs: [
        {
          config: createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A }),
          serverId: hex('010203'),
        },
      ],
    });
    expect(enc.allowsAdditionalCids).toBe(true);
  });

  it('appends the same number of random extra octets, counted in the self-encoded length; the LB ignores them', () => {
    const config = createConfig({ configId: 3, serverIdLength: 4, nonceLength: 6, key: KEY_A });
    const enc = new QuicLbEncoder({ configs: [{ config, serverId: hex('01020304') }], extraOctets: 5 });
    const decoder = new QuicLbDecoder([config]);
    const out = new Uint8Array(20);
    const tails = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const cid = enc.generate();
      expect(cid.length).toBe(16);
      expect(cid[0]).toBe((3 << 5) | 15);
      expect(decoder.decode(cid, 0, cid.length, out)).toBe(3);
      expect(toHex(out.subarray(0, 4))).toBe('01020304');
      tails.add(toHex(cid.subarray(11)));
    }
    expect(tails.size).toBe(50);
    expect(enc.connectionIdLength).toBe(16);
    expect(codeOf(() => new QuicLbEncoder({ configs: [{ config, serverId: hex('01020304') }], extraOctets: 10 }))).toBe(
      'ERR_EXTRA_OCTETS',
    );
  });

  it('without selfEncodeLength the low 5 bits come from the random source', () => {
    const config = createConfig({
      configId: 1,
      serverIdLength: 3,
      nonceLength: 4,
      key: KEY_A,
      selfEncodeLength: false,
    });
    const random = new ScriptedRandom([0, 0, 0, 0, 0xff]);
    const enc = new QuicLbEncoder({ configs: [{ config, serverId: hex('010203') }], random });
    expect(enc.generate()[0]).toBe(0x20 | 0x1f);
  });

  it('generateInto writes at an offset without allocating a CID', () => {
    const config = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    const enc = new QuicLbEncoder({
      configs: [{ config, serverId: hex('ed793a') }],
      random: new ScriptedRandom([0xee, 0x08, 0x0d, 0xbf]),
    });
    const buf = new Uint8Array(30);
    expect(enc.generateInto(buf, 9)).toBe(8);
    expect(toHex(buf.subarray(9, 17))).toBe('0720b1d07b359d3c'); // draft-21 B.2 vector 1
    expect(codeOf(() => enc.generateInto(new Uint8Array(7)))).toBe('ERR_BUFFER');
  });
});

describe('rotation (draft-21 §3.1)', () => {
  it('setActiveConfig / addConfig / removeConfig fire rotate and stop minting with the old config', () => {
    const a = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    const b = createConfig({ configId: 4, serverIdLength: 3, nonceLength: 5, key: KEY_B });
    const c = createConfig({ configId: 5, serverIdLength: 2, nonceLength: 4, key: KEY_B });
    const enc = new QuicLbEncoder({ configs: [{ config: a, serverId: hex('010203') }] });
    const events: RotationEvent[] = [];
    enc.on('rotate', (e: RotationEvent) => events.push(e));
    const gen = createCidGenerator(enc);
    expect(gen.length).toBe(8);
    expect(gen.generate()[0] >>> 5).toBe(0);

    enc.addConfig({ config: b, serverId: hex('040506') });
    expect(events).toHaveLength(0); // added but not active
    enc.setActiveConfig(4);
    expect(events[0]).toMatchObject({ previous: a, current: b, reason: 'manual', connectionIdLength: 9 });
    expect(gen.length).toBe(9);
    for (let i = 0; i < 20; i++) {
      const cid = gen.generate();
      expect(cid.length).toBe(9);
      expect(cid[0] >>> 5).toBe(4);
    }
    enc.setActiveConfig(4); // no change, no event
    expect(events).toHaveLength(1);

    enc.addConfig({ config: c, serverId: hex('0708') }, true);
    expect(events[1]).toMatchObject({ previous: b, current: c, reason: 'added' });
    expect(enc.removeConfig(5)).toBe(true);
    expect(events[2].reason).toBe('removed');
    expect(events[2].previous).toBe(c);
    // The next usable config after the removed one, wrapping around: a (codepoint 0), not b.
    expect(events[2].current).toBe(a);
    expect(enc.activeConfig).toBe(a);
    expect(gen.generate()[0] >>> 5).toBe(0);
    expect(enc.removeConfig(5)).toBe(false);
    expect(codeOf(() => enc.setActiveConfig(6))).toBe('ERR_UNKNOWN_CONFIG');
    expect(codeOf(() => enc.addConfig({ config: a, serverId: hex('010203') }))).toBe('ERR_CONFIG_ID_IN_USE');
  });
});

describe('process index (draft-21 §7.2)', () => {
  const config = createConfig({ configId: 2, serverIdLength: 2, nonceLength: 6, key: KEY_A });
  const sid = hex('beef');
  const sameSeed = (): RandomSource => new ScriptedRandom([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

  it('two processes with the same server ID and the same nonce seed mint different CIDs; the LB sees one server', () => {
    const p0 = new QuicLbEncoder({
      configs: [{ config, serverId: sid }],
      processIndex: { index: 0 },
      random: sameSeed(),
    });
    const p1 = new QuicLbEncoder({
      configs: [{ config, serverId: sid }],
      processIndex: { index: 1 },
      random: sameSeed(),
    });
    const decoder = new QuicLbDecoder([config]);
    const out = new Uint8Array(20);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      for (const cid of [p0.generate(), p1.generate()]) {
        expect(cid.length).toBe(9);
        seen.add(toHex(cid));
        expect(decoder.decode(cid, 0, cid.length, out)).toBe(2);
        expect(toHex(out.subarray(0, 2))).toBe('beef');
      }
    }
    expect(seen.size).toBe(1000);
    // The same two encoders without the index would collide on every CID.
    const q0 = new QuicLbEncoder({ configs: [{ config, serverId: sid }], random: sameSeed() });
    const q1 = new QuicLbEncoder({ configs: [{ config, serverId: sid }], random: sameSeed() });
    expect(toHex(q0.generate())).toBe(toHex(q1.generate()));
    // Folding shortens the nonce space: 2^40 instead of 2^48.
    expect(p0.noncesRemaining).toBe(2n ** 40n - 500n);
  });

  it('serverIdWithProcessIndex appends the index big-endian and keeps the plaintext length', () => {
    const r = serverIdWithProcessIndex(config, sid, 0x0102, 2);
    expect(toHex(r.serverId)).toBe('beef0102');
    expect(r.config.serverIdLength).toBe(4);
    expect(r.config.nonceLength).toBe(4);
    expect(r.config.plaintextLength).toBe(config.plaintextLength);
    expect(r.config.configId).toBe(2);
  });

  it('refuses to leave the nonce under 4 octets, and out-of-range indexes', () => {
    expect(codeOf(() => serverIdWithProcessIndex(config, sid, 0, 3))).toBe('ERR_PROCESS_INDEX');
    expect(codeOf(() => serverIdWithProcessIndex(config, sid, 256, 1))).toBe('ERR_PROCESS_INDEX');
    expect(codeOf(() => serverIdWithProcessIndex(config, sid, -1, 1))).toBe('ERR_PROCESS_INDEX');
    expect(codeOf(() => serverIdWithProcessIndex(config, hex('be'), 1, 1))).toBe('ERR_SERVER_ID_LENGTH');
    const tight = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    expect(
      codeOf(
        () => new QuicLbEncoder({ configs: [{ config: tight, serverId: hex('010203') }], processIndex: { index: 1 } }),
      ),
    ).toBe('ERR_PROCESS_INDEX');
  });
});

describe('RandomPool and unroutable length', () => {
  it('RandomPool refills from the CSPRNG and serves octets across refills', () => {
    const pool = new RandomPool(8);
    const a = new Uint8Array(20);
    const b = new Uint8Array(20);
    pool.fill(a, 0, 20); // crosses three refills
    pool.fill(b, 2, 18);
    expect(toHex(a)).not.toBe(toHex(b));
    expect(new Set(a).size).toBeGreaterThan(8);
    expect(b[0]).toBe(0);
    expect(b[1]).toBe(0);
  });

  it('unroutableLength sets the 0b111 CID length (8..20) and is validated', () => {
    const enc = new QuicLbEncoder({ configs: [], unroutableLength: 20 });
    const cid = enc.generate();
    expect(cid.length).toBe(20);
    expect(cid[0]).toBe(0xe0 | 19);
    expect(codeOf(() => new QuicLbEncoder({ configs: [], unroutableLength: 7 }))).toBe('ERR_UNROUTABLE_LENGTH');
    expect(codeOf(() => new QuicLbEncoder({ configs: [], unroutableLength: 21 }))).toBe('ERR_UNROUTABLE_LENGTH');
    const config = createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4, key: KEY_A });
    expect(codeOf(() => new QuicLbEncoder({ configs: [{ config, serverId: hex('010203'), nonceLimit: 0n }] }))).toBe(
      'ERR_NONCE_LIMIT',
    );
    expect(
      codeOf(() => new QuicLbEncoder({ configs: [{ config, serverId: hex('010203'), nonceLimit: 2n ** 32n + 1n }] })),
    ).toBe('ERR_NONCE_LIMIT');
  });
});
