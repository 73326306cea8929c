// busyCores(): how many cores other work keeps busy, from /proc/stat (the benchmarks' "is the
// machine quiet" check at start).
import { cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { busyCores } from '../../bench/lib/procstat.js';
import { sleep } from '../helpers/wait.js';

describe('busyCores', () => {
  it('sees a thread that spins for the whole sample as (at least most of) a busy core', async () => {
    const spinner = new Worker('const end = Date.now() + 1500; while (Date.now() < end) {}', { eval: true });
    try {
      await sleep(100);
      const busy = await busyCores(800);
      expect(busy).toBeGreaterThan(0.7);
      expect(busy).toBeLessThanOrEqual(cpus().length);
    } finally {
      await spinner.terminate();
    }
  });
});
