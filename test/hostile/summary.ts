// The figures `npm run test:hostile` reports (issue 10's closing note): datagrams and cases
// tried, crashes, the largest amplification factor, downloads surviving drain / probe loss / key
// rotation, the LB's RSS under the slow-backend flood. Every case appends its result to a JSON
// lines file; the hostile global setup (global-setup.ts) prints and writes the totals when the
// run ends. QUIC_LB_HOSTILE_SUMMARY overrides the summary path (default .tmp/hostile-summary.json).
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SUMMARY_PATH = process.env.QUIC_LB_HOSTILE_SUMMARY ?? path.join(REPO, '.tmp', 'hostile-summary.json');
const CASES_PATH = `${SUMMARY_PATH}.cases.jsonl`;

export interface CaseResult {
  case: string;
  /** Datagrams the attacker sent (0 for cases without an attacker). */
  datagrams: number;
  octetsFromAttacker: number;
  octetsTowardUnvalidated: number;
  octetsTowardVictims: number;
  amplification: number;
  amplificationLimit: number;
  crashes: number;
  rssMb?: number;
  /** Slow-backend flood: the LB's RSS before and at its peak. */
  rss?: { baselineMb: number; peakMb: number };
  /** Live downloads of the case (drain, probe loss, rotation, reloads). */
  downloads?: { ok: number; total: number; scenario: string };
  counters?: Record<string, number>;
  violations: string[];
}

export function recordCase(r: CaseResult): void {
  mkdirSync(path.dirname(CASES_PATH), { recursive: true });
  appendFileSync(CASES_PATH, `${JSON.stringify(r)}\n`);
}

export function resetSummary(): void {
  rmSync(CASES_PATH, { force: true });
  rmSync(SUMMARY_PATH, { force: true });
}

export interface Summary {
  cases: number;
  casesFailed: number;
  datagrams: number;
  crashes: number;
  largestAmplification: { factor: number; case: string } | null;
  downloads: Record<string, { ok: number; total: number; percent: number }>;
  slowBackendRss: { baselineMb: number; peakMb: number } | null;
  results: CaseResult[];
}

/** Totals of the cases recorded so far; written to SUMMARY_PATH. */
export function writeSummary(): Summary | undefined {
  if (!existsSync(CASES_PATH)) return undefined;
  const results = readFileSync(CASES_PATH, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as CaseResult);
  const downloads: Summary['downloads'] = {};
  for (const r of results) {
    if (!r.downloads) continue;
    const d = (downloads[r.downloads.scenario] ??= { ok: 0, total: 0, percent: 0 });
    d.ok += r.downloads.ok;
    d.total += r.downloads.total;
    d.percent = d.total === 0 ? 0 : Math.round((d.ok / d.total) * 1000) / 10;
  }
  const amp = results.reduce<CaseResult | undefined>(
    (a, r) => (a === undefined || r.amplification > a.amplification ? r : a),
    undefined,
  );
  const s: Summary = {
    cases: results.length,
    casesFailed: results.filter((r) => r.violations.length > 0).length,
    datagrams: results.reduce((a, r) => a + r.datagrams, 0),
    crashes: results.reduce((a, r) => a + r.crashes, 0),
    largestAmplification: amp ? { factor: amp.amplification, case: amp.case } : null,
    downloads,
    slowBackendRss: results.find((r) => r.rss)?.rss ?? null,
    results,
  };
  writeFileSync(SUMMARY_PATH, `${JSON.stringify(s, null, 2)}\n`);
  return s;
}

/** The plain-text closing note. */
export function formatSummary(s: Summary): string {
  const dl = Object.entries(s.downloads).map(([k, d]) => `${k} ${d.ok}/${d.total} (${d.percent} %)`);
  return [
    `hostile: ${s.cases} cases (${s.casesFailed} failed), ${s.datagrams} datagrams, ${s.crashes} crashes`,
    `largest amplification: ${s.largestAmplification ? `${s.largestAmplification.factor} (${s.largestAmplification.case})` : 'n/a'}`,
    `downloads surviving: ${dl.length > 0 ? dl.join(', ') : 'n/a'}`,
    `LB RSS under the slow-backend flood: ${s.slowBackendRss ? `${s.slowBackendRss.baselineMb} MB -> peak ${s.slowBackendRss.peakMb} MB` : 'n/a'}`,
    ...s.results.filter((r) => r.violations.length > 0).map((r) => `  FAILED ${r.case}: ${r.violations.join('; ')}`),
    `summary: ${SUMMARY_PATH}`,
  ].join('\n');
}
