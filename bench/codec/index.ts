// `npm run bench:codec`: every codec benchmark in one process run (side by side, so ratios are
// meaningful on a busy machine), the allocation proof, and a results file under bench/results/.
//   node --expose-gc --import tsx bench/codec/index.ts [--quick]
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { complete, configure, cycle, suite } from 'benny';
import type { Summary } from 'benny/lib/internal/common-types.js';
import { aesCases } from './aes-block.js';
import { allocationRun } from './alloc.js';
import { decodeCases } from './decode.js';
import { encodeCases } from './encode.js';

const quick = process.argv.includes('--quick');
const here = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.resolve(here, '..', 'results');

interface Row {
  name: string;
  medianNs: number;
  meanNs: number;
  opsPerSec: number;
  marginPct: number;
  samples: number;
}

function rows(summary: Summary): Row[] {
  return summary.results.map((r) => ({
    name: r.name,
    medianNs: Number((r.details.median * 1e9).toFixed(1)),
    meanNs: Number((r.details.mean * 1e9).toFixed(1)),
    opsPerSec: Math.round(r.ops),
    marginPct: r.margin,
    samples: r.samples,
  }));
}

function git(cmd: string): string {
  try {
    return execSync(`git ${cmd}`, { cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg();
  // Every case runs in each of several rounds (suites interleaved), and a case's figure is the
  // median over rounds of its per-round median: a load spike from other processes on this shared
  // machine then moves one sample, not the result.
  const roundsArg = process.argv.find((a) => a.startsWith('--rounds='));
  const rounds = roundsArg ? Number(roundsArg.split('=')[1]) : quick ? 1 : 3;
  const cases = { minTime: quick ? 0.2 : 0.5, maxTime: quick ? 0.5 : 1.5, minSamples: 10 };
  const perRound = new Map<string, Row[]>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, make] of [
      ['aes-128 one block', aesCases],
      ['decode (LB side)', decodeCases],
      ['encode (server side)', encodeCases],
    ] as const) {
      const summary = await suite(
        `${name} (round ${round + 1}/${rounds})`,
        ...make(),
        configure({ cases }),
        cycle(),
        complete(),
      );
      for (const r of rows(summary)) perRound.set(r.name, [...(perRound.get(r.name) ?? []), r]);
    }
  }
  const mid = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const all = [...perRound.entries()].map(([name, rs]) => ({
    name,
    medianNs: Number(mid(rs.map((r) => r.medianNs)).toFixed(1)),
    roundMediansNs: rs.map((r) => r.medianNs),
    opsPerSec: Math.round(mid(rs.map((r) => r.opsPerSec))),
    marginPct: Number(mid(rs.map((r) => r.marginPct)).toFixed(2)),
    samples: rs.reduce((n, r) => n + r.samples, 0),
  }));
  const allocation = await allocationRun();
  const median = (name: string): number => {
    const r = all.find((x) => x.name === name);
    if (!r) throw new Error(`no case ${name}`);
    return r.medianNs;
  };
  const targets = [
    ['decode plaintext 3+4', 100],
    ['decode single-pass 8+8 [table]', 500],
    ['decode four-pass 3+4 (3 passes) [table]', 1500],
    ['decode four-pass 10+5 (4 passes) [table]', 1500],
    ['decodeServerId plaintext 3+4 (allocates result)', 100],
    ['decodeServerId single-pass 8+8 (allocates result)', 500],
    ['decodeServerId four-pass 3+4 (3 passes) (allocates result)', 1500],
    ['decodeServerId four-pass 10+5 (4 passes) (allocates result)', 1500],
  ].map(([name, limitNs]) => ({
    name,
    limitNs,
    medianNs: median(name as string),
    met: median(name as string) <= (limitNs as number),
  }));
  // Like for like: the allocation-free pair (encodeConnectionIdInto / QuicLbDecoder.decode) and
  // the allocating low-level API pair (encodeConnectionId / decodeServerId) the target names.
  const encodeVsDecode = [
    ['encode plaintext 3+4', 'decode plaintext 3+4'],
    ['encode single-pass 8+8', 'decode single-pass 8+8 [table]'],
    ['encode four-pass 3+4 (3 passes)', 'decode four-pass 3+4 (3 passes) [table]'],
    ['encode four-pass 10+5 (4 passes)', 'decode four-pass 10+5 (4 passes) [table]'],
    ['encodeConnectionId plaintext 3+4 (allocates result)', 'decodeServerId plaintext 3+4 (allocates result)'],
    ['encodeConnectionId single-pass 8+8 (allocates result)', 'decodeServerId single-pass 8+8 (allocates result)'],
    [
      'encodeConnectionId four-pass 3+4 (3 passes) (allocates result)',
      'decodeServerId four-pass 3+4 (3 passes) (allocates result)',
    ],
    [
      'encodeConnectionId four-pass 10+5 (4 passes) (allocates result)',
      'decodeServerId four-pass 10+5 (4 passes) (allocates result)',
    ],
  ].map(([e, d]) => ({
    encode: e,
    decode: d,
    ratio: Number((median(e) / median(d)).toFixed(2)),
    met: median(e) / median(d) <= 1.5,
  }));
  const cipherRatios = [
    ['aes-128 one block encrypt [node]', 'aes-128 one block encrypt [table]'],
    ['aes-128 one block decrypt [node]', 'aes-128 one block decrypt [table]'],
    ['decode single-pass 8+8 [node]', 'decode single-pass 8+8 [table]'],
    ['decode four-pass 3+4 (3 passes) [node]', 'decode four-pass 3+4 (3 passes) [table]'],
    ['decode four-pass 10+5 (4 passes) [node]', 'decode four-pass 10+5 (4 passes) [table]'],
  ].map(([n, t]) => ({ node: n, table: t, nodeOverTable: Number((median(n) / median(t)).toFixed(2)) }));

  const result = {
    benchmark: 'codec',
    date: new Date().toISOString(),
    quick,
    rounds,
    node: process.version,
    v8: process.versions.v8,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    loadavgBefore: loadBefore,
    loadavgAfter: os.loadavg(),
    commit: git('rev-parse HEAD'),
    dirty: git('status --porcelain -- src/cid bench/codec') !== '',
    method:
      'benny (benchmark.js) per case, every case in each round; inputs: 1024 CIDs from a fixed-seed PRNG built before timing; medianNs = median over rounds of the per-round median of benchmark.js sample means; LB decode = QuicLbDecoder.decode on a 64-octet datagram, CID at offset 1',
    cases: all,
    targets,
    encodeVsDecode,
    cipherRatios,
    allocation,
  };
  mkdirSync(resultsDir, { recursive: true });
  const stamp = result.date.slice(0, 10);
  const json = JSON.stringify(result, null, 2) + '\n';
  writeFileSync(path.join(resultsDir, `codec-${stamp}.json`), json);
  writeFileSync(path.join(resultsDir, 'codec-latest.json'), json);

  console.log('\nmedian ns/op:');
  for (const r of all) console.log(`  ${r.medianNs.toFixed(1).padStart(9)}  ${r.name}`);
  console.log('\ntargets:');
  for (const t of targets) console.log(`  ${t.met ? 'ok  ' : 'MISS'} ${t.name}: ${t.medianNs} ns (<= ${t.limitNs})`);
  console.log('\nencode / decode:');
  for (const r of encodeVsDecode) console.log(`  ${r.met ? 'ok  ' : 'MISS'} ${r.ratio}x  ${r.encode} / ${r.decode}`);
  console.log('\nnode:crypto / table:');
  for (const r of cipherRatios) console.log(`  ${r.nodeOverTable}x  ${r.node}`);
  console.log(`\nallocation over ${allocation[0].iterations} calls (heap delta, GC events):`);
  for (const a of allocation) console.log(`  ${String(a.heapDeltaBytes).padStart(10)} B  ${a.gcEvents} GC  ${a.name}`);
  console.log(
    `\nsaved bench/results/codec-${stamp}.json (node ${result.node}, ${result.cpu}, load ${loadBefore.map((x) => x.toFixed(2)).join(' ')})`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
