// The session benchmark's results: one row per design and session count (pure: `sessionRow`
// derives it from what a run measured), the Markdown tables, the SVG charts and the README
// section. Latency columns are each row's own percentiles, beside the direct path's row of the
// same session count; nothing subtracts one distribution's percentile from another's.
import { formatNumber, groupedBarChart, lineChart } from '../report/svg.js';
import type { SessionTally } from './accounting.js';

export interface SessionRow {
  design: string;
  label: string;
  sessions: number;
  /** Sessions whose handshake gave them an owner. */
  established: number;
  durationMs: number;
  /** Frames per second each session actually sent (50 asked: lower means the load generator fell behind). */
  frame_rate: number;
  /** CPU of the forwarding tier during the frames, in % of one core per 1000 sessions (startup after the restart excluded). */
  tier_cpu_pct_per_1000: number | null;
  /** CPU of the tier during the handshakes, µs per session. */
  handshake_cpu_us_per_session: number | null;
  redis_cpu_pct_per_1000: number | null;
  /** Handshake datagrams sent through the tier. */
  handshake_datagrams: number;
  /** Frames (both ways) that came through the tier, as the backends and clients saw them. */
  frames_via_tier: number;
  /** Frames the backends received (wherever they came from) plus echoes the clients received. */
  frames_carried: number;
  p50_us: number | null;
  p99_us: number | null;
  rtt_p50_us: number | null;
  rtt_p99_us: number | null;
  /** Resident memory of the tier: the larger of before the restart and at the end. */
  rss_mb: number | null;
  redis_mem_mb: number | null;
  tally: SessionTally;
}

export interface SessionMeasurement {
  design: { id: string; label: string };
  durationMs: number;
  elapsedMs: number;
  tally: SessionTally;
  tierCpuUs: number | null;
  handshakeCpuUs: number | null;
  redisCpuUs: number | null;
  handshakeDatagrams: number;
  upViaTier: number;
  downViaTier: number;
  /** Frames the backends received, at their owner or not. */
  received: number;
  /** Echoes the clients received. */
  answered: number;
  p50Us: number | null;
  p99Us: number | null;
  rttP50Us: number | null;
  rttP99Us: number | null;
  rssBytes: number | null;
  redisMemMb: number | null;
}

export interface SessionResults {
  date: string;
  commit: string;
  node: string;
  profile: string;
  command: string;
  note: string;
  duration_s: number;
  machine: { cpu_model: string; cores: number; kernel: string; loadavg_start: number[] };
  seed: number;
  rebind_share: number;
  duration_ms: number;
  sizes: number[];
  rows: SessionRow[];
}

function round(v: number | null, digits: number): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** CPU time `us` over `ms` of wall time for `sessions` sessions, as % of one core per 1000 sessions. */
export function pctPer1000(us: number | null, ms: number, sessions: number): number | null {
  if (us === null || !(ms > 0) || !(sessions > 0)) return null;
  return round(((us / (ms * 1000)) * 100 * 1000) / sessions, 3);
}

export function sessionRow(m: SessionMeasurement): SessionRow {
  const n = m.tally.established;
  return {
    design: m.design.id,
    label: m.design.label,
    sessions: m.tally.sessions,
    established: n,
    durationMs: m.durationMs,
    frame_rate: n > 0 && m.elapsedMs > 0 ? round(m.tally.framesSent / n / (m.elapsedMs / 1000), 1)! : 0,
    tier_cpu_pct_per_1000: pctPer1000(m.tierCpuUs, m.elapsedMs, n),
    handshake_cpu_us_per_session: m.handshakeCpuUs !== null && n > 0 ? round(m.handshakeCpuUs / n, 1) : null,
    redis_cpu_pct_per_1000: pctPer1000(m.redisCpuUs, m.elapsedMs, n),
    handshake_datagrams: m.handshakeDatagrams,
    frames_via_tier: m.upViaTier + m.downViaTier,
    frames_carried: m.received + m.answered,
    p50_us: round(m.p50Us, 1),
    p99_us: round(m.p99Us, 1),
    rtt_p50_us: round(m.rttP50Us, 1),
    rtt_p99_us: round(m.rttP99Us, 1),
    rss_mb: m.rssBytes !== null ? round(m.rssBytes / 1048576, 1) : null,
    redis_mem_mb: round(m.redisMemMb, 2),
    tally: m.tally,
  };
}

const dash = (v: number | null | undefined, f: (x: number) => string = String): string =>
  v === null || v === undefined ? '–' : f(v);
const pct = (a: number, b: number): string => (b > 0 ? `${((a / b) * 100).toFixed(1)} %` : '–');

/** Cost table: CPU, frames through the tier, latency, memory. */
export function costTable(rows: SessionRow[]): string {
  const out = [
    '| design | sessions | frames/s each | tier CPU, % core per 1000 sessions | Redis CPU, % per 1000 | handshake CPU µs/session | handshake datagrams via tier | frames via tier | share via tier | one-way p50 µs | p99 µs | RTT p50 µs | RTT p99 µs | tier RSS MB | Redis MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows)
    out.push(
      `| ${r.label} | ${r.established}/${r.sessions} | ${r.frame_rate} | ${dash(r.tier_cpu_pct_per_1000)} | ${dash(r.redis_cpu_pct_per_1000)} | ${dash(r.handshake_cpu_us_per_session)} | ${r.handshake_datagrams.toLocaleString('en-US')} | ${r.frames_via_tier.toLocaleString('en-US')} | ${pct(r.frames_via_tier, r.frames_carried)} | ${dash(r.p50_us)} | ${dash(r.p99_us)} | ${dash(r.rtt_p50_us)} | ${dash(r.rtt_p99_us)} | ${dash(r.rss_mb)} | ${dash(r.redis_mem_mb)} |`,
    );
  return out.join('\n');
}

/** Session table: who lost frames, who broke, where. */
export function sessionTable(rows: SessionRow[]): string {
  const out = [
    '| design | sessions | rebound | lost frames (steady / rebind / restart) | sessions with losses: steady | at rebinding | at restart | broken at rebinding | broken at restart | broken otherwise |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const t = r.tally;
    out.push(
      `| ${r.label} | ${t.established}/${t.sessions} | ${t.rebound} | ${t.lostFrames.steady} / ${t.lostFrames.rebind} / ${t.lostFrames.restart} | ${t.lostSessions.steady} | ${t.lostSessions.rebind} | ${t.lostSessions.restart} | ${t.broken.rebind} | ${t.broken.restart} | ${t.broken.steady} |`,
    );
  }
  return out.join('\n');
}

function designs(res: SessionResults): { id: string; label: string }[] {
  const seen = new Map<string, string>();
  for (const r of res.rows) seen.set(r.design, r.label);
  return [...seen].map(([id, label]) => ({ id, label }));
}

export function sessionCharts(res: SessionResults): Record<string, string> {
  const ds = designs(res).filter((d) => d.id !== 'direct');
  const largest = Math.max(...res.sizes);
  const atLargest = res.rows.filter((r) => r.sessions === largest);
  return {
    cpu: lineChart({
      title: 'Forwarding tier CPU per 1000 sessions (% of one core)',
      xLabel: 'concurrent sessions',
      yLabel: '% core / 1000 sessions',
      // Design ids, not labels: the legend column is narrow.
      series: ds.map((d) => ({
        name: d.id,
        points: res.rows
          .filter((r) => r.design === d.id && r.tier_cpu_pct_per_1000 !== null)
          .map((r): [number, number] => [r.sessions, r.tier_cpu_pct_per_1000!]),
      })),
    }),
    sessions: groupedBarChart({
      title: `Sessions broken, ${largest} sessions (${atLargest[0]?.tally.rebound ?? 0} rebind their NAT; the tier restarts once)`,
      unit: 'sessions',
      groups: [
        {
          label: 'broken at the NAT rebinding',
          bars: atLargest.map((r) => ({
            label: r.label,
            value: r.tally.broken.rebind,
            text: String(r.tally.broken.rebind),
          })),
        },
        {
          label: 'broken at the tier restart',
          bars: atLargest.map((r) => ({
            label: r.label,
            value: r.tally.broken.restart,
            text: String(r.tally.broken.restart),
          })),
        },
        {
          label: 'sessions with lost frames at the tier restart',
          bars: atLargest.map((r) => ({
            label: r.label,
            value: r.tally.lostSessions.restart,
            text: String(r.tally.lostSessions.restart),
          })),
        },
      ],
      colorByBar: true,
    }),
    latency: groupedBarChart({
      title: `One-way frame latency, ${largest} sessions (each design's own percentiles)`,
      unit: 'µs',
      groups: [
        {
          label: 'p50',
          bars: atLargest.map((r) => ({ label: r.label, value: r.p50_us, text: dash(r.p50_us, formatNumber) })),
        },
        {
          label: 'p99',
          bars: atLargest.map((r) => ({ label: r.label, value: r.p99_us, text: dash(r.p99_us, formatNumber) })),
        },
      ],
      colorByBar: true,
    }),
  };
}

function header(res: SessionResults): string {
  const m = res.machine;
  return [
    res.note ? `> ${res.note}\n` : '',
    `- Date: ${res.date} · commit \`${res.commit}\` · Node ${res.node} · profile \`${res.profile}\` · ${res.duration_s} s`,
    `- Machine: ${m.cpu_model}, ${m.cores} cores, Linux ${m.kernel}, load average at start ${m.loadavg_start.join(' / ')}`,
    `- Command: \`${res.command}\``,
    `- Workload: seed ${res.seed}; per session a handshake through the tier, then 50 frames/s each way for ${res.duration_ms / 1000} s; ${Math.round(res.rebind_share * 100)} % of sessions rebind their NAT once; the tier is restarted once (SIGKILL, start again) at 60 % of the run.`,
  ].join('\n');
}

export function renderSessionsMarkdown(res: SessionResults, charts: Record<string, string>): string {
  const parts = [
    `# Voice sessions through each design (${res.profile === 'quick' ? 'quick profile' : 'default profile'})`,
    '',
    header(res),
    '',
  ];
  parts.push(
    'Method and definitions: [docs/bench.md](../../docs/bench.md#session-benchmark-npm-run-benchsessions).',
    '',
  );
  for (const n of res.sizes) {
    const rows = res.rows.filter((r) => r.sessions === n);
    parts.push(`## ${n} sessions`, '', costTable(rows), '', sessionTable(rows), '');
  }
  parts.push('## Charts', '');
  for (const [name, file] of Object.entries(charts)) parts.push(`![${name}](${file})`, '');
  return parts.join('\n');
}

/**
 * The largest session count that every design carried without overload: each sent at least 45
 * of its 50 frames/s and lost no frame in the steady phase. Above it the figures describe a
 * saturated machine (load tools and tier share two cores). The largest count when none did.
 */
export function heldSize(res: SessionResults): number {
  const held = res.sizes.filter((n) =>
    res.rows.filter((r) => r.sessions === n).every((r) => r.frame_rate >= 45 && r.tally.lostFrames.steady === 0),
  );
  return Math.max(...(held.length ? held : res.sizes));
}

/** The README's sessions section: the command and the tables of {@link heldSize}. */
export function sessionsReadmeSection(res: SessionResults, base: string): string {
  const largest = heldSize(res);
  const rows = res.rows.filter((r) => r.sessions === largest);
  const overloaded = res.sizes.filter((n) => n > largest);
  return [
    '## Voice sessions: what each design costs per session',
    '',
    'The same seeded voice workload through each design (issue 13): per session a QUIC handshake through',
    'the tier, then 20 ms frames of 160 octets each way; some sessions rebind their NAT, the tier restarts once.',
    'Method: [docs/bench.md](docs/bench.md#session-benchmark-npm-run-benchsessions).',
    '',
    '```sh',
    'npm run bench:sessions            # 250, 500, 1000, 2000 sessions: bench/results/sessions.{json,md,svg}',
    'npm run bench:sessions -- --quick # small and short: bench/results/sessions-quick.*',
    '```',
    '',
    `${res.profile === 'quick' ? '**Quick profile.** ' : ''}${largest} sessions, ${res.duration_ms / 1000} s, ${res.date}${res.note ? ` (${res.note})` : ''}${overloaded.length ? `; at ${overloaded.join(', ')} sessions the machine was saturated (the load generator, the sinks and the tier share two cores): see the full report` : ''}:`,
    '',
    costTable(rows),
    '',
    sessionTable(rows),
    '',
    `Full report: [bench/results/${base}.md](bench/results/${base}.md).`,
  ].join('\n');
}
