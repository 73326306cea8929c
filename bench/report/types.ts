// The results file (bench/results/latest.json): what the harness writes and the report reads.

export interface ResultRow {
  router: string;
  scenario: string;
  /** steady: highest forwarded packets/s with loss <= threshold; other scenarios: forwarded packets/s at the scenario rate. */
  pps: number;
  offered_pps: number;
  loss: number;
  /** Router process tree CPU (user+system) per forwarded packet; null across a restart. */
  cpu_us_per_packet: number | null;
  /** redis-server CPU per forwarded packet (Redis routers only). */
  redis_cpu_us_per_packet: number | null;
  /**
   * One-way latency generator -> backend (µs), this router's own percentiles. Reported next to
   * the direct path's (BenchResults.direct) and the bare relay's, never subtracted from them:
   * the difference of two distributions' percentiles is no packet's latency and can be negative.
   */
  p50_us: number | null;
  p99_us: number | null;
  /** Share of delivered packets that reached the backend owning their connection. */
  correct_ratio: number | null;
  misdelivered: number;
  /** Packets of connections whose backend left the pool, delivered elsewhere (not in correct_ratio). */
  orphaned?: number;
  rss_mb: number;
  redis_mem_mb: number | null;
  /** Round trip through the router and back through its return path (steady state; echoing sinks). */
  rtt_p50_us?: number | null;
  rtt_p99_us?: number | null;
  /** Echoes that came back to the generator / packets the sinks reflected. */
  echo_ratio?: number | null;
  note?: string;
}

export interface RateStep {
  rate: number;
  offered_pps: number;
  pps: number;
  loss: number;
  cpu_us_per_packet: number | null;
  pass: boolean;
  /** The generator could not offer 90 % of the rate (the step says nothing about the router). */
  generator_bound?: boolean;
  /** Which search of the router this step belongs to (runs with several rounds). */
  round?: number;
}

/** One rate search's outcome: the highest rate held and the CPU per packet there. */
export interface RoundResult {
  pps: number;
  cpu_us_per_packet: number | null;
}

export interface MemoryPoint {
  connections: number;
  rss_mb: number;
  redis_mem_mb: number | null;
  redis_keys: number | null;
}

export interface TargetCheck {
  name: string;
  value: number | null;
  target: string;
  pass: boolean | null;
}

export interface RouterInfo {
  id: string;
  label: string;
  family: string;
  workers: number;
}

export interface BenchResults {
  schema: 1;
  kind: 'routing' | 'forwarder';
  profile: string;
  preliminary: boolean;
  note: string;
  date: string;
  commit: string;
  node: string;
  machine: { cpu_model: string; cores: number; kernel: string; loadavg_start: number[] };
  command: string;
  params: Record<string, unknown>;
  routers: RouterInfo[];
  results: ResultRow[];
  rate_search: Record<string, RateStep[]>;
  /** Per router (and phase suffix, e.g. `@budget`), each round's result; `results` holds the medians. */
  rounds?: Record<string, RoundResult[]>;
  memory: Record<string, MemoryPoint[]>;
  /** The same latency trial without a router (generator -> sink): the floor every router's row is read against. */
  direct: { p50_us: number | null; p99_us: number | null; rtt_p50_us?: number | null; rtt_p99_us?: number | null };
  ratios: Record<string, number | null>;
  targets: TargetCheck[];
  skipped: { router: string; reason: string }[];
  duration_s: number;
}
