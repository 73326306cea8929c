// The routing benchmark: every router through the same traffic, alternately, in one run.
import { execSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { machineInfo } from '../lib/procstat.js';
import type { BenchResults, MemoryPoint, RateStep, ResultRow, TargetCheck } from '../report/types.js';
import { Engine, INITIAL_POOL, round, type TrialOptions, type TrialResult } from './engine.js';
import type { Target } from '../load/generator.js';
import type { Profile, ScenarioId } from './profiles.js';
import { repoRoot } from './build.js';
import type { RouterHandle, RouterSpec } from './routers.js';
import { NativeEngine, type NativeTools } from '../native/native.js';
import { minNull } from '../lib/stats.js';

export interface SuiteOptions {
  profile: Profile;
  routers: RouterSpec[];
  /**
   * Native load tools (bench/native): when given, the rate search runs on them (udp-blast and
   * udp-sink cost a fraction of the Node generator's CPU per packet, so the routers, not the load,
   * run out of CPU); latency, echo, scenarios and memory stay on the Node generator, which
   * does handshakes, replies and events.
   */
  native?: NativeTools;
  log: (s: string) => void;
  preliminary: boolean;
  note: string;
  command: string;
}

/** The lowest offered rate the search tries. */
const MIN_RATE = 1000;

/** The pool after "a backend added and one removed": sink 3 leaves, sink 4 joins. */
export const CHANGED_POOL = [0, 1, 2, 4];

const SCENARIO_NOTES: Record<ScenarioId, string> = {
  steady: 'highest rate with loss <= threshold; latency at the fixed latency rate',
  'nat-rebinding': 'a share of the connections (default 10 %) change source port at mid-run',
  migration:
    'a share of the connections (default 10 %) move to a new source port with a new CID (same backend) at mid-run',
  'lb-restart': 'router process tree SIGKILLed and restarted at 1/3 of the run; loss includes the downtime',
  'redis-restart': 'redis-server killed and restarted empty at 1/3 of the run',
  'pool-change': 'backend sink3 removed (its connections end) and sink4 added at mid-run',
  ecmp: 'a second router instance; half the flows switch to it at mid-run (ECMP path change)',
};

export function commitId(): string {
  try {
    const id = execSync('git rev-parse --short HEAD', { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execSync('git status --porcelain -- src bench', { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${id}+dirty` : id;
  } catch {
    return 'unknown';
  }
}

export function baseResults(o: {
  kind: 'routing' | 'forwarder';
  profile: string;
  preliminary: boolean;
  note: string;
  command: string;
}): BenchResults {
  return {
    schema: 1,
    kind: o.kind,
    profile: o.profile,
    preliminary: o.preliminary,
    note: o.note,
    date: new Date().toISOString(),
    commit: commitId(),
    node: process.version,
    machine: { ...machineInfo(), loadavg_start: loadavg().map((l) => round(l, 2)!) },
    command: o.command,
    params: {},
    routers: [],
    results: [],
    rate_search: {},
    memory: {},
    direct: { p50_us: null, p99_us: null, rtt_p50_us: null, rtt_p99_us: null },
    ratios: {},
    targets: [],
    skipped: [],
    duration_s: 0,
  };
}

/** A result row: the trial's own figures (latency percentiles are never offset by another trial's). */
function row(router: string, scenario: string, t: TrialResult, note?: string): ResultRow {
  return {
    router,
    scenario,
    pps: t.pps,
    offered_pps: t.offered_pps,
    loss: round(t.loss, 5)!,
    cpu_us_per_packet: t.cpu_us_per_packet,
    redis_cpu_us_per_packet: t.redis_cpu_us_per_packet,
    p50_us: t.p50_us,
    p99_us: t.p99_us,
    correct_ratio: t.correct_ratio,
    misdelivered: t.misdelivered,
    orphaned: t.orphaned,
    rss_mb: t.rss_mb,
    redis_mem_mb: t.redis_mem_mb,
    rtt_p50_us: t.rtt_p50_us,
    rtt_p99_us: t.rtt_p99_us,
    echo_ratio: t.echo_ratio,
    ...(note ? { note } : {}),
  };
}

/**
 * Raises each candidate's offered rate step by step (× rateFactor), the candidates taking turns
 * at each step, until a step fails (loss above the threshold, or the generator could not offer
 * the rate; a failed step is retried once when the profile says so); then narrows the gap
 * between the last held and the first failed rate by bisection (`refineSteps` times). Returns
 * each candidate's steps and its best passing trial.
 */
/** What the rate search needs of an engine (the Node Engine and the NativeEngine both have it). */
export interface TrialEngine {
  trial(
    spec: RouterSpec | undefined,
    handle: RouterHandle | undefined,
    o: TrialOptions,
    target?: Target,
  ): Promise<TrialResult>;
}

export async function rateSearch(
  engine: TrialEngine,
  cands: { spec: RouterSpec; handle: RouterHandle }[],
  p: Profile,
  log: (s: string) => void,
): Promise<Map<string, { steps: RateStep[]; best: TrialResult | undefined; bestRate: number }>> {
  const out = new Map<string, { steps: RateStep[]; best: TrialResult | undefined; bestRate: number }>();
  const state = cands.map((c) => ({
    ...c,
    rate: p.rateStart,
    done: false,
    retried: false,
    failedAt: 0,
    refinements: 0,
  }));
  for (const c of cands) out.set(c.spec.id, { steps: [], best: undefined, bestRate: 0 });
  while (state.some((s) => !s.done)) {
    for (const s of state) {
      if (s.done) continue;
      const t = await engine.trial(s.spec, s.handle, { rate: s.rate, durationMs: p.trialMs });
      // The generator shares the CPUs: below 90 % of the asked rate it could not offer it.
      const kept = t.offered_pps >= 0.9 * s.rate;
      const pass = kept && t.loss <= p.lossThreshold;
      const r = out.get(s.spec.id)!;
      r.steps.push({
        rate: s.rate,
        offered_pps: t.offered_pps,
        pps: t.pps,
        loss: round(t.loss, 5)!,
        cpu_us_per_packet: t.cpu_us_per_packet,
        pass,
        generator_bound: !kept,
      });
      log(
        `  ${s.spec.id.padEnd(24)} offered ${String(t.offered_pps).padStart(7)} pps  forwarded ${String(t.pps).padStart(7)}  loss ${(t.loss * 100).toFixed(3)} %  cpu ${t.cpu_us_per_packet ?? '-'} µs/pkt${pass ? '' : kept ? '  (loss above threshold)' : '  (generator could not offer this rate)'}`,
      );
      if (pass && (!r.best || t.pps > r.best.pps)) {
        r.best = t;
        r.bestRate = s.rate;
      }
      if (s.failedAt > 0) {
        // Bisection between the best held rate and the lowest failed one.
        if (!pass) s.failedAt = Math.min(s.failedAt, s.rate);
        s.refinements++;
        const mid = Math.round(Math.sqrt(r.bestRate * s.failedAt));
        if (s.refinements >= p.refineSteps || s.failedAt / r.bestRate < (p.refineStop ?? 1.06)) s.done = true;
        else s.rate = mid;
      } else if (pass) {
        s.retried = false;
        const next = Math.round(s.rate * p.rateFactor);
        if (next > p.rateMax) s.done = true;
        else s.rate = next;
      } else if (p.retryFailedStep && !s.retried) {
        s.retried = true;
      } else if (!r.best && s.rate / 2 >= MIN_RATE) {
        // Not even the first rate held: search downwards.
        s.rate = Math.round(s.rate / 2);
        s.retried = false;
      } else if (r.best && p.refineSteps > 0) {
        s.failedAt = s.rate;
        s.rate = Math.round(Math.sqrt(r.bestRate * s.failedAt));
      } else {
        s.done = true;
      }
    }
  }
  return out;
}

function applies(spec: RouterSpec, scenario: ScenarioId): string | undefined {
  if (scenario === 'redis-restart' && spec.family !== 'redis') return 'no Redis';
  if (spec.family === 'bare' && ['nat-rebinding', 'migration', 'pool-change', 'ecmp'].includes(scenario))
    return 'one backend only';
  return undefined;
}

export async function runScenario(
  engine: Engine,
  spec: RouterSpec,
  index: number,
  handle: RouterHandle,
  scenario: ScenarioId,
  p: Profile,
): Promise<TrialResult> {
  const T = p.scenarioMs;
  const o: TrialOptions = { rate: p.scenarioRate, durationMs: T };
  let second: RouterHandle | undefined;
  switch (scenario) {
    case 'steady':
      o.rate = p.latencyRate;
      o.durationMs = p.latencyMs;
      o.echo = true;
      break;
    case 'nat-rebinding':
      o.events = [{ atMs: T / 2, type: 'rebind', share: p.rebindShare }];
      break;
    case 'migration':
      o.events = [{ atMs: T / 2, type: 'migrate', share: p.rebindShare }];
      break;
    case 'lb-restart':
      // Longer, so the run shows the recovery after a process start (about a second of Node start-up).
      o.durationMs = Math.max(T, 2500);
      o.actions = [{ atMs: o.durationMs / 3, run: () => handle.restart() }];
      o.settleMs = 500;
      break;
    case 'redis-restart':
      o.actions = [{ atMs: T / 3, run: () => engine.redis!.restart() }];
      o.settleMs = 500;
      break;
    case 'pool-change':
      // The sinks learn that sink3 left before the router does. The generator stops sink3's
      // connections at its own T/2, but its clock starts later than the harness's and lags
      // under load, and the router may still hold queued packets: sink3's packets that the new
      // config sends by fallback are orphaned (their connection is gone), not misdelivered.
      o.actions = [
        {
          atMs: T / 2,
          run: async () => {
            await engine.retireSink(3);
            await handle.setPool(CHANGED_POOL);
          },
        },
      ];
      o.events = [{ atMs: T / 2, type: 'retire-owner', sink: 3 }];
      break;
    case 'ecmp':
      second = await engine.start(spec, index, 1);
      o.second = second;
      o.events = [{ atMs: T / 2, type: 'switch', share: 0.5, instance: 1 }];
      break;
  }
  try {
    return await engine.trial(spec, handle, o);
  } finally {
    if (second) await second.stop();
    if (scenario === 'pool-change') await handle.setPool(INITIAL_POOL);
  }
}

export async function runRoutingSuite(o: SuiteOptions): Promise<BenchResults> {
  const t0 = Date.now();
  const p = o.profile;
  const res = baseResults({
    kind: 'routing',
    profile: p.name,
    preliminary: o.preliminary,
    note: o.note,
    command: o.command,
  });
  res.params = {
    connections: p.conns,
    packet_size: p.packetSize,
    seed: p.seed,
    trial_ms: p.trialMs,
    loss_threshold: p.lossThreshold,
    latency_rate_pps: p.latencyRate,
    scenario_rate_pps: p.scenarioRate,
    scenario_ms: p.scenarioMs,
    rebind_share: p.rebindShare,
    backends: INITIAL_POOL.length,
    scenarios: Object.fromEntries(p.scenarios.map((s) => [s, SCENARIO_NOTES[s]])),
  };
  const maxFlows = Math.max(0, ...p.memorySteps) + p.conns;
  const engine = new Engine({
    conns: p.conns,
    packetSize: p.packetSize,
    seed: p.seed,
    maxFlows,
    needRedis: o.routers.some((r) => r.family === 'redis'),
  });
  const running: { spec: RouterSpec; handle: RouterHandle; index: number }[] = [];
  try {
    await engine.setup();
    for (const [index, spec] of o.routers.entries()) {
      try {
        running.push({ spec, handle: await engine.start(spec, index), index });
        res.routers.push({ id: spec.id, label: spec.label, family: spec.family, workers: spec.workers });
      } catch (e) {
        const reason = (e as Error).message.split('\n').slice(0, 3).join(' ');
        res.skipped.push({ router: spec.id, reason });
        o.log(`skipping ${spec.id}: ${reason}`);
      }
    }

    o.log(`direct path (no router) at ${p.latencyRate} pps`);
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

    let search: Awaited<ReturnType<typeof rateSearch>>;
    if (o.native) {
      search = await nativeRateSearch(o.native, engine, running, p, o.log);
      res.params.rate_search_load = 'native';
      res.params.load_tools =
        "rate search on the native tools (bench/native: udp-blast, paced sendmmsg, one socket per connection; udp-sink, recvmmsg, a flow's first backend is its owner unless its CID names one); " +
        'latency, round trip, scenarios and memory on the Node generator and sinks (handshake Initials, echo, rebinding and path events)';
    } else {
      o.log('rate search (candidates alternate at each step)');
      search = await rateSearch(engine, running, p, o.log);
      res.params.rate_search_load = 'node';
      res.params.load_tools = 'the Node generator and sinks (bench/load, bench/sink) for every measurement';
    }

    for (const scenario of p.scenarios) {
      o.log(`scenario ${scenario}`);
      for (const r of running) {
        if (scenario !== 'steady' && !p.scenarioRouters.includes(r.spec.id)) continue;
        const na = applies(r.spec, scenario);
        if (na) continue;
        const t = await runScenario(engine, r.spec, r.index, r.handle, scenario, p);
        if (scenario === 'steady') {
          const s = search.get(r.spec.id)!;
          res.rate_search[r.spec.id] = s.steps;
          const best = s.best;
          const merged: TrialResult = best
            ? {
                ...t,
                pps: best.pps,
                offered_pps: best.offered_pps,
                loss: best.loss,
                cpu_us_per_packet: best.cpu_us_per_packet,
                redis_cpu_us_per_packet: best.redis_cpu_us_per_packet,
                rss_mb: best.rss_mb,
                correct_ratio: minNull(best.correct_ratio, t.correct_ratio),
                misdelivered: best.misdelivered + t.misdelivered,
              }
            : { ...t, pps: 0 };
          res.results.push(
            row(r.spec.id, scenario, merged, best ? undefined : 'no rate held loss under the threshold'),
          );
        } else {
          res.results.push(row(r.spec.id, scenario, t));
        }
        const last = res.results[res.results.length - 1];
        o.log(
          `  ${r.spec.id.padEnd(24)} ${String(last.pps).padStart(7)} pps  loss ${(last.loss * 100).toFixed(2)} %  correct ${last.correct_ratio === null ? '-' : (last.correct_ratio * 100).toFixed(2)} %  p50 ${last.p50_us ?? '-'} µs  p99 ${last.p99_us ?? '-'} µs`,
        );
      }
    }

    o.log('memory as flows grow');
    for (const r of running) {
      if (!p.memoryRouters.includes(r.spec.id)) continue;
      res.memory[r.spec.id] = await memoryCurve(
        engine,
        r.handle,
        p,
        r.spec.family === 'redis' ? (r.spec.redisDb ?? 0) : undefined,
      );
      o.log(
        `  ${r.spec.id.padEnd(24)} ${res.memory[r.spec.id].map((m) => `${m.connections}: ${m.rss_mb} MB${m.redis_mem_mb !== null ? ` (+redis ${m.redis_mem_mb} MB)` : ''}`).join('  ')}`,
      );
    }
  } finally {
    for (const r of running) await r.handle.stop().catch(() => {});
    await engine.close();
  }
  summarise(res);
  res.duration_s = Math.round((Date.now() - t0) / 1000);
  return res;
}

/**
 * The rate search on the native load tools: every router started again, pointed at the native
 * sinks (same pool, same schemes, Redis routers on the same redis-server), searched, stopped;
 * Redis is emptied afterwards so the rest of the run starts from the state it would have had.
 */
async function nativeRateSearch(
  tools: NativeTools,
  engine: Engine,
  routers: { spec: RouterSpec }[],
  p: Profile,
  log: (s: string) => void,
): Promise<Awaited<ReturnType<typeof rateSearch>>> {
  const native = new NativeEngine(tools, {
    conns: p.conns,
    packetSize: p.packetSize,
    seed: p.seed,
    tmp: engine.tmpDir,
    redis: engine.redis,
    hostBase: 150,
    maxFlows: engine.env.maxFlows,
  });
  const cands: { spec: RouterSpec; handle: RouterHandle }[] = [];
  try {
    await native.setup();
    for (const [index, { spec }] of routers.entries()) cands.push({ spec, handle: await native.start(spec, index) });
    log('rate search on the native load tools (candidates alternate at each step)');
    return await rateSearch(native, cands, p, log);
  } finally {
    for (const c of cands) await c.handle.stop().catch(() => {});
    await native.close();
    await engine.flushRedis().catch(() => {});
  }
}

async function memoryCurve(
  engine: Engine,
  handle: RouterHandle,
  p: Profile,
  redisDb: number | undefined,
): Promise<MemoryPoint[]> {
  const redis = redisDb !== undefined;
  const { treeRssBytes } = await import('../lib/procstat.js');
  const points: MemoryPoint[] = [];
  // Redis's memory is the server's: start each Redis router's curve from an empty server, so
  // neither the other variant's map nor earlier trials' mappings weigh on it.
  if (redis) await engine.flushRedis();
  const rss = (): number => round(handle.pids().reduce((a, pid) => a + treeRssBytes(pid), 0) / 1048576, 1)!;
  let flows = 0;
  for (const step of p.memorySteps) {
    await engine.churn(handle.target, step - flows, p.churnRate);
    flows = step;
    await new Promise((r) => setTimeout(r, 300));
    points.push({
      connections: step,
      rss_mb: rss(),
      redis_mem_mb: redis ? round(await engine.redisMemoryMb(), 2) : null,
      redis_keys: redis ? await engine.redisKeys(redisDb) : null,
    });
  }
  return points;
}

/**
 * True when a search says nothing about the router's limit: it never failed (stopped at the
 * profile's highest rate) or its lowest failure was the generator's, not the router's.
 */
export function searchCapped(steps: RateStep[] | undefined): boolean {
  if (!steps?.length) return false;
  const failed = steps.filter((x) => !x.pass);
  if (!failed.length) return true;
  const lowest = failed.reduce((a, b) => (b.rate < a.rate ? b : a));
  return lowest.generator_bound === true;
}

/** Ratios between routers and the issue's targets, from the rows. */
export function summarise(res: BenchResults): void {
  const get = (router: string, scenario: string): ResultRow | undefined =>
    res.results.find((r) => r.router === router && r.scenario === scenario);
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
    a === null || a === undefined || b === null || b === undefined || b === 0 ? null : round(a / b, 3);
  const targets: TargetCheck[] = [];
  for (const alg of ['plaintext', 'single-pass', 'four-pass']) {
    const q = get(`quic-lb-${alg}`, 'steady');
    if (!q) continue;
    for (const other of ['redis-per-packet', 'redis-cache', 'bare-relay', 'nginx']) {
      const x = get(other, 'steady');
      if (!x) continue;
      res.ratios[`quic-lb-${alg}/${other} pps`] = ratio(q.pps, x.pps);
      res.ratios[`quic-lb-${alg}/${other} p99`] = ratio(q.p99_us, x.p99_us);
      // CPU per packet is the steadier comparison on a shared machine (rates hit the generator's ceiling).
      res.ratios[`quic-lb-${alg}/${other} cpu_us_per_packet`] = ratio(q.cpu_us_per_packet, x.cpu_us_per_packet);
    }
    // A search that never failed only gives a lower bound (the profile's highest rate): no verdict.
    const capped = (router: string): boolean => searchCapped(res.rate_search[router]);
    const verdict = (v: number | null, other: string, ok: (v: number) => boolean): boolean | null =>
      v === null || capped(`quic-lb-${alg}`) || capped(other) ? null : ok(v);
    const rp = res.ratios[`quic-lb-${alg}/redis-per-packet pps`];
    if (rp !== undefined)
      targets.push({
        name: `quic-lb ${alg} pps vs Redis per packet`,
        value: rp,
        target: '>= 1.8',
        pass: verdict(rp, 'redis-per-packet', (v) => v >= 1.8),
      });
    const rc = res.ratios[`quic-lb-${alg}/redis-cache pps`];
    if (rc !== undefined)
      targets.push({
        name: `quic-lb ${alg} pps vs Redis + local cache`,
        value: rc,
        target: '>= 1.0',
        pass: verdict(rc, 'redis-cache', (v) => v >= 1.0),
      });
    const p99 = res.ratios[`quic-lb-${alg}/redis-per-packet p99`];
    if (p99 !== undefined)
      targets.push({
        name: `quic-lb ${alg} p99 vs Redis per packet`,
        value: p99,
        target: '< 1.0',
        pass: p99 === null ? null : p99 < 1.0,
      });
  }
  for (const r of res.results) {
    if (
      !r.router.startsWith('quic-lb') ||
      !['nat-rebinding', 'migration', 'lb-restart', 'ecmp', 'pool-change'].includes(r.scenario)
    )
      continue;
    targets.push({
      name: `${r.router} correct delivery, ${r.scenario}`,
      value: r.correct_ratio,
      target: '= 1',
      pass: r.correct_ratio === null ? null : r.correct_ratio === 1,
    });
  }
  for (const [router, pts] of Object.entries(res.memory)) {
    if (!router.startsWith('quic-lb') || pts.length < 2) continue;
    const growth = ratio(pts[pts.length - 1].rss_mb, pts[0].rss_mb);
    res.ratios[`${router} rss ${pts[pts.length - 1].connections}/${pts[0].connections} flows`] = growth;
    targets.push({
      name: `${router} RSS ${pts[0].connections} -> ${pts[pts.length - 1].connections} flows`,
      value: growth,
      target: '<= 1.15',
      pass: growth === null ? null : growth <= 1.15,
    });
  }
  res.targets = targets;
}
