// `npm run bench:xdp [-- --rounds N] [--routers id,id] [--trial-ms MS] [--rate-start PPS] [--out DIR] [--note TEXT] [--report-only]`:
// the XDP data path (issue 15) beside `quic-lb serve` on node:dgram, nginx's UDP proxy and the
// bare node:dgram relay, in one run, in network namespaces (bench/xdp/topology.ts): udp-blast
// in a load namespace sends QUIC-LB-routable short-header datagrams (plaintext and four-pass
// CIDs minted by the library for each flow's backend) from many source ports over veth to the
// router under test, each router in an LB namespace of its own, udp-sink in a sink namespace
// receives what they forward (five backends: one address, five ports) and counts loss and
// misdeliveries. The search is bench:forwarder's (runForwarderBench: `--rounds` rate searches
// alternating the routers step by step, medians), on the NativeEngine placed in the
// namespaces, with CPU counted over the whole path (NativeEngine `cpu: 'path'`): XDP's work runs
// in softirq, which no router process is charged for. Plus a no-LB candidate (load -> router
// namespace -> sink) whose CPU at the same rate is subtracted to give each router's own cost.
// Root only; needs clang and libbpf-dev (npm run build makes dist/xdp), cc, nginx for its row.
// Writes bench/results/xdp.{json,md}. Every process is stopped by PID and the namespaces deleted
// on success, failure and Ctrl-C (test/netns/netns.ts).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { BenchResults } from '../report/types.js';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { canUseNetns } from '../../test/netns/netns.js';
import { ensureBuilt, repoRoot } from '../harness/build.js';
import { PROFILES, withOverrides, type Profile } from '../harness/profiles.js';
import {
  bareRelay,
  nginxRouter,
  quicLbRouter,
  type Algorithm,
  type RouterHandle,
  type RouterSpec,
} from '../harness/routers.js';
import { pairedRatio, runForwarderBench, sameRateCpuRatio } from '../forwarder/run.js';
import { NativeEngine, nativeToolsFromArgs } from '../native/native.js';
import { nginxAvailable } from '../routers/nginx.js';
import { parseArgs } from '../routers/args.js';
import { busyCores, busyNote, processTree } from '../lib/procstat.js';
import { enableBpfStats, xdpPrograms } from './bpf-stats.js';
import {
  DIRECT_ID,
  carried,
  cpuBreakdown,
  cpuOverDirect,
  renderXdpMarkdown,
  type Carried,
  type XdpExtra,
} from './report.js';
import { XdpTopology } from './topology.js';

const SCHEMES: Algorithm[] = ['plaintext', 'four-pass'];
const ATTACH = ['native', 'generic'] as const;

/**
 * The no-LB candidate: the load sent straight to sink 0 through the router namespace, as the
 * routers' rows send it through an LB; its CPU is the path's own cost (load, veth, sink).
 */
export function noLb(): RouterSpec {
  return {
    id: DIRECT_ID,
    label: 'no LB (load -> router ns -> sink)',
    family: 'bare',
    scheme: 'plaintext',
    workers: 1,
    start(env) {
      const [host, port] = env.sinks[0].split(':');
      const none = async (): Promise<void> => {};
      return Promise.resolve({
        target: { host, port: Number(port) },
        pids: () => [],
        restart: none,
        setPool: none,
        stop: none,
      });
    },
  };
}

/**
 * `spec` whose handle records, before it stops, what its `quic-lb serve` says it forwarded and
 * (XDP) the program's mean run time per datagram.
 */
function recordingCarried(
  spec: RouterSpec,
  topo: XdpTopology,
  into: Record<string, Carried>,
  programNs: Record<string, number | null>,
): RouterSpec {
  return {
    ...spec,
    async start(env, pool, host): Promise<RouterHandle> {
      const h = await spec.start(env, pool, host);
      return {
        ...h,
        target: h.target,
        pids: () => h.pids(),
        restart: () => h.restart(),
        setPool: (p) => h.setPool(p),
        async stop() {
          into[spec.id] = carried(await topo.metrics(host));
          const progs = xdpPrograms(h.pids().flatMap((pid) => processTree(pid)));
          const runs = progs.reduce((a, p) => a + p.run_cnt, 0);
          if (progs.length)
            programNs[spec.id] = runs ? Math.round(progs.reduce((a, p) => a + p.run_time_ns, 0) / runs) : null;
          await h.stop();
        },
      };
    },
  };
}

/** The candidates, in the order the search alternates them. */
export function xdpRouters(native: boolean): RouterSpec[] {
  const out: RouterSpec[] = [];
  for (const scheme of SCHEMES) {
    for (const attach of ATTACH)
      if (attach === 'generic' || native)
        out.push(quicLbRouter(scheme, 1, undefined, undefined, { interface: 'eth0', attach }));
    out.push(quicLbRouter(scheme));
  }
  out.push(nginxRouter(), bareRelay(), noLb());
  return out;
}

const LIMITS = (native: string): string[] => [
  "Two shared cores: udp-blast, the namespaces' forwarding, the router under test and udp-sink all run on the same two vCPUs, beside other engineers' work.",
  "The generator: one udp-blast process sends from one core; on veth a send carries the datagram through every hop in the sender's own softirq (router namespace, the LB's XDP program and XDP_TX, router namespace again, the sink's socket), so for XDP the whole chain runs on the sending core: the XDP rows are bounded by what one core does for the entire path, and the no-LB row shows that path's ceiling.",
  'veth: no hardware queues, no RSS, no offloads that spread flows over cores; native XDP on veth converts each sk_buff to an XDP frame and, for XDP_TX, needs NAPI on the peer (the pass program), generic XDP runs after the sk_buff is built. A NIC driver with native XDP skips the sk_buff entirely: these are lower bounds for XDP.',
  "The cipher: four-pass decodes the CID with AES-128 written for BPF (xdp/aes.h, four block encryptions per datagram) in XDP, and with Node's AES in node:dgram.",
  ...(native ? [`Native attach: ${native}`] : []),
];

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const out = path.resolve(args.get('out') ?? path.join(repoRoot, 'bench/results'));
  if (args.has('report-only')) {
    // Re-renders xdp.md from xdp.json (after a change of the report).
    const { xdp, ...res } = JSON.parse(readFileSync(path.join(out, 'xdp.json'), 'utf8')) as BenchResults & {
      xdp: XdpExtra;
    };
    writeFileSync(path.join(out, 'xdp.md'), renderXdpMarkdown(res, xdp));
    return;
  }
  if (!canUseNetns()) throw new Error('bench:xdp: needs root and `ip netns` (network namespaces)');
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  const base = withOverrides(PROFILES.quick, args);
  // bench:forwarder's search (longer steps, fine bisection), with a ceiling above what XDP offers here.
  const profile: Profile = {
    ...base,
    trialMs: args.has('trial-ms') ? base.trialMs : 1200,
    rateStart: args.has('rate-start') ? base.rateStart : 50_000,
    rateMax: 2_000_000,
    rateFactor: 1.3,
    retryFailedStep: true,
    refineSteps: 4,
    refineStop: 1.03,
    latencyMs: 1000,
  };
  const rounds = Number(args.get('rounds') ?? 3);
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 20))
    throw new Error('bench:xdp: --rounds must be an integer 1..20');
  const busy = await busyCores();
  const tools = nativeToolsFromArgs(new Map([...args, ['native', '']]), log)!;
  ensureBuilt(log);
  if (!existsSync(path.join(repoRoot, 'dist', 'xdp', 'quic_lb.bpf.o')))
    throw new Error(
      'bench:xdp: dist/xdp/quic_lb.bpf.o missing: npm run build with clang and libbpf-dev (scripts/system-deps.sh)',
    );
  const skipped: { router: string; reason: string }[] = [];
  const probe = xdpRouters(true);
  let wanted = args.has('routers') ? probe.filter((r) => args.get('routers')!.split(',').includes(r.id)) : probe;
  if (!nginxAvailable()) {
    skipped.push({ router: 'nginx', reason: 'nginx or its stream module is not installed' });
    wanted = wanted.filter((r) => r.family !== 'nginx');
  }
  // One LB namespace per router (the no-LB candidate needs none).
  const topo = await XdpTopology.create(Math.max(1, wanted.filter((r) => r.id !== DIRECT_ID).length));
  const into: Record<string, Carried> = {};
  const programNs: Record<string, number | null> = {};
  const restoreStats = enableBpfStats();
  try {
    if (topo.nativeUnavailable) {
      skipped.push({ router: 'XDP native attach', reason: topo.nativeUnavailable });
      wanted = wanted.filter((r) => !r.id.endsWith('-xdp-native'));
    }
    // no-LB last: its index has no LB namespace.
    const routers = [...wanted.filter((r) => r.id !== DIRECT_ID), ...wanted.filter((r) => r.id === DIRECT_ID)].map(
      (r) => (r.family === 'quic-lb' ? recordingCarried(r, topo, into, programNs) : r),
    );
    const tmp = mkdtempSync(path.join(tmpdir(), `${topo.fleet.id}-`));
    topo.fleet.onTeardown(() => rmSync(tmp, { recursive: true, force: true }));
    const engine = new NativeEngine(tools, {
      conns: profile.conns,
      packetSize: profile.packetSize,
      seed: profile.seed,
      tmp,
      topology: topo.native(),
      netns: topo.placement(),
      cpu: 'path',
    });
    const command = `npm run bench:xdp${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
    log(`bench:xdp: ${routers.map((r) => r.id).join(', ')}; ${rounds} round(s); namespaces ${topo.fleet.id}-*`);
    const res = await runForwarderBench({
      profile,
      routers,
      log,
      preliminary: args.has('preliminary') || busy > 0.5,
      note: [args.get('note') ?? '', busyNote(busy)].filter(Boolean).join(' '),
      command,
      native: tools,
      rounds,
      compare: 'none',
      engine,
    });
    res.skipped.push(...skipped);
    res.params.latency_pps = profile.latencyRate;
    res.params.load_tools =
      'native udp-blast (load namespace, one process, sendmmsg batches of 32, one socket per flow up to 1000) and udp-sink (sink namespace, recvmmsg)';
    for (const scheme of SCHEMES) {
      const node = `quic-lb-${scheme}`;
      for (const attach of ATTACH) {
        const xdp = `${node}-xdp-${attach}`;
        for (const other of [node, 'nginx', 'bare-relay']) {
          res.ratios[`${xdp}/${other} pps`] = pairedRatio(res.rounds!, xdp, other);
          res.ratios[`${xdp}/${other} cpu per datagram over the no-LB path, same rate`] = ratioOf(
            cpuOverDirect(res.rate_search, xdp),
            cpuOverDirect(res.rate_search, other),
          );
          res.ratios[`${xdp}/${other} cpu per datagram, whole path, same rate`] = sameRateCpuRatio(
            res.rate_search,
            xdp,
            other,
          );
        }
      }
    }
    for (const k of Object.keys(res.ratios)) if (res.ratios[k] === null) delete res.ratios[k];
    const x: XdpExtra = {
      topology:
        'load ns (udp-blast) -> router ns -> one LB ns per router under test (listens on its own 198.18.(10+i).2:4433; XDP on its eth0) -> router ns -> sink ns (udp-sink, five backends on one address); veth links; every LB has ip_forward=1 and a pass-only XDP program (native) on the router side of its veth.',
      cpu_method:
        "this kernel has no CONFIG_IRQ_TIME_ACCOUNTING, so softirq work (the veth hops, the router namespace's forwarding, the XDP program and its XDP_TX) is charged to the task it runs in: the sender (udp-blast inside sendmmsg, or the router process when it sends) or ksoftirqd. The whole-path CPU of a trial is therefore the sum of the router's process tree, udp-blast (getrusage user + system), udp-sink and the ksoftirqd threads (/proc/PID/stat utime + stime), per delivered datagram; other work on the machine is not in it. \"Over the no-LB path\" subtracts, for every rate both held in the same round, the no-LB candidate's whole-path CPU per datagram: what the router (and the extra veth hops to its namespace) adds. The breakdown columns are medians over the trials that held at >= half the router's highest held rate. \"XDP program, ns/run\": the program's own run time (kernel.bpf_stats_enabled=1 for the run, read from the agent's program fd), mean over every datagram it saw in the run: the decision, decode, encapsulation, checksum and fib lookup, not the veth hops.",
      native_unavailable: topo.nativeUnavailable,
      breakdown: Object.fromEntries(
        res.routers.map((r) => [r.id, cpuBreakdown(engine.trialCpu, r.id, profile.lossThreshold)]),
      ),
      carried: into,
      program_ns: programNs,
      lb_cpu_over_direct: Object.fromEntries(res.routers.map((r) => [r.id, cpuOverDirect(res.rate_search, r.id)])),
      limits: LIMITS(topo.nativeUnavailable),
    };
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, 'xdp.json'), `${JSON.stringify({ ...res, xdp: x }, null, 2)}\n`);
    writeFileSync(path.join(out, 'xdp.md'), renderXdpMarkdown(res, x));
    log(`wrote ${path.relative(repoRoot, path.join(out, 'xdp.json'))}, xdp.md`);
    log(renderXdpMarkdown(res, x));
  } finally {
    await topo.teardown();
    restoreStats();
  }
}

function ratioOf(a: number | null, b: number | null): number | null {
  return a !== null && b !== null && b > 0 ? Math.round((a / b) * 1000) / 1000 : null;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
