// Loads the QUIC-LB test vectors kept in the repository (test/vectors/, see its README.md: each
// vector names its source, each file is pinned by SHA-256). The JSON files are data; never edited.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../helpers/cli.js';

export interface Vector {
  algorithm: 'plaintext' | 'single_pass' | 'four_pass' | 'four_pass_legacy_d15_d17' | 'unroutable';
  cr_bits: number;
  sid_len: number | null;
  nonce_len: number | null;
  key: string | null;
  server_id: string | null;
  nonce: string | null;
  cid: string;
  source: string;
  first_octet_self_encodes_length?: boolean;
  self_consistent?: boolean;
  expect?: 'server_id' | 'unroutable';
  intermediates?: Record<string, string>;
  note?: string;
}

export type VectorFile = 'draft-21.json' | 'quiche.json';

/** Inside the checkout: nothing at test time reads outside the repository. */
export const vectorsDir = path.join(repoRoot, 'test', 'vectors');

export function loadVectors(file: VectorFile): Vector[] {
  return JSON.parse(readFileSync(path.join(vectorsDir, file), 'utf8')) as Vector[];
}

/** SHA-256 (hex) of a vector file's bytes as stored. */
export function vectorFileDigest(file: VectorFile): string {
  return createHash('sha256')
    .update(readFileSync(path.join(vectorsDir, file)))
    .digest('hex');
}

/** The SHA-256 each vector file is pinned to: the `sha256` column of test/vectors/README.md. */
export function pinnedDigests(): Map<string, string> {
  const pins = new Map<string, string>();
  for (const line of readFileSync(path.join(vectorsDir, 'README.md'), 'utf8').split('\n')) {
    const m = /^\| `([\w.-]+\.json)` \|.*\| `([0-9a-f]{64})` \|$/.exec(line);
    if (m) pins.set(m[1], m[2]);
  }
  return pins;
}

/** Strict hex: even length, hex digits only (a vector with a lost digit must not parse). */
export function hex(s: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/i.test(s)) throw new Error(`not hex: ${s}`);
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
