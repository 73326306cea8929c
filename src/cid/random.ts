// Randomness for the encoder: an injectable source, and a pooled CSPRNG as the default
// (one crypto call per pool refill instead of one per CID).

import { randomFillSync } from 'node:crypto';

/** Source of random octets. Tests inject deterministic ones; production uses RandomPool. */
export interface RandomSource {
  /** Fills out[offset .. offset + length) with random octets. */
  fill(out: Uint8Array, offset: number, length: number): void;
}

/** Default pool size: 4 KiB covers a few hundred CIDs per refill. */
export const DEFAULT_RANDOM_POOL_SIZE = 4096;

/** CSPRNG octets (node:crypto randomFillSync) drawn from a pool refilled when used up. */
export class RandomPool implements RandomSource {
  private readonly pool: Uint8Array;
  private position: number;

  constructor(size = DEFAULT_RANDOM_POOL_SIZE) {
    this.pool = new Uint8Array(size);
    this.position = size;
  }

  fill(out: Uint8Array, offset: number, length: number): void {
    const pool = this.pool;
    for (let i = 0; i < length; i++) {
      if (this.position === pool.length) {
        randomFillSync(pool);
        this.position = 0;
      }
      out[offset + i] = pool[this.position];
      // Never hand the same octet out twice.
      pool[this.position++] = 0;
    }
  }
}
