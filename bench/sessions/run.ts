// `npm run bench:sessions [-- --quick] [--sizes 250,500] [--seconds T] [--rebind-share 0.1] [--seed N]`
//   [--designs id,id] [--out DIR] [--no-readme] [--note TEXT] [--report-only]
// The session benchmark (issue 13 §3): the same seeded voice workload through each design, one
// session count at a time, the designs in turn. Per design and count: start the tier, handshake
// every session through it, then frames each way (the sinks echo) with the seeded NAT rebindings
// and one tier restart, then tally the per-frame bitmaps (accounting.ts). Builds what it runs,
// starts redis-server and nginx on loopback, stops every process it started by PID.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { ensureBuilt, repoRoot } from '../harness/build.js';
import { Engine, INITIAL_POOL } from '../harness/engine.js';
import { commitId } from '../harness/suite.js';
import { percentile } from '../lib/histogram.js';
import { sleep } from '../lib/proc.js';
import { busyCores, busyNote, machineInfo, treeCpuUs, treeRssBytes } from '../lib/procstat.js';
import { redisAvailable } from '../lib/redis-server.js';
import type { RunEvent } from '../load/generator.js';
import { nginxAvailable } from '../routers/nginx.js';
import { parseArgs } from '../routers/args.js';
import type { RouterHandle } from '../harness/routers.js';
import { tallySessions } from './accounting.js';
import { allDesigns, SESSION_SCHEME, type Design } from './designs.js';
import {
  sessionCharts,
  renderSessionsMarkdown,
  sessionRow,
  sessionsReadmeSection,
  type SessionResults,
  type SessionRow,
} from './report.js';
import {
  bitmapRowBytes,
  FRAME_SIZE,
  HANDSHAKE_TAIL,
  latencyFrames,
  planSessions,
  type SessionPlan,
} from './workload.js';

const args = parseArgs(process.argv.slice(2));
const quick = args.has('quick');
const sizes = (args.get('sizes') ?? (quick ? '50,100,200' : '250,500,1000,2000')).split(',').map(Number);
const durationMs = Number(args.get('seconds') ?? (quick ? 6 : 20)) * 1000;
const rebindShare = Number(args.get('rebind-share') ?? 0.1);
const seed = Number(args.get('seed') ?? 13);
const base = quick ? 'sessions-quick' : 'sessions';
const outDir = path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results'));
const log = (s: string): void => void process.stdout.write(`${s}\n`);
/** Time the stragglers and echoes get after the last frame (across a restart: the same). */
const SETTLE_MS = 500;

const only = args.get('designs')?.split(',');
let designs = allDesigns().filter((d) => !only || only.includes(d.id));
if (!redisAvailable()) {
  log('redis-server is not installed: skipping the Redis-mapped designs (scripts/system-deps.sh installs it)');
  designs = designs.filter((d) => d.router?.family !== 'redis');
}
if (!nginxAvailable()) {
  log('nginx or its stream module is not installed: skipping nginx (scripts/system-deps.sh installs it)');
  designs = designs.filter((d) => d.router?.family !== 'nginx');
}

const sumCpu = (pids: number[]): number => pids.reduce((a, p) => a + treeCpuUs(p), 0);
const sumRss = (pids: number[]): number => pids.reduce((a, p) => a + treeRssBytes(p), 0);

/** One design at one session count: a fresh tier, the handshakes, the frames, the tally. */
async function measure(engine: Engine, design: Design, index: number, plan: SessionPlan): Promise<SessionRow> {
  const rowBytes = bitmapRowBytes(plan);
  const handle: RouterHandle | undefined = design.router ? await engine.start(design.router, index) : undefined;
  try {
    const tierPids = (): number[] => handle?.pids() ?? [];
    // Handshakes: through the tier (the direct path: owners round robin, nothing crosses a tier).
    const hsCpu0 = sumCpu(tierPids());
    const hs = await engine.sessionHandshake(
      handle?.target ?? engine.sinkTarget(0),
      SESSION_SCHEME,
      HANDSHAKE_TAIL,
      handle ? undefined : (i) => INITIAL_POOL[i % INITIAL_POOL.length],
    );
    const handshakeCpuUs = handle ? sumCpu(tierPids()) - hsCpu0 : null;
    if (design.preferredAddress) await engine.connectOwners();
    // Fresh bitmaps after the handshake, so its datagrams are not counted as frames.
    const bits = await engine.sessionMode(rowBytes, latencyFrames(plan));

    // Frames. The tier's CPU is summed across its restart: what the killed process used up to
    // the kill, then what the new one used from when it was ready (its start-up left out).
    let cpuBase = sumCpu(tierPids());
    let tierCpuUs = 0;
    let rssBefore = 0;
    const redisPid = engine.redis?.pid ?? -1;
    const usesRedis = design.router?.family === 'redis';
    const redisCpu0 = usesRedis ? treeCpuUs(redisPid) : 0;
    const events: RunEvent[] = [
      ...plan.rebinds.map((r) => ({ atMs: r.atMs, type: 'rebind-conn' as const, conn: r.conn })),
      ...(handle ? [{ atMs: plan.restartAtMs, type: 'mark' as const }] : []),
    ];
    const actions = handle
      ? [
          {
            atMs: plan.restartAtMs,
            run: async () => {
              tierCpuUs += sumCpu(tierPids()) - cpuBase;
              rssBefore = sumRss(tierPids());
              await handle.restart();
              cpuBase = sumCpu(tierPids());
            },
          },
        ]
      : [];
    const r = await engine.sessionRun({
      rate: plan.rate,
      durationMs: plan.durationMs,
      target: handle?.target ?? engine.sinkTarget(0),
      events,
      actions,
      settleMs: SETTLE_MS,
    });
    tierCpuUs += sumCpu(tierPids()) - cpuBase;
    const tally = tallySessions({
      rowBytes,
      up: bits.up,
      down: bits.down,
      sent: r.gen.sent,
      rebindSeq: r.gen.rebindSeq,
      markSeq: r.gen.markSeq,
      owner: engine.owner,
    });
    const row = sessionRow({
      design,
      durationMs: plan.durationMs,
      elapsedMs: r.run.elapsedMs,
      tally,
      tierCpuUs: handle ? tierCpuUs : null,
      handshakeCpuUs,
      redisCpuUs: usesRedis && engine.redis?.pid === redisPid ? treeCpuUs(redisPid) - redisCpu0 : null,
      handshakeDatagrams: hs.datagrams,
      upViaTier: r.sinks.viaTier,
      downViaTier: r.gen.echoesViaTier,
      received: r.sinks.received.reduce((a, b) => a + b, 0),
      answered: r.gen.echoes,
      p50Us: percentile(r.sinks.hist, 50),
      p99Us: percentile(r.sinks.hist, 99),
      rttP50Us: percentile(r.rttHist, 50),
      rttP99Us: percentile(r.rttHist, 99),
      rssBytes: handle ? Math.max(rssBefore, sumRss(tierPids())) : null,
      redisMemMb: usesRedis ? await engine.redisMemoryMb() : null,
    });
    return row;
  } finally {
    await handle?.stop();
    if (design.router?.family === 'redis') await engine.flushRedis();
  }
}

/** Writes `<base>.json`, `<base>.md`, `<base>-*.svg` into `outDir` and, unless told not to, the README section. */
function writeResults(res: SessionResults): void {
  mkdirSync(outDir, { recursive: true });
  const svgs = sessionCharts(res);
  const links: Record<string, string> = {};
  for (const [name, text] of Object.entries(svgs)) {
    links[name] = `${base}-${name}.svg`;
    writeFileSync(path.join(outDir, links[name]), text);
  }
  writeFileSync(path.join(outDir, `${base}.json`), `${JSON.stringify(res, null, 2)}\n`);
  writeFileSync(path.join(outDir, `${base}.md`), renderSessionsMarkdown(res, links));
  log(`wrote ${path.relative(repoRoot, outDir)}/${base}.{json,md} and ${Object.values(links).join(', ')}`);
  if (!args.has('no-readme') && !args.has('out')) {
    const readme = path.join(repoRoot, 'README.md');
    const text = readFileSync(readme, 'utf8');
    const open = '<!-- section:sessions -->';
    const close = '<!-- /section:sessions -->';
    const a = text.indexOf(open);
    const b = text.indexOf(close);
    if (a >= 0 && b > a) {
      writeFileSync(readme, `${text.slice(0, a + open.length)}\n${sessionsReadmeSection(res, base)}\n${text.slice(b)}`);
      log('updated the README sessions section');
    }
  }
}

if (args.has('report-only')) {
  // Re-render the report, charts and README section from the JSON file already in `outDir`.
  writeResults(JSON.parse(readFileSync(path.join(outDir, `${base}.json`), 'utf8')) as SessionResults);
  process.exit(0);
}

const busy = await busyCores();
const note = [quick ? 'Quick profile: small session counts, short runs.' : '', args.get('note') ?? '', busyNote(busy)]
  .filter(Boolean)
  .join(' ');
ensureBuilt(log);
const started = Date.now();
const res: SessionResults = {
  date: new Date().toISOString(),
  commit: commitId(),
  node: process.version,
  profile: quick ? 'quick' : 'default',
  command: `npm run bench:sessions${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  note,
  duration_s: 0,
  machine: { ...machineInfo(), loadavg_start: loadavg().map((l) => Math.round(l * 100) / 100) },
  seed,
  rebind_share: rebindShare,
  duration_ms: durationMs,
  sizes,
  rows: [],
};
log(
  `session benchmark: ${sizes.join(', ')} sessions, ${durationMs / 1000} s each, designs ${designs.map((d) => d.id).join(', ')}`,
);
for (const n of sizes) {
  const plan = planSessions({ seed, sessions: n, durationMs, rebindShare });
  const engine = new Engine({
    conns: n,
    packetSize: FRAME_SIZE,
    seed,
    maxFlows: n * 2,
    needRedis: designs.some((d) => d.router?.family === 'redis'),
    spareShare: 1,
  });
  try {
    await engine.setup();
    for (const [i, d] of designs.entries()) {
      const row = await measure(engine, d, i, plan);
      res.rows.push(row);
      const t = row.tally;
      log(
        `${n} ${d.id}: ${t.established}/${t.sessions} up, ${row.frame_rate} f/s, tier ${row.tier_cpu_pct_per_1000 ?? '–'} %/1000, via tier ${row.frames_via_tier}, p50 ${row.p50_us} µs, lost sessions ${t.lostSessions.any}, broken rebind ${t.broken.rebind} restart ${t.broken.restart} other ${t.broken.steady}`,
      );
      await sleep(300);
    }
  } finally {
    await engine.close();
  }
}
res.duration_s = Math.round((Date.now() - started) / 1000);

writeResults(res);
log(`done in ${res.duration_s} s`);
