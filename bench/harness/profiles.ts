// Run profiles: `quick` (npm run bench, under 3 minutes), `full` (npm run bench -- --full) and
// `tiny` (the harness's own end-to-end test: a few seconds).

export type ScenarioId =
  'steady' | 'nat-rebinding' | 'migration' | 'lb-restart' | 'redis-restart' | 'pool-change' | 'ecmp';

export interface Profile {
  name: 'quick' | 'full' | 'tiny';
  conns: number;
  packetSize: number;
  seed: number;
  /** Duration of one rate-search step. */
  trialMs: number;
  /** Offered rates tried in the search: start, multiplied by `rateFactor` up to `rateMax`. */
  rateStart: number;
  rateFactor: number;
  rateMax: number;
  /** Loss above which a rate is not held (0.1 %). */
  lossThreshold: number;
  /** A failed step is run once more before the search stops (noise on a shared machine). */
  retryFailedStep: boolean;
  /** Bisection steps between the last held and the first failed rate. */
  refineSteps: number;
  /** Bisection stops once the first failed rate is within this factor of the best held one (default 1.06). */
  refineStop?: number;
  /** Fixed offered rate for the latency measurement and the scenarios. */
  latencyRate: number;
  latencyMs: number;
  scenarioRate: number;
  scenarioMs: number;
  scenarios: ScenarioId[];
  /** Share of connections that change source port (nat-rebinding) or migrate (migration); at most 0.5. */
  rebindShare: number;
  /** Router ids measured in the scenarios (the rate search runs every router). */
  scenarioRouters: string[];
  /** Cumulative flow counts of the memory curve, and the routers it runs on. */
  memorySteps: number[];
  memoryRouters: string[];
  churnRate: number;
}

const SCENARIO_ROUTERS_ALL = [
  'quic-lb-plaintext',
  'quic-lb-single-pass',
  'quic-lb-four-pass',
  'redis-per-packet',
  'redis-cache',
  'nginx',
  'bare-relay',
];

/**
 * Applies command-line overrides: --conns, --size (bytes per packet), --rate-start, --trial-ms,
 * --scenario-rate, --scenario-ms, --rebind-share, --memory-steps 1000,10000,...
 */
export function withOverrides(p: Profile, args: Map<string, string>): Profile {
  const num = (k: string, v: number): number => (args.has(k) ? Number(args.get(k)) : v);
  const out: Profile = {
    ...p,
    conns: num('conns', p.conns),
    packetSize: num('size', p.packetSize),
    rateStart: num('rate-start', p.rateStart),
    trialMs: num('trial-ms', p.trialMs),
    scenarioRate: num('scenario-rate', p.scenarioRate),
    scenarioMs: num('scenario-ms', p.scenarioMs),
    rebindShare: num('rebind-share', p.rebindShare),
    memorySteps: args.has('memory-steps') ? args.get('memory-steps')!.split(',').map(Number) : p.memorySteps,
  };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v === 'number' && !(v >= 0)) throw new Error(`bench: --${k} must be a non-negative number`);
  }
  if (out.conns < 1 || out.conns > 100_000)
    throw new Error('bench: --conns must be 1..100000 (one socket each; see ulimit -n)');
  if (out.packetSize < 64 || out.packetSize > 1472) throw new Error('bench: --size must be 64..1472 bytes');
  if (out.rebindShare > 0.5) throw new Error('bench: --rebind-share must be at most 0.5');
  return out;
}

export const PROFILES: Record<Profile['name'], Profile> = {
  quick: {
    name: 'quick',
    conns: 500,
    packetSize: 1200,
    seed: 20260101,
    trialMs: 700,
    rateStart: 10_000,
    rateFactor: 1.5,
    rateMax: 300_000,
    lossThreshold: 0.001,
    retryFailedStep: true,
    refineSteps: 3,
    latencyRate: 5000,
    latencyMs: 800,
    scenarioRate: 4000,
    scenarioMs: 1200,
    // redis-restart last: it empties the Redis map the Redis routers' later trials would start from.
    scenarios: ['steady', 'nat-rebinding', 'lb-restart', 'pool-change', 'ecmp', 'redis-restart'],
    scenarioRouters: ['quic-lb-plaintext', 'quic-lb-four-pass', 'redis-per-packet', 'redis-cache', 'nginx'],
    rebindShare: 0.1,
    memorySteps: [1000, 10_000, 100_000],
    memoryRouters: ['quic-lb-plaintext', 'redis-per-packet', 'redis-cache', 'nginx'],
    churnRate: 20_000,
  },
  full: {
    name: 'full',
    conns: 2000,
    packetSize: 1200,
    seed: 20260101,
    trialMs: 2500,
    rateStart: 8000,
    rateFactor: 1.2,
    rateMax: 250_000,
    lossThreshold: 0.001,
    retryFailedStep: true,
    refineSteps: 3,
    latencyRate: 5000,
    latencyMs: 3000,
    scenarioRate: 5000,
    scenarioMs: 4000,
    scenarios: ['steady', 'nat-rebinding', 'migration', 'lb-restart', 'pool-change', 'ecmp', 'redis-restart'],
    scenarioRouters: SCENARIO_ROUTERS_ALL,
    rebindShare: 0.1,
    memorySteps: [1000, 10_000, 50_000, 100_000, 200_000],
    memoryRouters: ['quic-lb-plaintext', 'quic-lb-four-pass', 'redis-per-packet', 'redis-cache', 'nginx'],
    churnRate: 20_000,
  },
  tiny: {
    name: 'tiny',
    conns: 100,
    packetSize: 1200,
    seed: 7,
    trialMs: 300,
    rateStart: 3000,
    rateFactor: 2,
    rateMax: 6000,
    // A harness self-test, often on a loaded CI machine: only gross loss fails a step.
    lossThreshold: 0.05,
    retryFailedStep: false,
    refineSteps: 0,
    latencyRate: 2000,
    latencyMs: 300,
    scenarioRate: 2000,
    scenarioMs: 500,
    scenarios: ['steady', 'nat-rebinding'],
    scenarioRouters: SCENARIO_ROUTERS_ALL,
    rebindShare: 0.1,
    memorySteps: [200],
    memoryRouters: SCENARIO_ROUTERS_ALL,
    churnRate: 5000,
  },
};
