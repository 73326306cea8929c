// Benchmark inputs, built before any timing from a fixed-seed PRNG: the same CIDs every run.
import { createConfig, encodeConnectionId, type QuicLbConfig } from '../../src/cid/index.js';
import type { CipherName } from '../../src/cid/index.js';

/** mulberry32: a tiny seeded 32-bit PRNG (not for cryptography; inputs only). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export function randomBytes(next: () => number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = next() & 0xff;
  return b;
}

/** Number of distinct inputs each case cycles through (a power of two: index with a mask). */
export const INPUTS = 1024;
export const INPUT_MASK = INPUTS - 1;
export const SEED = 0x51c0de;

export interface Shape {
  /** Case label, e.g. "four-pass 10+5 (4 passes)". */
  label: string;
  serverIdLength: number;
  nonceLength: number;
  encrypted: boolean;
}

export const SHAPES = {
  plaintext: { label: 'plaintext 3+4', serverIdLength: 3, nonceLength: 4, encrypted: false },
  singlePass: { label: 'single-pass 8+8', serverIdLength: 8, nonceLength: 8, encrypted: true },
  fourPass3: { label: 'four-pass 3+4 (3 passes)', serverIdLength: 3, nonceLength: 4, encrypted: true },
  fourPass4: { label: 'four-pass 10+5 (4 passes)', serverIdLength: 10, nonceLength: 5, encrypted: true },
  fourPassEven: { label: 'four-pass 9+9 (3 passes)', serverIdLength: 9, nonceLength: 9, encrypted: true },
} satisfies Record<string, Shape>;

export interface Inputs {
  config: QuicLbConfig;
  serverIds: Uint8Array[];
  nonces: Uint8Array[];
  /** CIDs inside 64-octet "datagrams" at offset 1 (a short header), as the LB sees them. */
  datagrams: Uint8Array[];
  cids: Uint8Array[];
}

export function buildInputs(shape: Shape, cipher: CipherName = 'table', configId = 1): Inputs {
  const next = prng(SEED ^ (shape.serverIdLength << 8) ^ shape.nonceLength);
  const key = shape.encrypted ? randomBytes(next, 16) : undefined;
  const config = createConfig({
    configId,
    serverIdLength: shape.serverIdLength,
    nonceLength: shape.nonceLength,
    key,
    cipher,
  });
  const serverIds: Uint8Array[] = [];
  const nonces: Uint8Array[] = [];
  const datagrams: Uint8Array[] = [];
  const cids: Uint8Array[] = [];
  for (let i = 0; i < INPUTS; i++) {
    const sid = randomBytes(next, shape.serverIdLength);
    const nonce = randomBytes(next, shape.nonceLength);
    const cid = encodeConnectionId(config, sid, nonce);
    const dgram = randomBytes(next, 64);
    dgram.set(cid, 1);
    serverIds.push(sid);
    nonces.push(nonce);
    cids.push(cid);
    datagrams.push(dgram);
  }
  return { config, serverIds, nonces, datagrams, cids };
}
