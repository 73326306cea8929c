// `npm run bench:flood [-- --quick] [--rates 250,500,...] [--modes off,load,always] [--rounds N]`
//   [--ceiling-rates 20000,40000] (mode always only, past the rates: where the LB itself drops)
//   [--legit-rate 10] [--window-ms 2500] [--deadline-ms 2000] [--warmup-ms 1000] [--sources 30000] [--workers 1]
//   [--load-on 200] [--load-off 100] [--out DIR] [--note TEXT] [--report-only]
// The Initial flood benchmark (issue 14, "Proof"): real client Initials re-sealed under fresh
// DCIDs from spoofed random sources at rising rates against the LB, with the Retry offload off,
// load-triggered and always on, while legitimate gtlsclient handshakes run at a fixed rate. Per
// rate the modes run in turn, side by side in one run (docs/bench.md, "Reading the numbers on
// this machine"), each on a fresh LB and fresh backends. Root only (network namespaces, raw sockets). Every process it starts is stopped by
// PID and the namespaces deleted, on success, failure and Ctrl-C (test/netns/netns.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { captureInitial, resealInitial } from '../../test/hostile/payloads.js';
import { rawSend, writePayloads } from '../../test/hostile/native.js';
import { canUseNetns, commandExists } from '../../test/netns/netns.js';
import { repoRoot } from '../harness/build.js';
import { commitId } from '../harness/suite.js';
import { sleep } from '../lib/proc.js';
import { busyCores, busyNote, machineInfo, treeCpuUs } from '../lib/procstat.js';
import { parseArgs } from '../routers/args.js';
import { legitClients, type ClientOutcome } from './clients.js';
import {
  floodRows,
  floodVerdict,
  renderFloodMarkdown,
  textTable,
  verdictLines,
  type FloodResults,
  type StepMeasurement,
} from './report.js';
import {
  ATTACKER_PREFIX,
  FloodTopology,
  MODES,
  VIP_PORT,
  type LoadThresholds,
  type Mode,
  type Stack,
} from './topology.js';

const args = parseArgs(process.argv.slice(2));
const quick = args.has('quick');
const num = (name: string, dflt: number): number => Number(args.get(name) ?? dflt);
const rates = (args.get('rates') ?? (quick ? '0,1000,5000' : '0,250,500,1000,2500,5000,10000')).split(',').map(Number);
const ceilingRates = (args.get('ceiling-rates') ?? (quick ? '' : '20000,40000'))
  .split(',')
  .filter(Boolean)
  .map(Number)
  .filter((r) => r > Math.max(...rates));
const modes = (args.get('modes') ?? MODES.join(',')).split(',') as Mode[];
const rounds = num('rounds', quick ? 1 : 2);
const legitRate = num('legit-rate', 10);
const windowMs = num('window-ms', quick ? 1500 : 2500);
const deadlineMs = num('deadline-ms', quick ? 1500 : 2000);
const warmupMs = num('warmup-ms', quick ? 500 : 1000);
const sources = num('sources', 30_000);
const workers = num('workers', 1);
const load: LoadThresholds = {
  onPerSecond: num('load-on', 200),
  offPerSecond: num('load-off', 100),
  offAfterMs: num('load-off-after-ms', 2000),
  transitionMs: num('load-transition-ms', 1000),
};
/** The flood lasts until the last legitimate client has had its deadline. */
const floodMs = warmupMs + windowMs + deadlineMs;
const base = quick ? 'flood-quick' : 'flood';
const outDir = path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results'));
const log = (s: string): void => void process.stdout.write(`${s}\n`);

const USAGE = `npm run bench:flood [-- --quick] [--rates 0,250,500,1000,2500,5000,10000] [--modes off,load,always]
  [--rounds 2] [--ceiling-rates 20000,40000] [--legit-rate 10] [--window-ms 2500] [--deadline-ms 2000]
  [--warmup-ms 1000] [--sources 30000] [--workers 1] [--load-on 200] [--load-off 100] [--load-off-after-ms 2000]
  [--load-transition-ms 1000] [--out DIR] [--note TEXT] [--report-only]
Root only (--report-only: re-render the report from the JSON in --out). Writes bench/results/flood.{json,md} (--quick: flood-quick.*).`;

function preflight(): void {
  if (args.has('help')) {
    log(USAGE);
    process.exit(0);
  }
  const missing = [
    canUseNetns() ? '' : 'root (network namespaces and raw sockets: run it as root, e.g. `sudo npm run bench:flood`)',
    commandExists('gtlsclient') ? '' : 'gtlsclient (Debian package ngtcp2-client; scripts/system-deps.sh installs it)',
    commandExists('curl') ? '' : 'curl',
    commandExists(process.env.CC ?? 'cc') ? '' : 'a C compiler (cc) for test/hostile/raw-udp.c',
  ].filter(Boolean);
  if (rates.some((r) => !(r >= 0)) || modes.some((m) => !MODES.includes(m)) || !(rounds >= 1) || !(legitRate > 0)) {
    log(`bench:flood: bad arguments (rates >= 0, modes among ${MODES.join(',')}, rounds >= 1, legit-rate > 0)`);
    process.exit(2);
  }
  if (missing.length > 0) {
    log(`bench:flood needs ${missing.join('; ')}. Nothing was measured.`);
    process.exit(2);
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when a source file is newer than dist/cli.js (the LB and backends run from it). */
function ensureDist(): void {
  const cli = path.join(repoRoot, 'dist/cli.js');
  if (existsSync(cli) && newestMtime(path.join(repoRoot, 'src')) <= statSync(cli).mtimeMs) return;
  log('building dist/ (tsc -p tsconfig.build.json)');
  const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: repoRoot, encoding: 'utf8' });
  if (!existsSync(cli)) throw new Error(`bench:flood: the build produced no dist/cli.js: ${r.stdout.slice(0, 2000)}`);
}

/** Busy and total jiffies of all CPUs so far (/proc/stat; iowait counts as idle). */
function jiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/** Changes of the LB's retry and receive counters between two scrapes (non-zero ones). */
function metricChanges(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b)
    if ((k.startsWith('quic_lb_retry') || k.startsWith('quic_lb_received')) && v !== (a.get(k) ?? 0))
      out[k] = v - (a.get(k) ?? 0);
  return out;
}

/** One mode at one rate: a fresh stack, the flood and the legitimate clients together, the figures. */
async function step(
  topo: FloodTopology,
  file: string,
  round: number,
  mode: Mode,
  rate: number,
): Promise<StepMeasurement> {
  const t0 = Date.now();
  const stack: Stack = await topo.startStack(mode, load, workers);
  const startMs = Date.now() - t0;
  try {
    const { fleet } = topo;
    const pids = { lb: stack.lb.pid as number, backends: stack.backends.map((b) => b.pid as number) };
    const backendCpu = (): number => pids.backends.reduce((a, p) => a + treeCpuUs(p), 0);
    const m0 = await topo.scrape();
    const udp0 = await Promise.all([topo.lbNs, ...fleet.backends].map((ns) => topo.udpStats(ns)));
    await topo.counter.reset();
    const cpu0 = { lb: treeCpuUs(pids.lb), be: backendCpu(), machine: jiffies(), at: Date.now() };
    const flood =
      rate > 0
        ? rawSend(fleet, fleet.client, topo.bin, {
            file,
            dst: `${fleet.vip}:${VIP_PORT}`,
            srcPrefix: ATTACKER_PREFIX,
            sources,
            sport: 'random',
            count: Math.round((rate * floodMs) / 1000),
            rate,
            seed: round * 1000 + rate,
          })
        : undefined;
    const clients: Promise<ClientOutcome[]> = sleep(warmupMs).then(() =>
      legitClients(fleet, topo.dir, VIP_PORT, { rate: legitRate, windowMs, deadlineMs }),
    );
    const sent = await (flood ?? clients.then(() => undefined));
    const cpu1 = { lb: treeCpuUs(pids.lb), be: backendCpu(), machine: jiffies(), at: Date.now() };
    const outcomes = await clients;
    await sleep(300); // answers still in flight toward the spoofed sources
    const back = await topo.counter.report();
    const udp1 = await Promise.all([topo.lbNs, ...fleet.backends].map((ns) => topo.udpStats(ns)));
    const drops = (i: number): number => (udp1[i].RcvbufErrors ?? 0) - (udp0[i].RcvbufErrors ?? 0);
    const m1 = await topo.scrape();
    const jt = cpu1.machine.total - cpu0.machine.total;
    return {
      round,
      mode,
      rate,
      elapsedMs: sent?.elapsed_ms ?? cpu1.at - cpu0.at,
      sent: sent?.sent ?? 0,
      sentOctets: sent?.ip_octets ?? 0,
      backOctets: back.ip_octets,
      backPackets: back.packets,
      lbCpuUs: cpu1.lb - cpu0.lb,
      backendCpuUs: cpu1.be - cpu0.be,
      lbDrops: drops(0),
      backendDrops: fleet.backends.reduce((a, _, i) => a + drops(i + 1), 0),
      startMs,
      busyCores: jt > 0 ? ((cpu1.machine.busy - cpu0.machine.busy) / jt) * machineInfo().cores : 0,
      lbMetrics: metricChanges(m0, m1),
      clients: outcomes,
    };
  } finally {
    await topo.stopStack(stack);
  }
}

/** An argument as a shell would need it typed (quoted when it holds spaces or quotes). */
const shellWord = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

function writeResults(res: FloodResults): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, `${base}.json`), `${JSON.stringify(res, null, 2)}\n`);
  writeFileSync(path.join(outDir, `${base}.md`), renderFloodMarkdown(res));
  log(`wrote ${path.relative(repoRoot, outDir) || '.'}/${base}.{json,md}`);
}

if (args.has('report-only')) {
  // Re-derive the verdict and re-render the report from the JSON already in `outDir` (rows as measured).
  const res = JSON.parse(readFileSync(path.join(outDir, `${base}.json`), 'utf8')) as FloodResults;
  res.params.workers ??= 1;
  res.params.ceiling_rates ??= [];
  res.verdict = floodVerdict(res.rows, res.machine.cores);
  writeResults(res);
  process.exit(0);
}
preflight();
const loadavgStart = loadavg().map((l) => Math.round(l * 100) / 100);
const busy = await busyCores();
const note = [
  quick ? 'Quick profile: no flood, 1000/s and 5000/s, one round, short floods.' : '',
  args.get('note') ?? '',
  busyNote(busy),
]
  .filter(Boolean)
  .join(' ');
ensureDist();
const started = Date.now();
const steps: StepMeasurement[] = [];
const skipped: Record<string, string> = {};
// Without a flood, load mode is mode off; the quick profile also leaves out the Retry's cost on an
// unloaded handshake (mode always at rate 0).
const atRateZero = (m: Mode): boolean => m === 'off' || (m === 'always' && !quick);
const plan = [
  ...rates.flatMap((rate) => modes.filter((m) => rate > 0 || atRateZero(m)).map((mode) => ({ rate, mode }))),
  ...(modes.includes('always') ? ceilingRates.map((rate) => ({ rate, mode: 'always' as const })) : []),
];
log(
  `flood benchmark: rates ${rates.join(', ')}/s${ceilingRates.length ? ` (always also ${ceilingRates.join(', ')}/s)` : ''}, modes ${modes.join(', ')}, ${rounds} round(s) of ${plan.length} steps, ` +
    `${floodMs / 1000} s of flood each, ${legitRate} legitimate handshakes/s`,
);
const topo = await FloodTopology.create();
try {
  const most = Math.max(...rates);
  const file = path.join(topo.dir, 'initials.bin');
  if (most > 0 || ceilingRates.length > 0) {
    // Every datagram of a step up to the highest of `rates` gets its own DCID (a repeated one would
    // only be a duplicate at a backend). The ceiling steps cycle through the same ones: with the
    // offload always on, the LB keeps no state per DCID and no backend sees them.
    const initial = await captureInitial();
    writePayloads(file, resealInitial(initial, Math.max(1000, Math.round((most * floodMs) / 1000))));
  }
  log(
    `topology and ${most > 0 ? Math.round((most * floodMs) / 1000) : 0} Initials ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (!topo.backendKey)
    log("note: this build's demo backend takes no --retry-key-file yet (the backends run without the key)");
  for (let round = 1; round <= rounds; round++)
    for (const { rate, mode } of plan) {
      if (skipped[mode]) continue;
      let s: StepMeasurement;
      try {
        s = await step(topo, file, round, mode, rate);
      } catch (e) {
        if (mode === 'off') throw e;
        // this LB build may not have the offload yet: the other modes go on
        skipped[mode] = (e as Error).message.split('\n')[0].slice(0, 300);
        log(`mode ${mode}: could not run (${skipped[mode]}); skipping it`);
        continue;
      }
      steps.push(s);
      const ok = s.clients.filter((c) => c.handshake).length;
      log(
        `round ${round} ${String(rate).padStart(5)}/s ${mode.padEnd(6)} sent ${s.sent}, legit ${ok}/${s.clients.length}, ` +
          `backends ${Math.round(s.backendCpuUs / 10 / s.elapsedMs)} % LB ${Math.round(s.lbCpuUs / 10 / s.elapsedMs)} %, ` +
          `out/in ${s.sentOctets > 0 ? (s.backOctets / s.sentOctets).toFixed(2) : '–'}, LB drops ${s.lbDrops}, start ${s.startMs} ms`,
      );
    }
} finally {
  await topo.teardown();
}

const rows = floodRows(steps, modes, [...rates, ...ceilingRates]);
const res: FloodResults = {
  date: new Date().toISOString(),
  commit: commitId(),
  node: process.version,
  profile: quick ? 'quick' : 'default',
  command: `npm run bench:flood${process.argv.length > 2 ? ` -- ${process.argv.slice(2).map(shellWord).join(' ')}` : ''}`,
  note,
  duration_s: Math.round((Date.now() - started) / 1000),
  machine: { ...machineInfo(), loadavg_start: loadavgStart },
  params: {
    rates,
    ceiling_rates: ceilingRates,
    modes,
    rounds,
    flood_ms: floodMs,
    legit_rate: legitRate,
    client_window_ms: windowMs,
    deadline_ms: deadlineMs,
    sources,
    workers,
    load,
    backend_retry_key: topo.backendKey,
  },
  skipped,
  rows,
  verdict: floodVerdict(rows, machineInfo().cores),
};
log('');
log(textTable(rows));
log('');
for (const l of verdictLines(res)) log(l);
writeResults(res);
log(`done in ${res.duration_s} s`);
