// Allocation proof for the LB path: 1e6 QuicLbDecoder.decode() calls per algorithm with
// --expose-gc, heapUsed before/after (no GC in between) and GC events counted by a
// PerformanceObserver. A deliberately allocating call (decodeServerId) runs the same way as a
// control, so the measurement is shown to detect allocation.
import { PerformanceObserver } from 'node:perf_hooks';
import { decodeServerId, QuicLbDecoder } from '../../src/cid/index.js';
import type { CipherName } from '../../src/cid/index.js';
import { buildInputs, INPUT_MASK, SHAPES, type Shape } from './inputs.js';

export const ALLOC_ITERATIONS = 1_000_000;

export interface AllocResult {
  name: string;
  iterations: number;
  heapDeltaBytes: number;
  bytesPerOp: number;
  gcEvents: number;
}

let sink = 0;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with node --expose-gc');
  g();
}

async function measure(name: string, op: (i: number) => void): Promise<AllocResult> {
  for (let i = 0; i < 50_000; i++) op(i); // warm up: optimise before measuring
  gc();
  await new Promise((r) => setImmediate(r));
  let gcEvents = 0;
  const obs = new PerformanceObserver((list) => {
    gcEvents += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < ALLOC_ITERATIONS; i++) op(i);
  const after = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 50)); // let GC entries arrive
  obs.disconnect();
  const heapDeltaBytes = after - before;
  return {
    name,
    iterations: ALLOC_ITERATIONS,
    heapDeltaBytes,
    bytesPerOp: heapDeltaBytes / ALLOC_ITERATIONS,
    gcEvents,
  };
}

function decoderOp(shape: Shape, cipher: CipherName = 'table'): (i: number) => void {
  const { config, datagrams } = buildInputs(shape, cipher);
  const decoder = new QuicLbDecoder([config]);
  const out = new Uint8Array(20);
  return (i) => {
    const d = datagrams[i & INPUT_MASK];
    sink ^= decoder.decode(d, 1, d.length - 1, out);
  };
}

export async function allocationRun(): Promise<AllocResult[]> {
  const results: AllocResult[] = [];
  results.push(await measure('decoder.decode plaintext 3+4', decoderOp(SHAPES.plaintext)));
  results.push(await measure('decoder.decode single-pass 8+8 [table]', decoderOp(SHAPES.singlePass)));
  results.push(await measure('decoder.decode four-pass 3+4 [table]', decoderOp(SHAPES.fourPass3)));
  results.push(await measure('decoder.decode four-pass 10+5 [table]', decoderOp(SHAPES.fourPass4)));
  const plain = buildInputs(SHAPES.plaintext);
  results.push(
    await measure('control: decodeServerId plaintext (allocates a Uint8Array per call)', (i) => {
      sink ^= decodeServerId(plain.config, plain.cids[i & INPUT_MASK])![0];
    }),
  );
  results.push(
    await measure(
      'decoder.decode four-pass 3+4 [node] (node:crypto allocates its output)',
      decoderOp(SHAPES.fourPass3, 'node'),
    ),
  );
  if (sink === 0.5) console.log(sink);
  return results;
}
