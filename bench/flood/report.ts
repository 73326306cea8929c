// The flood benchmark's results (pure): one measurement per round, mode and rate; one row per
// mode and rate (client outcomes pooled over rounds, costs as medians of rounds); the verdicts
// (where the backends saturate without the offload, the highest rate the offload holds, the LB's
// own ceiling); the Markdown report and the stdout table.
import { median } from '../lib/stats.js';
import type { ClientOutcome } from './clients.js';
import type { Mode } from './topology.js';

/** What one step (one round, one mode, one rate) measured. */
export interface StepMeasurement {
  round: number;
  mode: Mode;
  /** Offered spoofed Initials per second (0: no flood, the baseline). */
  rate: number;
  /** The flood's wall time, over which CPU shares are taken. */
  elapsedMs: number;
  /** Attacker: datagrams sent and their IP octets. */
  sent: number;
  sentOctets: number;
  /** IP octets and packets that went toward the spoofed sources (counted in the client namespace). */
  backOctets: number;
  backPackets: number;
  lbCpuUs: number;
  backendCpuUs: number;
  /** Kernel receive-buffer drops in the LB's and the backends' namespaces (UDP RcvbufErrors). */
  lbDrops: number;
  backendDrops: number;
  /** Time the fresh LB and backends took to be ready (both backends up at the LB). */
  startMs: number;
  /** Busy cores of the whole machine during the step (/proc/stat), this bench's own processes included. */
  busyCores: number;
  /** LB metrics that changed during the step (quic_lb_retry_* and the like). */
  lbMetrics: Record<string, number>;
  clients: ClientOutcome[];
}

/** One mode at one rate, over every round. */
export interface FloodRow {
  mode: Mode;
  rate: number;
  rounds: number;
  /** Offered rate the attacker achieved (median of rounds). */
  achieved_rate: number | null;
  attempts: number;
  succeeded: number;
  success_pct: number | null;
  handshake_p50_ms: number | null;
  handshake_p99_ms: number | null;
  /** Share of the successful handshakes whose /bytes/1000 body then arrived whole (within 2 s more). */
  body_pct: number | null;
  /** Share of legitimate clients that saw a Retry. */
  retried_pct: number | null;
  /** CPU in % of one core, medians of rounds: both backends together, and the LB. */
  backend_cpu_pct: number | null;
  lb_cpu_pct: number | null;
  /** LB CPU per spoofed Initial it read (sent minus its kernel's drops), µs (median of rounds; the legitimate traffic's share included). */
  lb_us_per_initial: number | null;
  /** Octets sent toward the spoofed sources per octet received from them (median of rounds). */
  amplification: number | null;
  /** Spoofed datagrams the LB's kernel dropped (its receive buffer full), % of those sent (median). */
  lb_drop_pct: number | null;
  backend_drop_pct: number | null;
  /** Datagrams the LB dropped because no backend was up (health probes lost in the flood), % of those sent (median). */
  no_backend_pct: number | null;
  busy_cores: number | null;
  /** LB metric changes, summed over rounds. */
  lb_metrics: Record<string, number>;
}

export interface FloodVerdict {
  /** Mode off at rate 0: the unloaded handshake time. */
  baseline_p50_ms: number | null;
  /** Lowest rate where, without offload, legitimate success < 99 % or the p50 > baseline + SLOWER_MS; null: none. */
  saturation_rate: number | null;
  /** Per offload mode: the highest rate up to which every rate kept >= 99 % success. */
  held_rate: Partial<Record<Mode, number | null>>;
  /** Per offload mode: whether held_rate >= 10x saturation_rate (null: not decidable from the rates run). */
  target_met: Partial<Record<Mode, boolean | null>>;
  /** Per offload mode: lowest rate where the LB's kernel dropped > 1 % of the flood; null: none tested. */
  lb_ceiling: Partial<Record<Mode, number | null>>;
  /** Per offload mode: the highest flood rate the attacker achieved (its own limit shows here). */
  max_achieved: Partial<Record<Mode, number | null>>;
  /** Per offload mode: every core of the machine was busy at the ceiling (then it is the machine's, not only the LB's). */
  ceiling_machine_busy: Partial<Record<Mode, boolean>>;
}

export interface FloodResults {
  date: string;
  commit: string;
  node: string;
  profile: 'quick' | 'default';
  command: string;
  note: string;
  duration_s: number;
  machine: { cpu_model: string; cores: number; kernel: string; loadavg_start: number[] };
  params: {
    rates: number[];
    /** Extra rates run with the offload always on only, to find the LB's own ceiling. */
    ceiling_rates: number[];
    modes: Mode[];
    rounds: number;
    flood_ms: number;
    legit_rate: number;
    client_window_ms: number;
    deadline_ms: number;
    sources: number;
    /** LB worker processes (`workers`); the load thresholds are per worker. */
    workers: number;
    load: { onPerSecond: number; offPerSecond: number; offAfterMs: number; transitionMs: number };
    backend_retry_key: boolean;
  };
  /** Modes that could not run, with why (e.g. the LB build has no retry offload yet). */
  skipped: Record<string, string>;
  rows: FloodRow[];
  verdict: FloodVerdict;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;
const pct = (a: number, b: number): number | null => (b > 0 ? round1((a / b) * 100) : null);

/** Nearest-rank percentile of plain values (null when empty). */
export function percentileOf(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)];
}

/** The LB's count of datagrams dropped for want of a backend that is up. */
const NO_BACKEND = 'quic_lb_received_packets_total{reason="dropped_no_backend"}';

const ok = (c: ClientOutcome): boolean => c.handshake;

/** Folds the rounds of one mode and rate into a row. */
export function floodRow(steps: readonly StepMeasurement[]): FloodRow {
  const s0 = steps[0];
  const clients = steps.flatMap((s) => s.clients);
  const times = clients.filter(ok).map((c) => c.handshakeMs as number);
  const cpu = (f: (s: StepMeasurement) => number): number | null =>
    median(steps.map((s) => (s.elapsedMs > 0 ? round1((f(s) / 1000 / s.elapsedMs) * 100) : null)));
  const lbMetrics: Record<string, number> = {};
  for (const s of steps) for (const [k, v] of Object.entries(s.lbMetrics)) lbMetrics[k] = (lbMetrics[k] ?? 0) + v;
  const flood = s0.rate > 0;
  return {
    mode: s0.mode,
    rate: s0.rate,
    rounds: steps.length,
    achieved_rate: flood
      ? median(steps.map((s) => (s.elapsedMs > 0 ? Math.round((s.sent * 1000) / s.elapsedMs) : null)))
      : 0,
    attempts: clients.length,
    succeeded: clients.filter(ok).length,
    success_pct: pct(clients.filter(ok).length, clients.length),
    handshake_p50_ms: percentileOf(times, 50),
    handshake_p99_ms: percentileOf(times, 99),
    body_pct: pct(clients.filter((c) => c.body).length, clients.filter(ok).length),
    retried_pct: pct(clients.filter((c) => c.retried).length, clients.length),
    backend_cpu_pct: cpu((s) => s.backendCpuUs),
    lb_cpu_pct: cpu((s) => s.lbCpuUs),
    lb_us_per_initial: flood
      ? median(steps.map((s) => (s.sent > s.lbDrops ? Math.round(s.lbCpuUs / (s.sent - s.lbDrops)) : null)))
      : null,
    amplification: flood
      ? median(steps.map((s) => (s.sentOctets > 0 ? round2(s.backOctets / s.sentOctets) : null)))
      : null,
    lb_drop_pct: flood ? median(steps.map((s) => pct(s.lbDrops, s.sent))) : null,
    backend_drop_pct: flood ? median(steps.map((s) => pct(s.backendDrops, s.sent))) : null,
    no_backend_pct: flood ? median(steps.map((s) => pct(s.lbMetrics[NO_BACKEND] ?? 0, s.sent))) : null,
    busy_cores: median(steps.map((s) => round2(s.busyCores))),
    lb_metrics: lbMetrics,
  };
}

/** Groups steps by mode and rate (in `modes` x `rates` order) into rows. */
export function floodRows(
  steps: readonly StepMeasurement[],
  modes: readonly Mode[],
  rates: readonly number[],
): FloodRow[] {
  const rows: FloodRow[] = [];
  for (const rate of rates)
    for (const mode of modes) {
      const mine = steps.filter((s) => s.mode === mode && s.rate === rate);
      if (mine.length > 0) rows.push(floodRow(mine));
    }
  return rows;
}

/** Legitimate success at least this share (%) counts as held (the issue's target). */
export const HELD_SUCCESS_PCT = 99;
/** A machine counts as fully busy within this many cores of all of them. */
export const MACHINE_BUSY_SLACK = 0.1;
/** Backends count as saturated when the p50 handshake is this much slower than unloaded (ms). */
export const SLOWER_MS = 100;
/** The LB "drops" above this share (%) of the flood lost in its receive buffer. */
export const LB_DROP_PCT = 1;

const held = (r: FloodRow): boolean => r.success_pct !== null && r.success_pct >= HELD_SUCCESS_PCT;

/** The verdicts of the issue's target, from the rows (see FloodVerdict for each definition). */
export function floodVerdict(rows: readonly FloodRow[], cores: number): FloodVerdict {
  const of = (mode: Mode): FloodRow[] => rows.filter((r) => r.mode === mode).sort((a, b) => a.rate - b.rate);
  const off = of('off');
  const baseline = off.find((r) => r.rate === 0)?.handshake_p50_ms ?? null;
  const slow = (r: FloodRow): boolean =>
    baseline !== null && r.handshake_p50_ms !== null && r.handshake_p50_ms > baseline + SLOWER_MS;
  const saturated = off.find((r) => r.rate > 0 && (!held(r) || slow(r)));
  const v: FloodVerdict = {
    baseline_p50_ms: baseline,
    saturation_rate: saturated?.rate ?? null,
    held_rate: {},
    target_met: {},
    lb_ceiling: {},
    max_achieved: {},
    ceiling_machine_busy: {},
  };
  for (const mode of ['load', 'always'] as const) {
    const mine = of(mode).filter((r) => r.rate > 0);
    if (mine.length === 0) continue;
    let best: number | null = null;
    for (const r of mine) {
      if (!held(r)) break;
      best = r.rate;
    }
    v.held_rate[mode] = best;
    const sat = v.saturation_rate;
    v.target_met[mode] =
      sat === null
        ? null
        : best !== null && best >= 10 * sat
          ? true
          : mine.some((r) => r.rate >= 10 * sat)
            ? false
            : null;
    const ceiling = mine.find((r) => r.lb_drop_pct !== null && r.lb_drop_pct > LB_DROP_PCT);
    v.lb_ceiling[mode] = ceiling?.rate ?? null;
    if (ceiling) v.ceiling_machine_busy[mode] = (ceiling.busy_cores ?? 0) >= cores - MACHINE_BUSY_SLACK;
    v.max_achieved[mode] = Math.max(...mine.map((r) => r.achieved_rate ?? 0));
  }
  return v;
}

const dash = (x: number | null | undefined, f: (n: number) => string = String): string =>
  x === null || x === undefined ? '–' : f(x);

const COLUMNS = [
  'rate /s',
  'mode',
  'sent /s',
  'legit ok',
  'hs p50 ms',
  'hs p99 ms',
  'body ok',
  'retried',
  'backends CPU %',
  'LB CPU %',
  'LB µs/Initial',
  'octets out/in',
  'LB drops %',
  'backend drops %',
  'no backend %',
  'busy cores',
];

function cells(r: FloodRow): string[] {
  return [
    String(r.rate),
    r.mode,
    dash(r.achieved_rate),
    `${r.succeeded}/${r.attempts}${r.success_pct === null ? '' : ` (${r.success_pct} %)`}`,
    dash(r.handshake_p50_ms),
    dash(r.handshake_p99_ms),
    r.body_pct === null ? '–' : `${r.body_pct} %`,
    r.retried_pct === null ? '–' : `${r.retried_pct} %`,
    dash(r.backend_cpu_pct),
    dash(r.lb_cpu_pct),
    dash(r.lb_us_per_initial),
    dash(r.amplification),
    dash(r.lb_drop_pct),
    dash(r.backend_drop_pct),
    dash(r.no_backend_pct),
    dash(r.busy_cores),
  ];
}

/** The rows as a Markdown table. */
export function markdownTable(rows: readonly FloodRow[]): string {
  return [
    `| ${COLUMNS.join(' | ')} |`,
    `| ${COLUMNS.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cells(r).join(' | ')} |`),
  ].join('\n');
}

/** The rows as an aligned plain-text table (stdout). */
export function textTable(rows: readonly FloodRow[]): string {
  const all = [COLUMNS, ...rows.map(cells)];
  const widths = COLUMNS.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => r.map((c, i) => c.padStart(widths[i])).join('  ')).join('\n');
}

function targetWords(met: boolean | null | undefined, saturation: number | null): string {
  if (met === null || met === undefined) return ' (10x the saturation rate not decidable from the rates run)';
  return met
    ? ` — target met (>= 10x ${saturation}/s)`
    : ` — target NOT met (10x ${saturation}/s = ${10 * (saturation as number)}/s)`;
}

function ceilingWords(v: FloodVerdict, mode: Mode): string {
  const c = v.lb_ceiling[mode];
  return c === null || c === undefined
    ? `the LB's kernel dropped <= ${LB_DROP_PCT} % of the flood at every rate, up to ${dash(v.max_achieved[mode])}/s sent (the LB's ceiling is above)`
    : `LB ceiling: its kernel drops > ${LB_DROP_PCT} % of the flood from **${c}/s**` +
        (v.ceiling_machine_busy[mode]
          ? ' (every core of the machine was busy there, the attacker and the clients included: a ceiling of this machine, the LB alone may go further)'
          : '');
}

/** The verdict in sentences (report and stdout). */
export function verdictLines(res: FloodResults): string[] {
  const v = res.verdict;
  const lines = [
    `- Unloaded handshake (offload off, no flood): p50 ${dash(v.baseline_p50_ms)} ms.`,
    v.saturation_rate === null
      ? `- Without the offload the backends held every rate tested (up to ${Math.max(...res.params.rates)}/s): no saturation rate.`
      : `- Without the offload the backends saturate at **${v.saturation_rate}/s** (first rate with legitimate success < ${HELD_SUCCESS_PCT} % or a p50 more than ${SLOWER_MS} ms over unloaded).`,
  ];
  if (!res.params.backend_retry_key)
    lines.push(
      "- **This build's demo backend took no `--retry-key-file`**: it cannot open the LB's tokens, so a client that got a Retry aborts (RFC 9000 §7.3: retry_source_connection_id missing). The offload rows measure the LB, not legitimate success.",
    );
  for (const mode of ['load', 'always'] as const) {
    if (!(mode in v.held_rate)) {
      if (res.skipped[mode]) lines.push(`- Offload \`${mode}\`: not run (${res.skipped[mode]}).`);
      continue;
    }
    lines.push(
      `- Offload \`${mode}\`: >= ${HELD_SUCCESS_PCT} % legitimate success up to **${dash(v.held_rate[mode])}/s**` +
        `${targetWords(v.target_met[mode], v.saturation_rate)}; ${ceilingWords(v, mode)}.`,
    );
  }
  return lines;
}

/** bench/results/flood.md */
export function renderFloodMarkdown(res: FloodResults): string {
  const m = res.machine;
  const p = res.params;
  return [
    `# Initial flood with and without the LB's Retry offload (${res.profile} profile)`,
    '',
    res.note ? `> ${res.note}\n` : '',
    `- Date: ${res.date} · commit \`${res.commit}\` · Node ${res.node} · ${res.duration_s} s`,
    `- Machine: ${m.cpu_model}, ${m.cores} cores, Linux ${m.kernel}, load average at start ${m.loadavg_start.join(' / ')}`,
    `- Command: \`${res.command}\``,
    `- Workload: per step a fresh LB (${p.workers} worker${p.workers === 1 ? '' : 's'}, \`retry.mode\` as the row says) and two demo backends in network namespaces${p.backend_retry_key ? " (with the LB's retry key file)" : ''}; ` +
      `real gtlsclient Initials re-sealed under fresh DCIDs from ${p.sources} spoofed random sources (raw sockets) at the row's rate for ${p.flood_ms / 1000} s; ` +
      `meanwhile ${p.legit_rate} legitimate gtlsclient handshakes/s for ${p.client_window_ms / 1000} s, a success when the handshake completes within ${p.deadline_ms} ms (body ok: then /bytes/1000 arrived whole within 2 s more). ` +
      `${p.rounds} round(s), modes interleaved at each rate; client outcomes pooled over rounds, CPU, octet ratio and drops are medians of rounds. ` +
      `Load mode: on above ${p.load.onPerSecond} token-less Initials/s, off below ${p.load.offPerSecond}/s after ${p.load.offAfterMs} ms.`,
    '- Columns: CPU in % of one core over the flood (backends: both together); LB µs/Initial = its CPU time per spoofed Initial it read; octets out/in = IP octets sent toward the spoofed sources per IP octet received from them; LB drops / backend drops = datagrams their kernels dropped (receive buffer full), % of the spoofed ones sent; no backend = datagrams the LB dropped because its health probes saw no backend up, % of those sent; busy cores = the whole machine during the step (this bench included: compare with other runs only as ratios).',
    ...Object.entries(res.skipped).map(([k, why]) => `- Skipped ${k}: ${why}`),
    '',
    '## Verdict',
    '',
    ...verdictLines(res),
    '',
    '## Per rate and mode',
    '',
    markdownTable(res.rows),
    '',
  ].join('\n');
}
