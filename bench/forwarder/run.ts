// `npm run bench:forwarder [-- --full] [--out DIR] [--native | --no-native]`: forwarded
// packets/s and CPU per packet of `quic-lb serve` (plaintext and four-pass; 1 and 2 workers)
// beside the bare node:dgram relay (1 process and 2 cluster workers), alternating in one run,
// with the ratios issue 3 targets. Writes bench/results/forwarder.{json,md}.
//
// Load: by default the native tools (bench/native: udp-blast with sendmmsg, udp-sink with
// recvmmsg, built with `cc -O2` at run time), which leave the CPUs to the router; `--no-native`
// or a machine without a C compiler uses the Node generator and sinks (which also measure round
// trips through the return path).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureBuilt, repoRoot } from '../harness/build.js';
import { Engine, type TrialOptions, type TrialResult } from '../harness/engine.js';
import { PROFILES, withOverrides, type Profile } from '../harness/profiles.js';
import { bareRelay, quicLbRouter, type RouterHandle, type RouterSpec } from '../harness/routers.js';
import { baseResults, rateSearch, searchCapped } from '../harness/suite.js';
import { round } from '../harness/engine.js';
import { parseArgs } from '../routers/args.js';
import { updateReadmeFromResults, writeReport } from '../report/write.js';
import type { BenchResults, TargetCheck } from '../report/types.js';
import type { Target } from '../load/generator.js';
import { NativeEngine, nativeToolsFromArgs, type NativeTools } from '../native/native.js';
import { busyCores, busyNote } from '../lib/procstat.js';

export const FORWARDER_ROUTERS = (): RouterSpec[] => [
  bareRelay(),
  bareRelay(2),
  quicLbRouter('plaintext'),
  quicLbRouter('four-pass'),
  quicLbRouter('plaintext', 2),
  quicLbRouter('four-pass', 2),
];

/** What the forwarder run needs of an engine (the Node Engine and the NativeEngine both have it). */
interface TrialEngine {
  setup(): Promise<void>;
  close(): Promise<void>;
  start(spec: RouterSpec, index: number): Promise<RouterHandle>;
  sinkTarget(i: number): Target;
  trial(spec: RouterSpec | undefined, handle: RouterHandle | undefined, o: TrialOptions, target?: Target): Promise<TrialResult>;
}

export const NATIVE_LOAD_TOOLS = 'native (bench/native: udp-blast, paced sendmmsg batches of 32 from one socket per connection; udp-sink, recvmmsg; one-way latency, no round trip)';
export const NODE_LOAD_TOOLS = 'Node generator and sinks (worker threads of the harness)';

export async function runForwarderBench(o: { profile: Profile; routers: RouterSpec[]; log: (s: string) => void; preliminary: boolean; note: string; command: string; native?: NativeTools }): Promise<BenchResults> {
  const t0 = Date.now();
  const p = o.profile;
  const res = baseResults({ kind: 'forwarder', profile: p.name, preliminary: o.preliminary, note: o.note, command: o.command });
  res.params = { connections: p.conns, packet_size: p.packetSize, trial_ms: p.trialMs, loss_threshold: p.lossThreshold, rate_factor: p.rateFactor, load_tools: o.native ? NATIVE_LOAD_TOOLS : NODE_LOAD_TOOLS };
  const tmp = mkdtempSync(path.join(tmpdir(), 'quic-lb-bench-native-'));
  const engine: TrialEngine = o.native
    ? new NativeEngine(o.native, { conns: p.conns, packetSize: p.packetSize, seed: p.seed, tmp })
    : new Engine({ conns: p.conns, packetSize: p.packetSize, seed: p.seed, maxFlows: p.conns, needRedis: false });
  const running: { spec: RouterSpec; handle: RouterHandle }[] = [];
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
    const direct = await engine.trial(undefined, undefined, { rate: p.latencyRate, durationMs: p.latencyMs, echo: true }, engine.sinkTarget(0));
    res.direct = { p50_us: direct.p50_us, p99_us: direct.p99_us, rtt_p50_us: direct.rtt_p50_us, rtt_p99_us: direct.rtt_p99_us };
    const search = await rateSearch(engine, running, p, o.log);
    for (const r of running) {
      const s = search.get(r.spec.id)!;
      res.rate_search[r.spec.id] = s.steps;
      const lat = await engine.trial(r.spec, r.handle, { rate: p.latencyRate, durationMs: p.latencyMs, echo: true });
      const b = s.best;
      res.results.push({
        router: r.spec.id,
        scenario: 'steady',
        pps: b?.pps ?? 0,
        offered_pps: b?.offered_pps ?? 0,
        loss: round(b?.loss ?? 1, 5)!,
        cpu_us_per_packet: b?.cpu_us_per_packet ?? null,
        redis_cpu_us_per_packet: null,
        p50_us: lat.p50_us,
        p99_us: lat.p99_us,
        added_p50_us: lat.p50_us === null || direct.p50_us === null ? null : round(lat.p50_us - direct.p50_us, 1),
        added_p99_us: lat.p99_us === null || direct.p99_us === null ? null : round(lat.p99_us - direct.p99_us, 1),
        correct_ratio: lat.correct_ratio,
        misdelivered: lat.misdelivered + (b?.misdelivered ?? 0),
        rss_mb: b?.rss_mb ?? lat.rss_mb,
        redis_mem_mb: null,
        rtt_p50_us: lat.rtt_p50_us,
        rtt_p99_us: lat.rtt_p99_us,
        echo_ratio: lat.echo_ratio,
      });
    }
    if (engine instanceof NativeEngine) {
      // What the load itself costs: the CPU the router cannot have on a 2-core machine. Taken
      // from the trials at high rates (at least half the highest offered rate): at low rates the
      // per-wakeup costs dominate, as for the routers.
      const top = Math.max(0, ...engine.loadCpu.map((c) => c.pps));
      const high = engine.loadCpu.filter((c) => c.pps >= top / 2);
      const med = (v: number[]): number | null => (v.length ? round([...v].sort((x, y) => x - y)[v.length >> 1], 2) : null);
      res.params.load_tools_cpu_us_per_packet = { blast: med(high.map((c) => c.blast)), sink: med(high.map((c) => c.sink)), from_pps: Math.round(top / 2) };
    }
  } finally {
    for (const r of running) await r.handle.stop().catch(() => {});
    await engine.close();
    rmSync(tmp, { recursive: true, force: true });
  }
  const pps = (id: string): number | undefined => res.results.find((r) => r.router === id)?.pps;
  const capped = (id: string): boolean => searchCapped(res.rate_search[id]);
  const check = (name: string, a: string, b: string, min: number): void => {
    const x = pps(a);
    const y = pps(b);
    const v = x === undefined || y === undefined || y === 0 ? null : round(x / y, 3);
    res.ratios[`${a}/${b} pps`] = v;
    const t: TargetCheck = { name, value: v, target: `>= ${min}`, pass: v === null || capped(a) || capped(b) ? null : v >= min };
    res.targets.push(t);
  };
  check('plaintext, 1 worker vs bare relay', 'quic-lb-plaintext', 'bare-relay', 0.9);
  check('four-pass, 1 worker vs bare relay', 'quic-lb-four-pass', 'bare-relay', 0.85);
  check('plaintext, 2 workers vs 1 worker', 'quic-lb-plaintext-w2', 'quic-lb-plaintext', 1.4);
  check('four-pass, 2 workers vs 1 worker', 'quic-lb-four-pass-w2', 'quic-lb-four-pass', 1.4);
  // Same runtime, same process model: the honest yardstick for the worker scaling.
  const ratio = (a: string, b: string): void => {
    const x = pps(a);
    const y = pps(b);
    res.ratios[`${a}/${b} pps`] = x === undefined || y === undefined || y === 0 ? null : round(x / y, 3);
  };
  ratio('bare-relay-w2', 'bare-relay');
  ratio('quic-lb-plaintext-w2', 'bare-relay-w2');
  ratio('quic-lb-four-pass-w2', 'bare-relay-w2');
  for (const id of ['quic-lb-plaintext', 'quic-lb-four-pass']) {
    const a = res.results.find((r) => r.router === id)?.cpu_us_per_packet;
    const b = res.results.find((r) => r.router === 'bare-relay')?.cpu_us_per_packet;
    res.ratios[`${id}/bare-relay cpu_us_per_packet`] = a && b ? round(a / b, 3) : null;
  }
  res.duration_s = Math.round((Date.now() - t0) / 1000);
  return res;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = parseArgs(process.argv.slice(2));
  const base = withOverrides(PROFILES[args.has('full') ? 'full' : 'quick'], args);
  // Throughput only: longer steps, finer rate steps than the routing profile; a failed step is
  // retried once; a ceiling far above what two workers reach (the native tools offer more than 150 k/s).
  const profile: Profile = { ...base, trialMs: args.has('full') ? 3000 : 1200, rateStart: args.has('rate-start') ? base.rateStart : 20_000, rateMax: 400_000, rateFactor: args.has('full') ? 1.1 : 1.25, retryFailedStep: true, refineSteps: args.has('full') ? 4 : 3, latencyMs: 1000 };
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  // Whether the machine is busy now (the load average still counts a benchmark that just ended).
  const busy = await busyCores();
  const native = nativeToolsFromArgs(args, log);
  log(native ? 'load tools: native udp-blast / udp-sink (bench/native, cc -O2)' : 'load tools: Node generator and sinks');
  const note = [args.get('note') ?? '', busyNote(busy)].filter(Boolean).join(' ');
  ensureBuilt(log);
  const res = await runForwarderBench({
    profile,
    routers: FORWARDER_ROUTERS(),
    log,
    preliminary: args.has('preliminary') || busy > 0.5,
    note,
    native,
    command: `npm run bench:forwarder${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  });
  const files = writeReport(res, path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results')), 'forwarder');
  log(`wrote ${files.map((f) => path.relative(repoRoot, f)).join(', ')}`);
  if (!args.has('no-readme') && !args.has('out') && updateReadmeFromResults(repoRoot)) log('updated the README bench section');
  for (const t of res.targets) log(`target: ${t.name}: ${t.value} (${t.target}) ${t.pass === null ? '' : t.pass ? 'met' : 'NOT met'}`);
  for (const s of res.skipped) log(`skipped ${s.router}: ${s.reason}`);
}
