// Report generation from a results object: JSON, Markdown tables, SVG charts, README section.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarise, baseResults, searchCapped } from '../../bench/harness/suite.js';
import { barChart, escapeXml, lineChart } from '../../bench/report/svg.js';
import { DIRECT_LABEL, renderMarkdown, steadyTable } from '../../bench/report/markdown.js';
import type { BenchResults, RateStep, ResultRow } from '../../bench/report/types.js';
import { charts, updateReadme, writeReport } from '../../bench/report/write.js';
import { pairedRatio, sameRateCpuRatio } from '../../bench/forwarder/run.js';
import { median } from '../../bench/lib/stats.js';

function rowOf(
  router: string,
  scenario: string,
  pps: number,
  correct: number,
  extra: Partial<ResultRow> = {},
): ResultRow {
  return {
    router,
    scenario,
    pps,
    offered_pps: pps,
    loss: 0,
    cpu_us_per_packet: 20,
    redis_cpu_us_per_packet: null,
    p50_us: 60,
    p99_us: 300,
    correct_ratio: correct,
    misdelivered: 0,
    rss_mb: 60,
    redis_mem_mb: null,
    rtt_p50_us: 150,
    rtt_p99_us: 700,
    echo_ratio: 1,
    ...extra,
  };
}

function sample(): BenchResults {
  const res = baseResults({
    kind: 'routing',
    profile: 'quick',
    preliminary: true,
    note: 'test <data> & more',
    command: 'npm run bench',
  });
  res.routers = [
    { id: 'quic-lb-plaintext', label: 'quic-lb serve (plaintext)', family: 'quic-lb', workers: 1 },
    { id: 'redis-per-packet', label: 'Redis-mapped, lookup per packet', family: 'redis', workers: 1 },
    { id: 'bare-relay', label: 'bare node:dgram relay', family: 'bare', workers: 1 },
  ];
  res.results = [
    rowOf('quic-lb-plaintext', 'steady', 40_000, 1),
    rowOf('redis-per-packet', 'steady', 20_000, 1, { redis_cpu_us_per_packet: 9, redis_mem_mb: 1.5, p99_us: 900 }),
    rowOf('bare-relay', 'steady', 50_000, 1),
    rowOf('quic-lb-plaintext', 'nat-rebinding', 4000, 1),
    rowOf('redis-per-packet', 'nat-rebinding', 4000, 0.9625),
  ];
  res.rate_search = {
    'quic-lb-plaintext': [
      { rate: 40_000, offered_pps: 40_000, pps: 40_000, loss: 0, cpu_us_per_packet: 20, pass: true },
      { rate: 54_000, offered_pps: 54_000, pps: 50_000, loss: 0.07, cpu_us_per_packet: 20, pass: false },
    ],
    'redis-per-packet': [
      { rate: 20_000, offered_pps: 20_000, pps: 20_000, loss: 0, cpu_us_per_packet: 40, pass: true },
      { rate: 27_000, offered_pps: 27_000, pps: 22_000, loss: 0.2, cpu_us_per_packet: 40, pass: false },
    ],
  };
  res.memory = {
    'quic-lb-plaintext': [
      { connections: 1000, rss_mb: 60, redis_mem_mb: null, redis_keys: null },
      { connections: 100_000, rss_mb: 62, redis_mem_mb: null, redis_keys: null },
    ],
    'redis-per-packet': [
      { connections: 1000, rss_mb: 70, redis_mem_mb: 1, redis_keys: 1000 },
      { connections: 100_000, rss_mb: 71, redis_mem_mb: 12, redis_keys: 100_000 },
    ],
  };
  summarise(res);
  return res;
}

describe('bench report', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-bench-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('computes ratios and checks the issue targets from the rows', () => {
    const res = sample();
    expect(res.ratios['quic-lb-plaintext/redis-per-packet pps']).toBe(2);
    expect(res.ratios['quic-lb-plaintext/bare-relay pps']).toBe(0.8);
    expect(res.ratios['quic-lb-plaintext/redis-per-packet p99']).toBe(0.333);
    const t = (name: string): boolean | null | undefined => res.targets.find((x) => x.name === name)?.pass;
    expect(t('quic-lb plaintext pps vs Redis per packet')).toBe(true);
    expect(t('quic-lb plaintext p99 vs Redis per packet')).toBe(true);
    expect(t('quic-lb-plaintext correct delivery, nat-rebinding')).toBe(true);
    expect(t('quic-lb-plaintext RSS 1000 -> 100000 flows')).toBe(true); // 62/60 within 15 %
  });

  it('gives no throughput verdict when a search never found its limit', () => {
    const res = sample();
    res.rate_search['redis-per-packet'] = [
      { rate: 20_000, offered_pps: 20_000, pps: 20_000, loss: 0, cpu_us_per_packet: 40, pass: true },
    ];
    summarise(res);
    expect(res.targets.find((x) => x.name === 'quic-lb plaintext pps vs Redis per packet')?.pass).toBeNull();
    // Failing only where the generator could not offer the rate is no verdict either.
    res.rate_search['redis-per-packet'].push({
      rate: 27_000,
      offered_pps: 20_000,
      pps: 20_000,
      loss: 0,
      cpu_us_per_packet: 40,
      pass: false,
      generator_bound: true,
    });
    expect(searchCapped(res.rate_search['redis-per-packet'])).toBe(true);
    expect(searchCapped(res.rate_search['quic-lb-plaintext'])).toBe(false);
  });

  it('writes JSON, Markdown and well-formed SVG charts', () => {
    const res = sample();
    const files = writeReport(res, dir, 't');
    expect(files.map((f) => path.basename(f)).sort()).toEqual(
      ['t-correctness.svg', 't-cpu.svg', 't-latency.svg', 't-memory.svg', 't-throughput.svg', 't.json', 't.md'].sort(),
    );
    expect(JSON.parse(readFileSync(path.join(dir, 't.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(res)));
    const md = readFileSync(path.join(dir, 't.md'), 'utf8');
    expect(md).toContain('**Preliminary**');
    expect(md).toContain(
      '| quic-lb serve (plaintext) | 40,000 | 0.80× | 20 | – | 60 / 300 | 150 / 700 | 100.00 % | 60 |',
    );
    expect(md).toContain('| Redis-mapped, lookup per packet | 100.00 % (loss 0.0 %) | 96.25 % (loss 0.0 %) |');
    expect(md).toContain('![forwarded packets per second](t-throughput.svg)');
    expect(md).toContain('Redis 12 MB (100,000 keys)');
    for (const f of files.filter((x) => x.endsWith('.svg'))) {
      const svg = readFileSync(f, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).not.toMatch(/NaN|undefined|Infinity/);
      expect(svg).not.toMatch(/&(?!(lt|gt|amp|quot|apos);)/); // every & escaped
    }
    const thr = readFileSync(path.join(dir, 't-throughput.svg'), 'utf8');
    expect(thr).toContain('>40,000<');
    expect(thr).toContain('>quic-lb serve (plaintext)<');
  });

  it("shows each router's own latency percentiles next to the direct path, never a difference that can go negative", () => {
    const res = sample();
    // The case that came out as "added p99 -934 µs": the direct trial's tail was the noisier one.
    res.direct = { p50_us: 62, p99_us: 1215, rtt_p50_us: 119, rtt_p99_us: 897 };
    res.results.push(
      rowOf('nginx', 'steady', 60_000, 1, { p50_us: 105, p99_us: 281, rtt_p50_us: 190, rtt_p99_us: 483 }),
    );
    const table = steadyTable(res).split('\n');
    expect(table[0]).toBe(
      '| router | max pps (loss ≤ 0.1 %) | × bare relay | CPU µs/pkt | Redis CPU µs/pkt | one-way p50 / p99 µs | round trip p50 / p99 µs | correct | RSS MB |',
    );
    expect(table[2]).toBe(`| ${DIRECT_LABEL} | – | – | – | – | 62 / 1,215 | 119 / 897 | – | – |`);
    expect(table).toContain('| nginx | 60,000 | 1.20× | 20 | – | 105 / 281 | 190 / 483 | 100.00 % | 60 |');
    // Every latency cell of every row is that row's own percentile: none is negative.
    for (const line of table.slice(2)) {
      const cells = line.split('|').map((c) => c.trim());
      for (const cell of [cells[6], cells[7]]) {
        for (const v of cell.split(' / '))
          expect(v === '–' || Number(v.replaceAll(',', '')) >= 0, `${line}: ${cell}`).toBe(true);
      }
    }
    expect(table.length).toBe(2 + 1 + 4); // header, the direct path, four routers
    const md = renderMarkdown(res, {});
    expect(md).not.toMatch(/added/i);
    expect(md).toContain(`the "${DIRECT_LABEL}" row: p50 62 µs, p99 1,215 µs`);
    // The latency chart has the direct path as a bar in each group (p50, p99).
    const svg = charts(res).latency;
    expect(svg.split(`>${DIRECT_LABEL}<`).length - 1).toBe(2);
    expect(svg).toContain(`<title>${DIRECT_LABEL}: 1,215 µs</title>`);
    // A run without the direct trial has no such row.
    expect(steadyTable(sample())).not.toContain(DIRECT_LABEL);
  });

  it('scales bars to the largest value and escapes labels', () => {
    const svg = barChart({
      title: 'a < b & c',
      unit: 'pps',
      bars: [
        { label: 'x', value: 50 },
        { label: 'y', value: 100 },
        { label: 'z', value: null },
      ],
    });
    const widths = [...svg.matchAll(/<rect x="250" y="\d+" width="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(widths).toHaveLength(2);
    expect(widths[1]).toBeCloseTo(widths[0] * 2, 0);
    expect(svg).toContain('a &lt; b &amp; c');
    expect(svg).toContain('>n/a<');
    expect(escapeXml(`"'`)).toBe('&quot;&apos;');
    const line = lineChart({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      logX: true,
      series: [
        {
          name: 's',
          points: [
            [1000, 1],
            [100_000, 2],
          ],
        },
      ],
    });
    expect((line.match(/<circle /g) ?? []).length).toBe(2);
  });

  it('replaces only the README text between the bench markers', () => {
    const readme = path.join(dir, 'README.md');
    writeFileSync(
      readme,
      '# x\n<!-- section:lb -->\nLB text\n<!-- /section:lb -->\n<!-- section:bench -->\nold\n<!-- /section:bench -->\ntail\n',
    );
    expect(updateReadme(readme, sample(), 'bench/results/latest-throughput.svg')).toBe(true);
    const text = readFileSync(readme, 'utf8');
    expect(text).toContain('<!-- section:lb -->\nLB text\n<!-- /section:lb -->');
    expect(text).not.toContain('\nold\n');
    expect(text).toContain('npm run bench -- --full');
    expect(text).toContain('![forwarded packets per second](bench/results/latest-throughput.svg)');
    expect(text.endsWith('<!-- /section:bench -->\ntail\n')).toBe(true);
    expect(Object.keys(charts(sample()))).toContain('memory');
    expect(renderMarkdown(sample(), {})).not.toContain('![');
  });
});

describe('forwarder report: rounds, paired ratios and the CPU-budget phase', () => {
  it('takes the median of per-round ratios, not the ratio of medians', () => {
    const rounds = {
      a: [
        { pps: 100, cpu_us_per_packet: 7 },
        { pps: 80, cpu_us_per_packet: 7 },
        { pps: 120, cpu_us_per_packet: 7 },
      ],
      b: [
        { pps: 100, cpu_us_per_packet: 6 },
        { pps: 100, cpu_us_per_packet: 6 },
        { pps: 100, cpu_us_per_packet: 6 },
      ],
      c: [{ pps: 0, cpu_us_per_packet: null }],
    };
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(3);
    expect(median([null, undefined, 5])).toBe(5);
    expect(median([])).toBeNull();
    // per round 1.0, 0.8, 1.2 -> 1.0
    expect(pairedRatio(rounds, 'a', 'b')).toBe(1);
    // A round where either side held nothing does not count; none left -> null.
    expect(pairedRatio(rounds, 'c', 'b')).toBeNull();
    expect(pairedRatio(rounds, 'a', 'missing')).toBeNull();
  });

  it('compares CPU per packet at the same offered rate, round by round, only where both held', () => {
    const step = (round: number, rate: number, cpu: number, pass = true): RateStep => ({
      rate,
      offered_pps: rate,
      pps: rate,
      loss: 0,
      cpu_us_per_packet: cpu,
      pass,
      round,
    });
    const steps = {
      // a is 10 % dearer at 60k in both rounds, 20 % at 80k in round 1; its 100k step failed.
      a: [step(1, 60_000, 11), step(1, 80_000, 12), step(1, 100_000, 9, false), step(2, 60_000, 11)],
      // b held 100k (cheaper per packet at a higher rate: not comparable), and 60k/80k as a's.
      b: [step(1, 60_000, 10), step(1, 80_000, 10), step(1, 100_000, 8), step(2, 60_000, 10), step(2, 80_000, 5)],
    };
    expect(sameRateCpuRatio(steps, 'a', 'b')).toBe(1.1); // median of 1.1, 1.2, 1.1
    expect(sameRateCpuRatio(steps, 'a', 'missing')).toBeNull();
  });

  it('renders the budget table with what the budget buys, and every round', () => {
    const res = baseResults({
      kind: 'forwarder',
      profile: 'quick',
      preliminary: false,
      note: '',
      command: 'npm run bench:forwarder',
    });
    res.routers = [
      { id: 'quic-lb-plaintext', label: 'quic-lb serve (plaintext)', family: 'quic-lb', workers: 1 },
      { id: 'quic-lb-plaintext-w2', label: 'quic-lb serve (plaintext, 2 workers)', family: 'quic-lb', workers: 2 },
    ];
    res.params = { rounds: 2, worker_budget: { cpus_per_worker: 0.4, method: 'cgroups' } };
    res.results = [
      rowOf('quic-lb-plaintext', 'steady', 140_000, 1),
      rowOf('quic-lb-plaintext', 'cpu-budget', 40_000, 1, { cpu_us_per_packet: 8 }),
      rowOf('quic-lb-plaintext-w2', 'cpu-budget', 100_000, 1, { cpu_us_per_packet: 8 }),
    ];
    res.rounds = {
      'quic-lb-plaintext': [
        { pps: 130_000, cpu_us_per_packet: 7 },
        { pps: 140_000, cpu_us_per_packet: 6.9 },
      ],
      'quic-lb-plaintext@budget': [
        { pps: 40_000, cpu_us_per_packet: 8 },
        { pps: 41_000, cpu_us_per_packet: 8 },
      ],
    };
    const md = renderMarkdown(res, {});
    expect(md).toContain('## Worker scaling under a CPU budget');
    // 0.4 CPU / 8 µs = 50,000 packets/s for one worker, twice that for two; held 2.5x.
    expect(md).toContain('| quic-lb serve (plaintext) | 40,000 | – | 8 | 50,000 | – |');
    expect(md).toContain('| quic-lb serve (plaintext, 2 workers) | 100,000 | 2.50× | 8 | 100,000 | 2.00× |');
    expect(md).toContain('| quic-lb serve (plaintext) | 130,000 (7 µs) | 140,000 (6.9 µs) | 140,000 |');
    expect(md).toContain('| quic-lb serve (plaintext) (budget) | 40,000 (8 µs) | 41,000 (8 µs) | 41,000 |');
    // A routing report has neither section.
    expect(renderMarkdown(sample(), {})).not.toContain('CPU budget');
  });
});
