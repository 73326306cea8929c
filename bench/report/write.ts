// Writes a results object as JSON, Markdown and SVG charts.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { barChart, groupedBarChart, lineChart, type Bar } from './svg.js';
import { DIRECT_LABEL, labelOf, readmeSection, renderMarkdown } from './markdown.js';
import type { BenchResults } from './types.js';

/** Chart name -> SVG text. */
export function charts(res: BenchResults): Record<string, string> {
  const steady = res.results.filter((r) => r.scenario === 'steady');
  const out: Record<string, string> = {};
  if (steady.length) {
    out.throughput = barChart({
      title: `Highest forwarded rate with loss ≤ 0.1 %${res.preliminary ? ' (preliminary, busy machine)' : ''}`,
      unit: 'packets/s',
      bars: steady.map((r) => ({ label: labelOf(res, r.router), value: r.pps })),
    });
    out.cpu = groupedBarChart({
      title: 'CPU per forwarded packet',
      unit: 'µs (router process; Redis routers: + redis-server)',
      groups: [
        {
          label: 'router process',
          bars: steady.map((r) => ({ label: labelOf(res, r.router), value: r.cpu_us_per_packet })),
        },
        ...(steady.some((r) => r.redis_cpu_us_per_packet !== null)
          ? [
              {
                label: 'redis-server',
                bars: steady
                  .filter((r) => r.redis_cpu_us_per_packet !== null)
                  .map((r) => ({ label: labelOf(res, r.router), value: r.redis_cpu_us_per_packet })),
              },
            ]
          : []),
      ],
    });
    // Each router's own percentiles, the direct path (no router) first as the floor to read them against.
    const direct = res.direct.p50_us !== null || res.direct.p99_us !== null;
    const latencyBars = (q: 'p50_us' | 'p99_us'): Bar[] => [
      ...(direct ? [{ label: DIRECT_LABEL, value: res.direct[q] }] : []),
      ...steady.map((r) => ({ label: labelOf(res, r.router), value: r[q] })),
    ];
    out.latency = groupedBarChart({
      title: 'One-way latency through the router (fixed rate)',
      unit: 'µs',
      groups: [
        { label: 'p50', bars: latencyBars('p50_us') },
        { label: 'p99', bars: latencyBars('p99_us') },
      ],
    });
  }
  const scenarios = [...new Set(res.results.map((r) => r.scenario))].filter((s) => s !== 'steady');
  if (scenarios.length) {
    out.correctness = groupedBarChart({
      title: 'Correct delivery per scenario',
      unit: '% of delivered packets at the owning backend',
      max: 100,
      groups: scenarios.map((s) => ({
        label: s,
        bars: res.results
          .filter((r) => r.scenario === s)
          .map((r): Bar => ({
            label: labelOf(res, r.router),
            value: r.correct_ratio === null ? null : r.correct_ratio * 100,
            text: r.correct_ratio === null ? 'n/a' : `${(r.correct_ratio * 100).toFixed(2)} %`,
          })),
      })),
    });
  }
  const mem = Object.entries(res.memory).filter(([, p]) => p.length > 0);
  if (mem.length) {
    out.memory = lineChart({
      title: 'Memory as flows grow (router RSS; Redis routers: + Redis used_memory)',
      xLabel: 'flows seen (log scale)',
      yLabel: 'MB',
      logX: true,
      series: mem.map(([router, pts]) => ({
        name: labelOf(res, router).replace(/ \(.*\)$/, ''),
        points: pts.map((p) => [p.connections, p.rss_mb + (p.redis_mem_mb ?? 0)] as [number, number]),
      })),
    });
  }
  return out;
}

/** Writes `<base>.json`, `<base>.md` and `<base>-<chart>.svg` into `dir`; returns the paths. */
export function writeReport(res: BenchResults, dir: string, base = 'latest'): string[] {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const svgs = charts(res);
  const links: Record<string, string> = {};
  for (const [name, text] of Object.entries(svgs)) {
    const f = `${base}-${name}.svg`;
    writeFileSync(path.join(dir, f), text);
    links[name] = f;
    files.push(path.join(dir, f));
  }
  writeFileSync(path.join(dir, `${base}.json`), `${JSON.stringify(res, null, 2)}\n`);
  files.push(path.join(dir, `${base}.json`));
  writeFileSync(path.join(dir, `${base}.md`), renderMarkdown(res, links));
  files.push(path.join(dir, `${base}.md`));
  return files;
}

/**
 * Replaces the README text between `<!-- section:bench -->` and `<!-- /section:bench -->` with
 * the routing results and, when given, the forwarder results.
 */
export function updateReadme(
  readmePath: string,
  res: BenchResults | undefined,
  chartPath: string,
  forwarder?: BenchResults,
): boolean {
  const text = readFileSync(readmePath, 'utf8');
  const open = '<!-- section:bench -->';
  const close = '<!-- /section:bench -->';
  const a = text.indexOf(open);
  const b = text.indexOf(close);
  if (a < 0 || b < a) return false;
  writeFileSync(
    readmePath,
    `${text.slice(0, a + open.length)}\n${readmeSection(res, chartPath, forwarder)}\n${text.slice(b)}`,
  );
  return true;
}

function readResults(file: string): BenchResults | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as BenchResults) : undefined;
}

/** Rewrites the README bench section from `dir`/latest.json and `dir`/forwarder.json (whichever exist). */
export function updateReadmeFromResults(repoRoot: string, dir = path.join(repoRoot, 'bench/results')): boolean {
  return updateReadme(
    path.join(repoRoot, 'README.md'),
    readResults(path.join(dir, 'latest.json')),
    'bench/results/latest-throughput.svg',
    readResults(path.join(dir, 'forwarder.json')),
  );
}
