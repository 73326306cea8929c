// `npm run bench [-- --full] [--routers a,b] [--out DIR] [--preliminary] [--note TEXT] [--no-readme] [--report-only] [--no-native | --native]`
//   [--conns N] [--size BYTES] [--rate-start PPS] [--trial-ms MS] [--scenario-rate PPS] [--scenario-ms MS] [--rebind-share 0.1] [--memory-steps 1000,10000]
// The routing benchmark: builds what it runs, starts redis-server and nginx itself, measures
// every router alternately (the rate search on the native load tools in bench/native unless
// --no-native; --native fails when they cannot be built), writes bench/results/latest.{json,md} + SVG charts and the README's
// bench section, and stops everything it started.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ensureBuilt, repoRoot } from './harness/build.js';
import { busyCores, busyNote } from './lib/procstat.js';
import { PROFILES, withOverrides, type Profile } from './harness/profiles.js';
import { allRouters } from './harness/routers.js';
import { runRoutingSuite } from './harness/suite.js';
import { nginxAvailable } from './routers/nginx.js';
import { redisAvailable } from './lib/redis-server.js';
import { parseArgs } from './routers/args.js';
import { nativeToolsFromArgs } from './native/native.js';
import { updateReadmeFromResults, writeReport } from './report/write.js';
import type { BenchResults } from './report/types.js';

const args = parseArgs(process.argv.slice(2));
const base = PROFILES[(args.get('profile') ?? (args.has('full') ? 'full' : 'quick')) as Profile['name']];
if (!base) throw new Error(`unknown profile ${args.get('profile')}`);
const profile: Profile = withOverrides(base, args);
const outDir = path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results'));
const log = (s: string): void => void process.stdout.write(`${s}\n`);

const only = args.get('routers')?.split(',');
let routers = allRouters().filter((r) => !only || only.includes(r.id));
if (!redisAvailable()) {
  log('redis-server is not installed: skipping the Redis-mapped routers (scripts/system-deps.sh installs it)');
  routers = routers.filter((r) => r.family !== 'redis');
}
if (!nginxAvailable()) {
  log('nginx or its stream module is not installed: skipping the nginx peer (scripts/system-deps.sh installs it)');
  routers = routers.filter((r) => r.family !== 'nginx');
}

// Whether the machine is busy now (the load average still counts a benchmark that just ended).
const busy = await busyCores();
const note = [args.get('note') ?? '', busyNote(busy)].filter(Boolean).join(' ');

if (args.has('report-only')) {
  // Re-render the reports, charts and README section from the JSON files already in `outDir`.
  for (const base of ['latest', 'forwarder', 'forwarder-ciphers', 'forwarder-baseline']) {
    const file = path.join(outDir, `${base}.json`);
    if (existsSync(file)) writeReport(JSON.parse(readFileSync(file, 'utf8')) as BenchResults, outDir, base);
  }
  if (!args.has('no-readme') && !args.has('out')) updateReadmeFromResults(repoRoot);
  process.exit(0);
}

ensureBuilt(log);
const native = nativeToolsFromArgs(args, log);
log(`rate search load: ${native ? 'native udp-blast / udp-sink (bench/native, cc -O2)' : 'Node generator and sinks'}`);
log(`routing benchmark, profile ${profile.name}: ${routers.map((r) => r.id).join(', ')}`);
const res = await runRoutingSuite({
  profile,
  routers,
  native,
  log,
  preliminary: args.has('preliminary'),
  note,
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
});
const files = writeReport(res, outDir);
log(`wrote ${files.map((f) => path.relative(repoRoot, f)).join(', ')}`);
if (!args.has('no-readme') && !args.has('out')) {
  if (updateReadmeFromResults(repoRoot)) log('updated the README bench section');
}
for (const t of res.targets)
  log(`target: ${t.name}: ${t.value} (${t.target}) ${t.pass === null ? '' : t.pass ? 'met' : 'NOT met'}`);
log(`done in ${res.duration_s} s`);
