// The Markdown report (bench/results/latest.md) and the README's bench section, from a results object.
import type { BenchResults, ResultRow } from './types.js';
import { median } from '../lib/stats.js';

const pct = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined ? '–' : `${(v * 100).toFixed(digits)} %`;
const num = (v: number | null | undefined): string =>
  v === null || v === undefined ? '–' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : String(v);
const x = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : `${v.toFixed(2)}×`);

export function labelOf(res: BenchResults, id: string): string {
  return res.routers.find((r) => r.id === id)?.label ?? id;
}

function steadyRows(res: BenchResults): ResultRow[] {
  return res.results.filter((r) => r.scenario === 'steady');
}

export function header(res: BenchResults): string {
  const m = res.machine;
  const lines = [
    res.preliminary
      ? `> **Preliminary** — ${res.note || 'taken on a busy shared machine; the numbers are noisy, compare ratios only.'}`
      : res.note
        ? `> ${res.note}`
        : '',
    '',
    `- Date: ${res.date} · commit \`${res.commit}\` · Node ${res.node} · profile \`${res.profile}\` · ${res.duration_s} s`,
    `- Machine: ${m.cpu_model}, ${m.cores} cores, Linux ${m.kernel}, load average at start ${m.loadavg_start.join(' / ')}`,
    `- Command: \`${res.command}\``,
  ];
  return lines.join('\n');
}

/** The label of the steady table's row for the latency trial without a router. */
export const DIRECT_LABEL = 'direct path, no router';

/**
 * The steady-state table: one row per router, and first the direct path (generator -> sink, no
 * router) when the run measured it. Latency is each row's own percentiles, side by side: a
 * router's cost is read against the direct and bare-relay rows, never computed by subtracting
 * their percentiles (p99(A) - p99(B) is no packet's added latency and goes negative whenever
 * B's tail happened to be the noisier one).
 */
export function steadyTable(res: BenchResults): string {
  const bare = steadyRows(res).find((r) => r.router === 'bare-relay');
  const out = [
    '| router | max pps (loss ≤ 0.1 %) | × bare relay | CPU µs/pkt | Redis CPU µs/pkt | one-way p50 / p99 µs | round trip p50 / p99 µs | correct | RSS MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const d = res.direct;
  if (d.p50_us !== null || d.p99_us !== null) {
    out.push(
      `| ${DIRECT_LABEL} | – | – | – | – | ${num(d.p50_us)} / ${num(d.p99_us)} | ${num(d.rtt_p50_us)} / ${num(d.rtt_p99_us)} | – | – |`,
    );
  }
  for (const r of steadyRows(res)) {
    out.push(
      `| ${labelOf(res, r.router)} | ${num(r.pps)} | ${bare && bare.pps ? x(r.pps / bare.pps) : '–'} | ${num(r.cpu_us_per_packet)} | ${num(r.redis_cpu_us_per_packet)} | ${num(r.p50_us)} / ${num(r.p99_us)} | ${num(r.rtt_p50_us)} / ${num(r.rtt_p99_us)} | ${pct(r.correct_ratio)} | ${num(r.rss_mb)} |`,
    );
  }
  return out.join('\n');
}

/** Correct delivery and loss per scenario (rows: routers, columns: scenarios). */
export function scenarioTable(res: BenchResults): string {
  const scenarios = [...new Set(res.results.map((r) => r.scenario))];
  const routers = [...new Set(res.results.map((r) => r.router))];
  const out = [`| router | ${scenarios.join(' | ')} |`, `| --- | ${scenarios.map(() => '---:').join(' | ')} |`];
  for (const router of routers) {
    const cells = scenarios.map((s) => {
      const r = res.results.find((q) => q.router === router && q.scenario === s);
      return r ? `${pct(r.correct_ratio)} (loss ${pct(r.loss, 1)})` : 'n/a';
    });
    out.push(`| ${labelOf(res, router)} | ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

export function memoryTable(res: BenchResults): string {
  const steps = [...new Set(Object.values(res.memory).flatMap((p) => p.map((q) => q.connections)))].sort(
    (a, b) => a - b,
  );
  if (!steps.length) return '_no memory curve in this run_';
  const out = [
    `| router | ${steps.map((s) => `${num(s)} flows`).join(' | ')} |`,
    `| --- | ${steps.map(() => '---:').join(' | ')} |`,
  ];
  for (const [router, pts] of Object.entries(res.memory)) {
    const cells = steps.map((s) => {
      const p = pts.find((q) => q.connections === s);
      if (!p) return '–';
      return p.redis_mem_mb === null
        ? `${p.rss_mb} MB`
        : `${p.rss_mb} MB + Redis ${p.redis_mem_mb} MB (${num(p.redis_keys)} keys)`;
    });
    out.push(`| ${labelOf(res, router)} | ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

export function targetsTable(res: BenchResults): string {
  if (!res.targets.length) return '_no targets evaluated in this run_';
  const out = ['| check | value | target | |', '| --- | ---: | ---: | --- |'];
  for (const t of res.targets)
    out.push(
      `| ${t.name} | ${t.value === null ? '–' : t.value} | ${t.target} | ${t.pass === null ? 'no verdict (limit not found)' : t.pass ? 'met' : '**not met**'} |`,
    );
  return out.join('\n');
}

export function ratiosTable(res: BenchResults): string {
  const entries = Object.entries(res.ratios);
  if (!entries.length) return '';
  return ['| ratio | value |', '| --- | ---: |', ...entries.map(([k, v]) => `| ${k} | ${v === null ? '–' : v} |`)].join(
    '\n',
  );
}

/** The native load tools' own CPU per packet (median over the run's trials), when measured. */
function loadCpu(res: BenchResults): string {
  const c = res.params.load_tools_cpu_us_per_packet as
    { blast: number | null; sink: number | null; from_pps?: number } | undefined;
  const at = c?.from_pps ? ` at ≥ ${num(c.from_pps)} pps` : '';
  return c
    ? ` Their own CPU per packet (median of the trials${at}): sender ${num(c.blast)} µs, sinks ${num(c.sink)} µs.`
    : '';
}

export function renderMarkdown(res: BenchResults, charts: Record<string, string>): string {
  const img = (k: string, alt: string): string => (charts[k] ? `![${alt}](${charts[k]})\n` : '');
  const parts = [
    `# ${res.kind === 'forwarder' ? 'quic-lb serve forwarding benchmark' : 'Routing benchmark: stateless QUIC-LB vs Redis-mapped routing'}`,
    '',
    header(res),
    '',
    "Method: [docs/bench.md](../../docs/bench.md). Latency at a fixed rate: one-way generator → backend (same host, CLOCK_MONOTONIC), each router's own" +
      ` percentiles next to the same trial without a router (the "${DIRECT_LABEL}" row: p50 ${num(res.direct.p50_us)} µs, p99 ${num(res.direct.p99_us)} µs) and the bare relay's;` +
      " percentiles of different trials are not subtracted (a difference of two p99s is no packet's latency and can be negative)" +
      (res.direct.rtt_p50_us === null || res.direct.rtt_p50_us === undefined
        ? '; no round trip in this mode.'
        : `; round trip: backends echo every packet back through the router's return path (direct path: p50 ${num(res.direct.rtt_p50_us)} µs, p99 ${num(res.direct.rtt_p99_us)} µs).`) +
      (typeof res.params.load_tools === 'string' ? ` Load tools: ${res.params.load_tools}.` : '') +
      loadCpu(res),
    '',
    res.kind === 'forwarder' ? '## Forwarding rate' : '## Steady state',
    '',
    steadyTable(res),
    '',
    img('throughput', 'forwarded packets per second'),
    img('cpu', 'CPU per packet'),
    img('latency', 'latency'),
  ];
  if (res.kind === 'routing') {
    parts.push('## Scenarios: correct delivery (loss)', '', scenarioTable(res), '');
    for (const [s, note] of Object.entries((res.params.scenarios as Record<string, string>) ?? {}))
      parts.push(`- **${s}**: ${note}`);
    parts.push(
      '',
      img('correctness', 'correct delivery per scenario'),
      '## Memory as flows grow',
      '',
      memoryTable(res),
      '',
      img('memory', 'memory'),
    );
  }
  if (res.kind === 'forwarder') {
    const b = budgetTable(res);
    const r = roundsTable(res);
    if (b)
      parts.push(
        '## Worker scaling under a CPU budget',
        '',
        b,
        '',
        `Method: ${(res.params.worker_budget as { method?: string } | undefined)?.method ?? ''}.`,
        '',
      );
    if (r) parts.push('## Rounds', '', 'Highest rate held in each round (CPU µs per packet there):', '', r, '');
  }
  parts.push('## Targets', '', targetsTable(res), '', '## Ratios', '', ratiosTable(res), '');
  if (res.skipped.length) parts.push('## Skipped', '', ...res.skipped.map((s) => `- ${s.router}: ${s.reason}`), '');
  return parts.join('\n');
}

/** The forwarder's worker-scaling phase: each forwarding process under a CPU budget. */
export function budgetTable(res: BenchResults): string {
  const rows = res.results.filter((r) => r.scenario === 'cpu-budget');
  if (!rows.length) return '';
  const cpus = (res.params.worker_budget as { cpus_per_worker: number } | undefined)?.cpus_per_worker;
  const one = (id: string): ResultRow | undefined => rows.find((r) => r.router === id.replace(/-w\d+$/, ''));
  const workers = (id: string): number => res.routers.find((r) => r.id === id)?.workers ?? 1;
  // What the budget buys at the measured cost: workers x budget / CPU per packet.
  const capacity = (r: ResultRow): number | null =>
    cpus && r.cpu_us_per_packet ? Math.round((workers(r.router) * cpus * 1e6) / r.cpu_us_per_packet) : null;
  const out = [
    `Worker scaling, each forwarding process confined to ${cpus ?? '?'} of a core (cgroup CPU quota; on 2 cores the load tools need most of the second core, so without a budget two workers cannot show how they scale; docs/bench.md):`,
    '',
    '| router | max pps (loss ≤ 0.1 %) | × 1 worker | CPU µs/pkt | budget ÷ CPU per packet | × 1 worker |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const base = one(r.router);
    const cap = capacity(r);
    const baseCap = base ? capacity(base) : null;
    const other = base !== undefined && base !== r;
    out.push(
      `| ${labelOf(res, r.router)} | ${num(r.pps)} | ${other && base.pps ? x(r.pps / base.pps) : '–'} | ${num(r.cpu_us_per_packet)} | ${num(cap)} | ${other && cap && baseCap ? x(cap / baseCap) : '–'} |`,
    );
  }
  return out.join('\n');
}

/** Each round's highest rate per router (runs with several rounds). */
export function roundsTable(res: BenchResults): string {
  const entries = Object.entries(res.rounds ?? {});
  const n = Math.max(0, ...entries.map(([, v]) => v.length));
  if (n < 2) return '';
  const out = [
    `| router | ${Array.from({ length: n }, (_, i) => `round ${i + 1}`).join(' | ')} | median |`,
    `| --- | ${Array.from({ length: n + 1 }, () => '---:').join(' | ')} |`,
  ];
  for (const [key, v] of entries) {
    const [id, phase] = key.split('@');
    out.push(
      `| ${labelOf(res, id)}${phase ? ` (${phase})` : ''} | ${v.map((q) => `${num(q.pps)} (${num(q.cpu_us_per_packet)} µs)`).join(' | ')} | ${num(median(v.map((q) => q.pps)))} |`,
    );
  }
  return out.join('\n');
}

/** The forwarder table: rates, CPU, ratios to the bare relay and the issue-3 targets. */
export function forwarderTable(res: BenchResults): string {
  const rounds = Number(res.params.rounds ?? 1);
  const budget = budgetTable(res);
  const out = [
    ...(rounds > 1
      ? [`Medians of ${rounds} rate searches per router; a ratio is the median of the per-round ratios.`, '']
      : []),
    steadyTable(res),
    '',
    ...(budget ? [budget, ''] : []),
    targetsTable(res),
  ];
  return out.join('\n');
}

/** The README's `bench` section body (between its markers). */
export function readmeSection(res: BenchResults | undefined, chartPath: string, forwarder?: BenchResults): string {
  const routing = res
    ? [
        header(res),
        '',
        ...(typeof res.params.load_tools === 'string' ? [`Load tools: ${res.params.load_tools}.`, ''] : []),
        steadyTable(res),
        '',
        'Correct delivery (loss) per scenario:',
        '',
        scenarioTable(res),
        '',
        `![forwarded packets per second](${chartPath})`,
        '',
        'Full report: [bench/results/latest.md](bench/results/latest.md).',
      ]
    : ['_No routing results yet: run `npm run bench`._'];
  const fwd = forwarder
    ? [
        '',
        '### quic-lb serve vs the bare relay (`npm run bench:forwarder`)',
        '',
        header(forwarder),
        '',
        ...(typeof forwarder.params.load_tools === 'string'
          ? [`Load tools: ${forwarder.params.load_tools}.${loadCpu(forwarder)}`, '']
          : []),
        forwarderTable(forwarder),
        '',
        'Full report: [bench/results/forwarder.md](bench/results/forwarder.md).',
      ]
    : [];
  return [
    '## Benchmark',
    '',
    'Stateless QUIC-LB routing against the design large relays use (client address → backend in Redis,',
    "with and without a local cache), a bare `node:dgram` relay (the runtime ceiling) and nginx's UDP proxy,",
    'all fed the same seeded QUIC-shaped traffic, alternately, in one run. Method: [docs/bench.md](docs/bench.md).',
    "On this shared 2-core machine one run's rates swing by up to ±20 %; docs/bench.md lists several runs side by side",
    '(their ratios and medians) and the CPU per packet, which is steadier.',
    '',
    '```sh',
    'npm run bench            # quick profile, < 3 min: results in bench/results/latest.{json,md} + SVG charts',
    'npm run bench -- --full  # the whole matrix (more rates, 100k+ flows)',
    'npm run bench:forwarder  # quic-lb serve vs the bare relay, 5 rounds; 1 vs 2 workers under a CPU budget (~14 min)',
    '```',
    '',
    ...routing,
    ...fwd,
  ].join('\n');
}
