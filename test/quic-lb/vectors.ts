// Loads the shared test vectors (../shared/spec/vectors beside the repository; CI checks shared/
// out next to the clone). The JSON files are data pinned to their sources; never edited here.
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

export const vectorsDir = path.resolve(repoRoot, '..', 'shared', 'spec', 'vectors');

export function loadVectors(file: 'draft-21.json' | 'quiche.json'): Vector[] {
  return JSON.parse(readFileSync(path.join(vectorsDir, file), 'utf8')) as Vector[];
}

/** Strict hex: even length, hex digits only (a vector with a lost digit must not parse). */
export function hex(s: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/i.test(s)) throw new Error(`not hex: ${s}`);
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
