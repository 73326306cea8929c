// Shared fixtures of the LB tests: a config with every algorithm, and packet builders.
import { configFromSpec, encodeConnectionId, type QuicLbConfig } from '../../src/cid/index.js';
import { QUIC_V1, QUIC_V2 } from '../../src/wire/index.js';
import { type LbConfig, validateConfig } from '../../src/lb/index.js';

export const KEY = '8f95f09245765f80256934e50c66207f';
export const FALLBACK_KEY = '000102030405060708090a0b0c0d0e0f';

/** QUIC-LB configs: 0 plaintext, 1 single-pass, 2 four-pass (3 passes), 3 four-pass with a 10-octet SID (4 passes). */
export const QUIC_LB_SPECS = [
  { configId: 0, serverIdLength: 2, nonceLength: 6 },
  { configId: 1, serverIdLength: 8, nonceLength: 8, key: KEY },
  { configId: 2, serverIdLength: 3, nonceLength: 4, key: KEY },
  { configId: 3, serverIdLength: 10, nonceLength: 5, key: KEY },
];

export const SIDS = {
  a: { 0: '0001', 1: 'a1a1a1a1a1a1a1a1', 2: 'ed793a', 3: 'ed793a51d49b8f5fab65' },
  b: { 0: '0002', 1: 'b2b2b2b2b2b2b2b2', 2: 'b2b2b2', 3: 'ed793a51d49b8f5fab66' },
  c: { 0: '0003', 2: 'c3c3c3' },
  d: { 0: '0004' },
} as const;

/** Backends a..d of SIDS at `endpoints` (one per backend), health checks off. */
export function backendDocs(endpoints: string[]): Record<string, unknown>[] {
  return Object.entries(SIDS).map(([name, sids], i) => ({
    name,
    address: endpoints[i],
    serverIds: Object.fromEntries(Object.entries(sids).map(([k, v]) => [k, [v]])),
    health: { type: 'none' },
  }));
}

/** A config document (what YAML would parse to), with addresses in the LB test range. */
export function configDoc(overrides: Record<string, unknown> = {}, base = 20000): Record<string, unknown> {
  return {
    listen: [`127.0.1.1:${base + 1}`],
    quicLb: QUIC_LB_SPECS,
    backends: backendDocs(Object.keys(SIDS).map((_, i) => `127.0.1.${10 + i}:${base + 10}`)),
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    ...overrides,
  };
}

export function testConfig(overrides: Record<string, unknown> = {}): LbConfig {
  return validateConfig(configDoc(overrides));
}

const libConfigs = new Map<number, QuicLbConfig>();
export function libConfig(id: number): QuicLbConfig {
  let c = libConfigs.get(id);
  if (!c) {
    c = configFromSpec(QUIC_LB_SPECS[id]);
    libConfigs.set(id, c);
  }
  return c;
}

/** A CID of config `id` for server ID `sidHex` (nonce from `seed`). */
export function cid(id: number, sidHex: string, seed = 1): Buffer {
  const c = libConfig(id);
  const nonce = Buffer.alloc(c.nonceLength);
  for (let i = 0; i < nonce.length; i++) nonce[i] = (seed * 31 + i * 7) & 0xff;
  return Buffer.from(encodeConnectionId(c, Buffer.from(sidHex, 'hex'), nonce));
}

/** A 1-RTT (short header) datagram with `dcid` and `payload` octets after it. */
export function shortHeader(dcid: Uint8Array, payload = 24): Buffer {
  return Buffer.concat([Buffer.of(0x41), dcid, Buffer.alloc(payload, 0x5a)]);
}

/** Long header types as wire bits. */
export const V1 = { INITIAL: 0, ZERO_RTT: 1, HANDSHAKE: 2, RETRY: 3 };
export const V2 = { INITIAL: 1, ZERO_RTT: 2, HANDSHAKE: 3, RETRY: 0 };

/** A long-header datagram: first octet 0xc0 | type << 4, version, DCID, SCID, padding. */
export function longHeader(
  version: number,
  typeBits: number,
  dcid: Uint8Array,
  scid: Uint8Array = Buffer.alloc(8, 0x33),
  pad = 40,
): Buffer {
  const head = Buffer.alloc(7);
  head[0] = 0xc0 | (typeBits << 4);
  head.writeUInt32BE(version >>> 0, 1);
  head[5] = dcid.length;
  return Buffer.concat([head.subarray(0, 6), dcid, Buffer.of(scid.length), scid, Buffer.alloc(pad, 0x11)]);
}

export { QUIC_V1, QUIC_V2 };

/** Valid datagrams of every kind, the starting points of the fuzzers' mutations. */
export function fuzzSeeds(): Buffer[] {
  return [
    shortHeader(cid(0, SIDS.a[0])),
    shortHeader(cid(1, SIDS.b[1])),
    shortHeader(cid(2, SIDS.c[2])),
    shortHeader(cid(3, SIDS.b[3])),
    longHeader(QUIC_V1, V1.INITIAL, Buffer.from('a1b2c3d4e5f60718', 'hex'), undefined, 1200),
    longHeader(QUIC_V2, V2.INITIAL, Buffer.from('0102030405060708', 'hex'), undefined, 1200),
    longHeader(QUIC_V1, V1.HANDSHAKE, cid(3, SIDS.a[3])),
    longHeader(0x1a2a3a4a, 0, Buffer.alloc(40, 3)),
    longHeader(0, 0, Buffer.alloc(8, 0xe0)),
  ];
}

/** xorshift32, seeded: the same pseudo-random stream on every run. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}
