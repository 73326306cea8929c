// bench:xdp's figures and report (pure functions: what the run measured -> numbers -> Markdown).
import { round } from '../harness/engine.js';
import { header, labelOf } from '../report/markdown.js';
import type { BenchResults, RateStep } from '../report/types.js';
import type { TrialCpu } from '../native/native.js';
import { median } from '../lib/stats.js';

/** Id of the no-LB candidate: load -> router namespace -> sink (the path's own cost). */
export const DIRECT_ID = 'no-lb';

/** CPU per delivered datagram (µs) of a router's held high-rate trials, by whom (medians). */
export interface CpuBreakdown {
  /** Trials it is the median of (held, at >= half the router's highest held rate). */
  trials: number;
  total: number;
  router: number;
  blast: number;
  sink: number;
  softirqd: number;
}

/** What `quic-lb serve` reported it forwarded: datagrams the XDP program sent, and node:dgram. */
export interface Carried {
  xdp: number;
  node: number;
}

export interface XdpExtra {
  topology: string;
  cpu_method: string;
  /** Why native attach was not measured ('' when it was). */
  native_unavailable: string;
  breakdown: Record<string, CpuBreakdown | null>;
  carried: Record<string, Carried>;
  /** The XDP program's own mean run time per datagram it saw, ns (kernel BPF statistics), by router. */
  program_ns: Record<string, number | null>;
  /** Path CPU per datagram minus the no-LB path's, same round and rate, median (µs). */
  lb_cpu_over_direct: Record<string, number | null>;
  limits: string[];
}

/** Sum of every series of `name` whose labels contain `label`. */
export function sumSeries(m: Map<string, number>, name: string, label: string): number {
  let t = 0;
  for (const [k, v] of m) if (k.startsWith(`${name}{`) && k.includes(label)) t += v;
  return t;
}

/**
 * Datagrams forwarded (routed by CID or by fallback hash) by the XDP program and by node:dgram,
 * from one `quic-lb serve`'s metrics (quic_lb_xdp_packets_total, quic_lb_received_packets_total).
 */
export function carried(m: Map<string, number>): Carried {
  const sent = (name: string): number =>
    sumSeries(m, name, 'reason="routed"') + sumSeries(m, name, 'reason="fallback_');
  return { xdp: sent('quic_lb_xdp_packets_total'), node: sent('quic_lb_received_packets_total') };
}

/**
 * The CPU breakdown of `router`: over its trials that held (loss <= `lossThreshold`) at no less
 * than half its highest held rate (at low rates per-wakeup costs dominate), the median of each
 * component per delivered datagram. Null without such trials.
 */
export function cpuBreakdown(trials: TrialCpu[], router: string, lossThreshold: number): CpuBreakdown | null {
  const held = trials.filter((t) => t.router === router && t.received > 0 && t.loss <= lossThreshold);
  const top = Math.max(0, ...held.map((t) => t.pps));
  const high = held.filter((t) => t.pps >= top / 2);
  if (!high.length) return null;
  const per = (f: (t: TrialCpu) => number): number => round(median(high.map((t) => f(t) / t.received)), 3)!;
  return {
    trials: high.length,
    total: per((t) => t.router_us + t.blast_us + t.sink_us + t.softirqd_us),
    router: per((t) => t.router_us),
    blast: per((t) => t.blast_us),
    sink: per((t) => t.sink_us),
    softirqd: per((t) => t.softirqd_us),
  };
}

/**
 * What the router adds to the path's CPU per datagram: over every (round, rate) at which both
 * `id` and `direct` held, `id`'s CPU per datagram minus `direct`'s; the median, or null.
 */
export function cpuOverDirect(steps: Record<string, RateStep[]>, id: string, direct = DIRECT_ID): number | null {
  const key = (s: RateStep): string => `${s.round ?? 1}|${s.rate}`;
  const base = new Map<string, number>();
  for (const s of steps[direct] ?? [])
    if (s.pass && s.cpu_us_per_packet !== null) base.set(key(s), s.cpu_us_per_packet);
  const diffs: number[] = [];
  for (const s of steps[id] ?? []) {
    const b = base.get(key(s));
    if (s.pass && s.cpu_us_per_packet !== null && b !== undefined) diffs.push(s.cpu_us_per_packet - b);
  }
  return round(median(diffs), 3);
}

const fmt = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined ? '–' : Number(v.toFixed(digits)).toLocaleString('en-US');

/** The results table: one row per router (medians of the rounds). */
export function xdpTable(res: BenchResults, x: XdpExtra): string {
  const lines = [
    '| router | datagrams/s held (median) | each round | CPU µs/datagram, whole path | over the no-LB path, same rate | router processes | udp-blast (+ softirq of its sends) | udp-sink | ksoftirqd | carried by XDP | XDP program, ns/run | one-way latency p50 / p99, µs |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of res.results.filter((row) => row.scenario === 'steady')) {
    const b = x.breakdown[r.router];
    const c = x.carried[r.router];
    const share = c && c.xdp + c.node > 0 ? `${fmt((100 * c.xdp) / (c.xdp + c.node), 1)} %` : '–';
    const rounds = (res.rounds?.[r.router] ?? []).map((k) => fmt(k.pps, 0)).join(', ');
    lines.push(
      `| ${labelOf(res, r.router)} | ${fmt(r.pps, 0)} | ${rounds} | ${fmt(b?.total)} | ${r.router === DIRECT_ID ? '0' : fmt(x.lb_cpu_over_direct[r.router])} | ${fmt(b?.router)} | ${fmt(b?.blast)} | ${fmt(b?.sink)} | ${fmt(b?.softirqd)} | ${share} | ${fmt(x.program_ns[r.router], 0)} | ${fmt(r.p50_us, 0)} / ${fmt(r.p99_us, 0)} |`,
    );
  }
  return lines.join('\n');
}

/** The ratios the issue asks for (XDP/nginx, XDP/node), as a table. */
export function xdpRatios(res: BenchResults): string {
  const rows = Object.entries(res.ratios);
  if (!rows.length) return '';
  return ['| ratio | value |', '| --- | ---: |', ...rows.map(([k, v]) => `| ${k} | ${fmt(v, 3)} |`)].join('\n');
}

export function renderXdpMarkdown(res: BenchResults, x: XdpExtra): string {
  return [
    '# XDP forwarding benchmark (issue 15)',
    '',
    header(res),
    '',
    `Topology: ${x.topology}`,
    '',
    `CPU: ${x.cpu_method}`,
    '',
    x.native_unavailable ? `XDP native attach not measured: ${x.native_unavailable}` : '',
    '',
    '## Datagrams per second held at loss <= 0.1 %, and CPU per datagram',
    '',
    xdpTable(res, x),
    '',
    `Latency: one trial per router at ${fmt(Number(res.params.latency_pps ?? 0), 0)} datagrams/s after the searches, load to sink.`,
    '',
    '## Ratios',
    '',
    'Rates: the median of the per-round ratios (both routers searched in the same round, step by step). ',
    'CPU: the median, over every rate both held in one round, of the ratio of their whole-path CPU per datagram.',
    '',
    xdpRatios(res),
    '',
    '## What limits these numbers',
    '',
    ...x.limits.map((l) => `- ${l}`),
    '',
    ...(res.skipped.length ? ['## Skipped', '', ...res.skipped.map((s) => `- ${s.router}: ${s.reason}`), ''] : []),
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
}
