// Maglev consistent hashing (Eisenbud et al., NSDI 2016 §3.4) with integer weights: the lookup
// table behind the draft-ietf-quic-load-balancers-21 §4.3 baseline fallback. The table depends
// only on the (name, weight) list and the table size, so every LB with the same config and the
// same health view builds the same table, and removing one backend moves only its own slots
// (plus the few that the permutation walk hands on).
import { SipHash24 } from './siphash.js';

/** Default table size: prime, and > 100 x the backend count up to 655 backends (Maglev §3.4). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Largest table size accepted (keeps `SipHash24.hashMod` exact). */
export const MAX_MAGLEV_TABLE_SIZE = 1048573;

/** One candidate for the table. `weight` is an integer >= 0; weight 0 never gets a slot. */
export interface MaglevEntry {
  readonly name: string;
  readonly weight: number;
}

// Fixed keys: the permutation of a backend must be the same on every LB, whatever its secret.
const OFFSET_KEY = new TextEncoder().encode('quic-lb maglev o');
const SKIP_KEY = new TextEncoder().encode('quic-lb maglev s');

/** True when n is a prime (trial division; used for config validation only). */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/**
 * Builds a Maglev lookup table of `size` slots (a prime). Slot values are indexes into
 * `entries`, in the order given (callers sort by name for determinism); the table is empty
 * (length 0) when no entry has a positive weight. Each round, every entry earns its weight in
 * credit and claims one slot per `maxWeight` credit, so slot counts follow the weights.
 * Throws RangeError for a size that is not a prime in [2, MAX_MAGLEV_TABLE_SIZE].
 */
export function buildMaglevTable(entries: readonly MaglevEntry[], size = DEFAULT_MAGLEV_TABLE_SIZE): Int32Array {
  if (!isPrime(size) || size > MAX_MAGLEV_TABLE_SIZE)
    throw new RangeError(`Maglev table size ${size} is not a prime <= ${MAX_MAGLEV_TABLE_SIZE}`);
  const n = entries.length;
  let maxWeight = 0;
  for (const e of entries) if (e.weight > maxWeight) maxWeight = e.weight;
  if (maxWeight <= 0) return new Int32Array(0);
  const offsetHash = new SipHash24(OFFSET_KEY);
  const skipHash = new SipHash24(SKIP_KEY);
  const pos = new Float64Array(n);
  const skip = new Float64Array(n);
  const credit = new Float64Array(n);
  const enc = new TextEncoder();
  for (let i = 0; i < n; i++) {
    const name = enc.encode(entries[i].name);
    pos[i] = offsetHash.hashMod(name, 0, name.length, size);
    skip[i] = skipHash.hashMod(name, 0, name.length, size - 1) + 1;
  }
  const table = new Int32Array(size).fill(-1);
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < n && filled < size; i++) {
      credit[i] += entries[i].weight;
      while (credit[i] >= maxWeight && filled < size) {
        credit[i] -= maxWeight;
        // Walk this entry's permutation to its next free slot.
        let p = pos[i];
        while (table[p] >= 0) {
          p += skip[i];
          if (p >= size) p -= size;
        }
        table[p] = i;
        p += skip[i];
        if (p >= size) p -= size;
        pos[i] = p;
        filled++;
      }
    }
  }
  return table;
}
