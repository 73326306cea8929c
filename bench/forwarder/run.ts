// `npm run bench:forwarder [-- --full] [--rounds N] [--worker-budget CPUS] [--ciphers | --baseline DIR] [--out DIR] [--native | --no-native]`:
// forwarded packets/s and CPU per packet of `quic-lb serve` (plaintext and four-pass; 1 and 2
// workers) beside the bare node:dgram relay (1 process and 2 cluster workers), alternating in one
// run, with the ratios issue 3 targets. Writes bench/results/forwarder.{json,md}.
//
// Every router is searched `--rounds` times (default 5); the report gives each round and the
// medians, and a ratio is the median of the per-round ratios (one round's search alternates the
// routers step by step, so both sides of a ratio saw the same machine). Then the 1- and 2-worker
// pairs are searched again (at most 3 rounds) with every forwarding process confined to
// `--worker-budget` of a core (default 0.4; cgroup CFS quota, bench/lib/cgroup.ts): on a 2-core machine the load tools need
// most of the second core, so only a budget shows whether a second worker doubles the capacity.
// `--baseline DIR` searches this build against DIR's build (plaintext and four-pass, one worker;
// writes bench/results/forwarder-baseline.{json,md}). `--ciphers` instead searches single-pass and four-pass with each AES implementation (`table`,
// `node`) beside the bare relay, one worker, no budget phase; it writes
// bench/results/forwarder-ciphers.{json,md}.
//
// Load: by default the native tools (bench/native: udp-blast with sendmmsg, udp-sink with
// recvmmsg, built with `cc -O2` at run time), which leave the CPUs to the router; `--no-native`
// or a machine without a C compiler uses the Node generator and sinks (which also measure round
// trips through the return path).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureBuilt, repoRoot } from '../harness/build.js';
import { Engine, type TrialOptions, type TrialResult } from '../harness/engine.js';
import { PROFILES, withOverrides, type Profile } from '../harness/profiles.js';
import { bareRelay, quicLbRouter, type Build, type RouterHandle, type RouterSpec } from '../harness/routers.js';
import { baseResults, rateSearch, searchCapped } from '../harness/suite.js';
import { round } from '../harness/engine.js';
import { parseArgs } from '../routers/args.js';
import type { CipherName as QuicLbCipher } from '../../src/cid/index.js';
import { updateReadmeFromResults, writeReport } from '../report/write.js';
import type { BenchResults, RateStep, ResultRow, RoundResult } from '../report/types.js';
import type { Target } from '../load/generator.js';
import { NativeEngine, nativeToolsFromArgs, type NativeTools } from '../native/native.js';
import { busyCores, busyNote, processTree } from '../lib/procstat.js';
import { BUDGET_PERIOD_US, CpuBudget, cpuHierarchy } from '../lib/cgroup.js';
import { median, minNull } from '../lib/stats.js';

export const FORWARDER_ROUTERS = (): RouterSpec[] => [
  bareRelay(),
  bareRelay(2),
  quicLbRouter('plaintext'),
  quicLbRouter('four-pass'),
  quicLbRouter('plaintext', 2),
  quicLbRouter('four-pass', 2),
];

/**
 * `--ciphers`: the AES implementations side by side (issue 10: constant-time `node` against the
 * T-table `table`), single-pass and four-pass, one worker each, with the bare relay as yardstick.
 */
export const CIPHER_ROUTERS = (): RouterSpec[] => [
  bareRelay(),
  quicLbRouter('single-pass', 1, 'table'),
  quicLbRouter('single-pass', 1, 'node'),
  quicLbRouter('four-pass', 1, 'table'),
  quicLbRouter('four-pass', 1, 'node'),
];

/** The AES both builds run in the baseline's four-pass rows (see BASELINE_ROUTERS). */
const BASELINE_FOUR_PASS_CIPHER: QuicLbCipher = 'node';

/**
 * `--baseline DIR`: this build against another checkout's build (DIR/dist/cli.js, e.g. a
 * `git worktree` of the commit before a change, built with `npm run build`), plaintext and
 * four-pass, one worker each, with the bare relay as yardstick. Four-pass names its AES
 * (`node`, this build's default) on both sides: the default changed once (issue 10), and a
 * comparison of two defaults would measure the cipher, not the change.
 */
export const BASELINE_ROUTERS = (baseline: Build): RouterSpec[] => [
  bareRelay(),
  quicLbRouter('plaintext'),
  quicLbRouter('plaintext', 1, undefined, baseline),
  quicLbRouter('four-pass', 1, BASELINE_FOUR_PASS_CIPHER),
  quicLbRouter('four-pass', 1, BASELINE_FOUR_PASS_CIPHER, baseline),
];

/** The ids of this build's routers in BASELINE_ROUTERS; each has a twin id + `@baseline`. */
export const BASELINE_IDS = ['quic-lb-plaintext', `quic-lb-four-pass-aes-${BASELINE_FOUR_PASS_CIPHER}`];

/** What the forwarder run needs of an engine (the Node Engine and the NativeEngine both have it). */
export interface TrialEngine {
  setup(): Promise<void>;
  close(): Promise<void>;
  start(spec: RouterSpec, index: number): Promise<RouterHandle>;
  sinkTarget(i: number): Target;
  trial(
    spec: RouterSpec | undefined,
    handle: RouterHandle | undefined,
    o: TrialOptions,
    target?: Target,
  ): Promise<TrialResult>;
}

export const NATIVE_LOAD_TOOLS =
  'native (bench/native: udp-blast, paced sendmmsg batches of 32 from one socket per connection; udp-sink, recvmmsg; one-way latency, no round trip)';
export const NODE_LOAD_TOOLS = 'Node generator and sinks (worker threads of the harness)';
/** Key suffix of the budget phase in `rounds` and `rate_search`. */
export const BUDGET_SUFFIX = '@budget';
export const BUDGET_METHOD =
  'each forwarding process (the cluster workers, or the single process) in its own cgroup with a CFS quota; the load tools and the primary unlimited';

/** The worker-scaling phase: each forwarding process confined to `cpus` of a core (bench/lib/cgroup.ts). */
export interface BudgetPhase {
  cpus: number;
  /** Router ids (of the run's routers) searched again under the budget; default all of them. */
  routers?: string[];
  /** Rounds of this phase (default: the run's). */
  rounds?: number;
  /** First rate of this phase's searches (default: the profile's). */
  rateStart?: number;
}

export interface ForwarderBenchOptions {
  profile: Profile;
  routers: RouterSpec[];
  log: (s: string) => void;
  preliminary: boolean;
  note: string;
  command: string;
  native?: NativeTools;
  /** Rate searches per router (alternating, as every search is); the report takes medians. Default 1. */
  rounds?: number;
  budget?: BudgetPhase;
  /** 'workers' (default): the issue 3 targets; 'ciphers': the ratios of CIPHER_ROUTERS; 'baseline': of BASELINE_ROUTERS; 'none': no ratios (the caller computes its own, bench/xdp). */
  compare?: 'workers' | 'ciphers' | 'baseline' | 'none';
  /** The engine to run on (bench/xdp: a NativeEngine in network namespaces); default one from `native`. */
  engine?: TrialEngine;
}

/**
 * The ratio a/b of two routers measured in the same rounds: the median of the per-round ratios
 * (both searched in one round, alternating step by step, see the same machine state), or null
 * when no round has both.
 */
export function pairedRatio(rounds: Record<string, RoundResult[]>, a: string, b: string): number | null {
  const x = rounds[a] ?? [];
  const y = rounds[b] ?? [];
  const per: number[] = [];
  for (let i = 0; i < Math.min(x.length, y.length); i++)
    if (x[i].pps > 0 && y[i].pps > 0) per.push(x[i].pps / y[i].pps);
  return round(median(per), 3);
}

/**
 * CPU per packet of `a` over `b` at the same offered rate: the median, over every step both
 * searches tried at one rate in one round with both held (loss within the threshold), of
 * a's CPU per packet over b's. Unlike the CPU at each router's own highest rate, both sides of
 * every pair carried the same load (CPU per packet falls as the rate rises). Null without pairs.
 */
export function sameRateCpuRatio(steps: Record<string, RateStep[]>, a: string, b: string): number | null {
  const key = (s: RateStep): string => `${s.round ?? 1}|${s.rate}`;
  const held = new Map<string, number>();
  for (const s of steps[b] ?? []) if (s.pass && s.cpu_us_per_packet) held.set(key(s), s.cpu_us_per_packet);
  const per: number[] = [];
  for (const s of steps[a] ?? []) {
    const other = held.get(key(s));
    if (s.pass && s.cpu_us_per_packet && other) per.push(s.cpu_us_per_packet / other);
  }
  return round(median(per), 3);
}

/**
 * The processes of a running router that forward datagrams: the cluster workers when it has
 * child processes, the process itself otherwise. Throws when their number is not `spec.workers`.
 */
export function forwardingPids(spec: RouterSpec, handle: RouterHandle): number[] {
  const pids = handle.pids().flatMap((pid) => {
    const below = processTree(pid).filter((p) => p !== pid);
    return below.length ? below : [pid];
  });
  if (pids.length !== spec.workers)
    throw new Error(
      `${spec.id}: expected ${spec.workers} forwarding process(es), found ${pids.length} (${pids.join(', ')})`,
    );
  return pids;
}

export async function runForwarderBench(o: ForwarderBenchOptions): Promise<BenchResults> {
  const t0 = Date.now();
  const p = o.profile;
  const rounds = Math.max(1, Math.floor(o.rounds ?? 1));
  const res = baseResults({
    kind: 'forwarder',
    profile: p.name,
    preliminary: o.preliminary,
    note: o.note,
    command: o.command,
  });
  res.params = {
    connections: p.conns,
    packet_size: p.packetSize,
    trial_ms: p.trialMs,
    loss_threshold: p.lossThreshold,
    rate_factor: p.rateFactor,
    rounds,
    load_tools: o.native ? NATIVE_LOAD_TOOLS : NODE_LOAD_TOOLS,
  };
  res.rounds = {};
  const tmp = mkdtempSync(path.join(tmpdir(), 'quic-lb-bench-native-'));
  const engine: TrialEngine = o.engine
    ? o.engine
    : o.native
      ? new NativeEngine(o.native, { conns: p.conns, packetSize: p.packetSize, seed: p.seed, tmp })
      : new Engine({ conns: p.conns, packetSize: p.packetSize, seed: p.seed, maxFlows: p.conns, needRedis: false });
  const running: { spec: RouterSpec; handle: RouterHandle }[] = [];
  /** Runs `n` rate searches over `set`, each round's result in `res.rounds` under router id + `suffix`; returns per key the best trial of the median round. */
  const searchRounds = async (
    set: typeof running,
    phase: string,
    suffix: string,
    n: number,
    prof: Profile,
  ): Promise<Map<string, TrialResult | undefined>> => {
    const bests = new Map<string, (TrialResult | undefined)[]>();
    for (let k = 1; k <= n; k++) {
      o.log(`${phase}: rate search, round ${k} of ${n}`);
      const search = await rateSearch(engine, set, prof, o.log);
      for (const r of set) {
        const s = search.get(r.spec.id)!;
        const key = r.spec.id + suffix;
        (res.rate_search[key] ??= []).push(...s.steps.map((st) => ({ ...st, round: k })));
        (res.rounds![key] ??= []).push({ pps: s.best?.pps ?? 0, cpu_us_per_packet: s.best?.cpu_us_per_packet ?? null });
        bests.set(key, [...(bests.get(key) ?? []), s.best]);
      }
    }
    // The round whose rate is the median stands for the router (its loss, RSS, misdeliveries).
    const out = new Map<string, TrialResult | undefined>();
    for (const [key, list] of bests) {
      const m = median(res.rounds![key].map((x) => x.pps));
      out.set(key, list[res.rounds![key].findIndex((x) => x.pps === m)]);
    }
    return out;
  };
  const row = (id: string, scenario: string, b: TrialResult | undefined, key: string): ResultRow => ({
    router: id,
    scenario,
    pps: median((res.rounds![key] ?? []).map((x) => x.pps)) ?? 0,
    offered_pps: b?.offered_pps ?? 0,
    loss: round(b?.loss ?? 1, 5)!,
    cpu_us_per_packet: median((res.rounds![key] ?? []).map((x) => x.cpu_us_per_packet)),
    redis_cpu_us_per_packet: null,
    p50_us: null,
    p99_us: null,
    correct_ratio: b?.correct_ratio ?? null,
    misdelivered: b?.misdelivered ?? 0,
    rss_mb: b?.rss_mb ?? 0,
    redis_mem_mb: null,
  });
  try {
    await engine.setup();
    for (const [i, spec] of o.routers.entries()) {
      try {
        running.push({ spec, handle: await engine.start(spec, i) });
        res.routers.push({ id: spec.id, label: spec.label, family: spec.family, workers: spec.workers });
      } catch (e) {
        res.skipped.push({ router: spec.id, reason: (e as Error).message.split('\n').slice(0, 3).join(' ') });
      }
    }
    const direct = await engine.trial(
      undefined,
      undefined,
      { rate: p.latencyRate, durationMs: p.latencyMs, echo: true },
      engine.sinkTarget(0),
    );
    res.direct = {
      p50_us: direct.p50_us,
      p99_us: direct.p99_us,
      rtt_p50_us: direct.rtt_p50_us,
      rtt_p99_us: direct.rtt_p99_us,
    };
    const best = await searchRounds(running, 'all cores', '', rounds, p);
    for (const r of running) {
      const lat = await engine.trial(r.spec, r.handle, { rate: p.latencyRate, durationMs: p.latencyMs, echo: true });
      const out = row(r.spec.id, 'steady', best.get(r.spec.id), r.spec.id);
      out.p50_us = lat.p50_us;
      out.p99_us = lat.p99_us;
      out.correct_ratio = minNull(lat.correct_ratio, out.correct_ratio);
      out.misdelivered += lat.misdelivered;
      if (!out.rss_mb) out.rss_mb = lat.rss_mb;
      out.rtt_p50_us = lat.rtt_p50_us;
      out.rtt_p99_us = lat.rtt_p99_us;
      out.echo_ratio = lat.echo_ratio;
      res.results.push(out);
    }
    if (o.budget) {
      const only = o.budget.routers;
      const set = only ? running.filter((r) => only.includes(r.spec.id)) : running;
      const budgets: CpuBudget[] = [];
      try {
        for (const r of set) {
          for (const pid of forwardingPids(r.spec, r.handle))
            budgets.push(CpuBudget.apply(pid, o.budget.cpus, `quic-lb-bench-${process.pid}-${pid}`));
        }
        const n = Math.max(1, Math.floor(o.budget.rounds ?? rounds));
        res.params.worker_budget = {
          cpus_per_worker: o.budget.cpus,
          period_us: BUDGET_PERIOD_US,
          rounds: n,
          method: BUDGET_METHOD,
        };
        const bestB = await searchRounds(set, `each worker <= ${o.budget.cpus} CPU`, BUDGET_SUFFIX, n, {
          ...p,
          rateStart: o.budget.rateStart ?? p.rateStart,
        });
        for (const r of set)
          res.results.push(
            row(r.spec.id, 'cpu-budget', bestB.get(r.spec.id + BUDGET_SUFFIX), r.spec.id + BUDGET_SUFFIX),
          );
      } catch (e) {
        res.skipped.push({
          router: `worker scaling under a CPU budget (${set.map((r) => r.spec.id).join(', ')})`,
          reason: (e as Error).message,
        });
      } finally {
        for (const b of budgets) b.release();
      }
    }
    if (engine instanceof NativeEngine) {
      // What the load itself costs: the CPU the router cannot have on a 2-core machine. Taken
      // from the trials at high rates (at least half the highest offered rate): at low rates the
      // per-wakeup costs dominate, as for the routers.
      const top = Math.max(0, ...engine.loadCpu.map((c) => c.pps));
      const high = engine.loadCpu.filter((c) => c.pps >= top / 2);
      const med = (v: number[]): number | null => round(median(v), 2);
      res.params.load_tools_cpu_us_per_packet = {
        blast: med(high.map((c) => c.blast)),
        sink: med(high.map((c) => c.sink)),
        from_pps: Math.round(top / 2),
      };
    }
  } finally {
    for (const r of running) await r.handle.stop().catch(() => {});
    await engine.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  const capped = (key: string): boolean => searchCapped(res.rate_search[key]);
  const check = (name: string, a: string, b: string, min: number): void => {
    const v = pairedRatio(res.rounds!, a, b);
    res.ratios[`${a}/${b} pps`] = v;
    res.targets.push({
      name,
      value: v,
      target: `>= ${min}`,
      pass: v === null || capped(a) || capped(b) ? null : v >= min,
    });
  };
  const ratio = (a: string, b: string): void => {
    res.ratios[`${a}/${b} pps`] = pairedRatio(res.rounds!, a, b);
  };
  const cpuRatio = (a: string, b: string): void => {
    const cpu = (id: string): number | null | undefined =>
      res.results.find((r) => r.router === id && r.scenario === 'steady')?.cpu_us_per_packet;
    const x = cpu(a);
    const y = cpu(b);
    res.ratios[`${a}/${b} cpu_us_per_packet`] = x && y ? round(x / y, 3) : null;
    res.ratios[`${a}/${b} cpu_us_per_packet at the same rate`] = sameRateCpuRatio(res.rate_search, a, b);
  };
  if (o.compare === 'none') {
    // the caller's ratios
  } else if (o.compare === 'baseline') {
    for (const id of BASELINE_IDS) {
      ratio(id, `${id}@baseline`);
      cpuRatio(id, `${id}@baseline`);
      for (const r of [id, `${id}@baseline`]) ratio(r, 'bare-relay');
    }
  } else if (o.compare === 'ciphers') {
    for (const scheme of ['single-pass', 'four-pass']) {
      ratio(`quic-lb-${scheme}-aes-node`, `quic-lb-${scheme}-aes-table`);
      cpuRatio(`quic-lb-${scheme}-aes-node`, `quic-lb-${scheme}-aes-table`);
      for (const c of ['table', 'node']) {
        ratio(`quic-lb-${scheme}-aes-${c}`, 'bare-relay');
        cpuRatio(`quic-lb-${scheme}-aes-${c}`, 'bare-relay');
      }
    }
  } else {
    check('plaintext, 1 worker vs bare relay', 'quic-lb-plaintext', 'bare-relay', 0.9);
    check('four-pass, 1 worker vs bare relay', 'quic-lb-four-pass', 'bare-relay', 0.85);
    const budgeted = res.results.some((r) => r.scenario === 'cpu-budget');
    if (budgeted) {
      const c = o.budget!.cpus;
      check(
        `plaintext, 2 workers vs 1 worker, each worker <= ${c} CPU`,
        `quic-lb-plaintext-w2${BUDGET_SUFFIX}`,
        `quic-lb-plaintext${BUDGET_SUFFIX}`,
        1.4,
      );
      check(
        `four-pass, 2 workers vs 1 worker, each worker <= ${c} CPU`,
        `quic-lb-four-pass-w2${BUDGET_SUFFIX}`,
        `quic-lb-four-pass${BUDGET_SUFFIX}`,
        1.4,
      );
      ratio(`bare-relay-w2${BUDGET_SUFFIX}`, `bare-relay${BUDGET_SUFFIX}`);
      // Without a budget the two workers share the two cores with the load tools: reported, not a target.
      ratio('quic-lb-plaintext-w2', 'quic-lb-plaintext');
      ratio('quic-lb-four-pass-w2', 'quic-lb-four-pass');
    } else {
      check('plaintext, 2 workers vs 1 worker', 'quic-lb-plaintext-w2', 'quic-lb-plaintext', 1.4);
      check('four-pass, 2 workers vs 1 worker', 'quic-lb-four-pass-w2', 'quic-lb-four-pass', 1.4);
    }
    // Same runtime, same process model: the honest yardstick for the worker scaling.
    ratio('bare-relay-w2', 'bare-relay');
    ratio('quic-lb-plaintext-w2', 'bare-relay-w2');
    ratio('quic-lb-four-pass-w2', 'bare-relay-w2');
    for (const id of ['quic-lb-plaintext', 'quic-lb-four-pass']) cpuRatio(id, 'bare-relay');
  }
  res.duration_s = Math.round((Date.now() - t0) / 1000);
  return res;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = parseArgs(process.argv.slice(2));
  const base = withOverrides(PROFILES[args.has('full') ? 'full' : 'quick'], args);
  // Throughput only: longer steps, finer rate steps than the routing profile; a failed step is
  // retried once; a ceiling far above what two workers reach (the native tools offer more than 150 k/s).
  // Starts at 60 k/s (one Node process forwards 110-160 k/s here; a first rate that fails makes
  // the search go down by halves), bisects down to 2 % steps.
  const profile: Profile = {
    ...base,
    trialMs: args.has('full') ? 3000 : 1200,
    rateStart: args.has('rate-start') ? base.rateStart : 60_000,
    rateMax: 400_000,
    rateFactor: args.has('full') ? 1.1 : 1.25,
    retryFailedStep: true,
    refineSteps: 5,
    refineStop: 1.02,
    latencyMs: 1000,
  };
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  // Whether the machine is busy now (the load average still counts a benchmark that just ended).
  const busy = await busyCores();
  const native = nativeToolsFromArgs(args, log);
  log(
    native ? 'load tools: native udp-blast / udp-sink (bench/native, cc -O2)' : 'load tools: Node generator and sinks',
  );
  const note = [args.get('note') ?? '', busyNote(busy)].filter(Boolean).join(' ');
  const rounds = Number(args.get('rounds') ?? 5);
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 20))
    throw new Error('bench:forwarder: --rounds must be an integer 1..20');
  // Worker scaling under a CPU budget (default 0.4 of a core per worker; --worker-budget 0 leaves it out).
  const ciphers = args.has('ciphers');
  const baselineDir = args.get('baseline');
  const baseline: Build | undefined = baselineDir
    ? { cli: path.resolve(baselineDir, 'dist', 'cli.js'), name: 'baseline' }
    : undefined;
  if (baseline && !existsSync(baseline.cli))
    throw new Error(`bench:forwarder: --baseline: no ${baseline.cli} (run npm run build in that checkout)`);
  const compare = baseline ? 'baseline' : ciphers ? 'ciphers' : 'workers';
  const budgetCpus = compare !== 'workers' ? 0 : Number(args.get('worker-budget') ?? 0.4);
  if (!(budgetCpus >= 0 && budgetCpus <= 1))
    throw new Error('bench:forwarder: --worker-budget must be a share of one core in [0, 1] (0: no budget phase)');
  const hierarchy = cpuHierarchy();
  if (budgetCpus > 0 && 'error' in hierarchy) log(`worker scaling under a CPU budget left out: ${hierarchy.error}`);
  ensureBuilt(log);
  const res = await runForwarderBench({
    profile,
    routers: baseline ? BASELINE_ROUTERS(baseline) : ciphers ? CIPHER_ROUTERS() : FORWARDER_ROUTERS(),
    compare,
    log,
    preliminary: args.has('preliminary') || busy > 0.5,
    note,
    native,
    rounds,
    // The budget phase: 3 rounds at most (its ratios are far from the targets), from 20 k/s (0.4 of a core forwards 40-60 k/s).
    ...(budgetCpus > 0 && !('error' in hierarchy)
      ? { budget: { cpus: budgetCpus, rounds: Math.min(rounds, 3), rateStart: 20_000 } }
      : {}),
    command: `npm run bench:forwarder${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  });
  const files = writeReport(
    res,
    path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results')),
    compare === 'workers' ? 'forwarder' : `forwarder-${compare === 'ciphers' ? 'ciphers' : 'baseline'}`,
  );
  log(`wrote ${files.map((f) => path.relative(repoRoot, f)).join(', ')}`);
  for (const [k, v] of Object.entries(res.ratios)) log(`ratio ${k}: ${v}`);
  if (compare === 'workers' && !args.has('no-readme') && !args.has('out') && updateReadmeFromResults(repoRoot))
    log('updated the README bench section');
  for (const t of res.targets)
    log(`target: ${t.name}: ${t.value} (${t.target}) ${t.pass === null ? '' : t.pass ? 'met' : 'NOT met'}`);
  for (const s of res.skipped) log(`skipped ${s.router}: ${s.reason}`);
}
