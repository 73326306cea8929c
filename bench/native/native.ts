// Native load tools for the forwarding benchmark: `udp-blast` (paced sendmmsg sender) and
// `udp-sink` (recvmmsg sinks), C sources in this directory, compiled with `cc -O2` at benchmark
// time into .tmp/bench-native/ (gitignored). They cost a fraction of the Node generator's and
// sinks' CPU per packet, so on a 2-core machine the router under test, not the load, is what
// runs out of CPU. The harness still builds every datagram: short-header QUIC packets whose
// DCIDs the library minted (encodeConnectionId) for the backend that owns each flow, written to
// a packets file the blaster replays; the sinks know each flow's owner and count misdeliveries.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createConfig, encodeConnectionId } from '../../src/cid/index.js';
import type { CidScheme, Target } from '../load/generator.js';
import { Prng } from '../lib/prng.js';
import { inNetns, spawnReady, type Child } from '../lib/proc.js';
import { softirqdCpuUs, treeCpuUs, treeRssBytes } from '../lib/procstat.js';
import type { RedisServer } from '../lib/redis-server.js';
import { repoRoot } from '../harness/build.js';
import {
  INITIAL_POOL,
  SCHEMES,
  SERVER_IDS,
  SOURCE_ADDRESSES,
  trialRecord,
  type TrialOptions,
  type TrialResult,
} from '../harness/engine.js';
import type { Algorithm, Env, RouterHandle, RouterPlacement, RouterSpec } from '../harness/routers.js';

/** Length of the native trailer (bench/native/common.h): magic, trial, flow, seq, length, send time. */
export const NATIVE_TRAILER_LENGTH = 24;
export const NATIVE_TRAILER_MAGIC = 0xb16b;
/** Owner octet meaning "any backend" (no misdelivery check). */
export const ANY_OWNER = 255;
/** Owner octet meaning "learn": the first backend that receives the flow in a trial owns it. */
export const LEARN_OWNER = 254;

export const NATIVE_DIR = path.join(repoRoot, 'bench', 'native');
export const NATIVE_BUILD_DIR = path.join(repoRoot, '.tmp', 'bench-native');

export interface NativeTools {
  blast: string;
  sink: string;
}

/**
 * Compiles udp-blast and udp-sink with `cc -O2` (again only when a source is newer than the
 * binary). Returns the binaries, or `{ error }` saying why native mode is not available.
 */
export function buildNativeTools(outDir = NATIVE_BUILD_DIR): NativeTools | { error: string } {
  const cc = process.env.CC ?? 'cc';
  const probe = spawnSync(cc, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0)
    return { error: `no C compiler (${cc}) found: native load tools unavailable, using the Node generator and sinks` };
  mkdirSync(outDir, { recursive: true });
  const header = path.join(NATIVE_DIR, 'common.h');
  const tools: Record<keyof NativeTools, string> = { blast: 'udp-blast', sink: 'udp-sink' };
  const out = {} as NativeTools;
  for (const [k, name] of Object.entries(tools) as [keyof NativeTools, string][]) {
    const src = path.join(NATIVE_DIR, `${name}.c`);
    const bin = path.join(outDir, name);
    const newest = Math.max(statSync(src).mtimeMs, statSync(header).mtimeMs);
    if (!existsSync(bin) || statSync(bin).mtimeMs < newest) {
      const r = spawnSync(cc, ['-O2', '-Wall', '-o', bin, src], { encoding: 'utf8' });
      if (r.status !== 0)
        return {
          error: `${cc} failed to build ${name}: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(0, 3).join(' ')}`,
        };
    }
    out[k] = bin;
  }
  return out;
}

/**
 * The native tools a benchmark command uses, from its flags: none with `--no-native`; with
 * `--native` a build failure is an error; otherwise a failure is logged and the Node tools are used.
 */
export function nativeToolsFromArgs(args: Map<string, string>, log: (s: string) => void): NativeTools | undefined {
  if (args.has('no-native')) return undefined;
  const t = buildNativeTools();
  if (!('error' in t)) return t;
  if (args.has('native')) throw new Error(`bench: --native: ${t.error}`);
  log(`native load tools skipped: ${t.error}`);
  return undefined;
}

export interface FlowPacket {
  flow: number;
  data: Uint8Array;
}

/** The blaster's input: "QLBP", u32 count, then per record u16 length, u32 flow, the datagram. */
export function encodePacketsFile(packets: FlowPacket[]): Buffer {
  const size = 8 + packets.reduce((a, p) => a + 6 + p.data.length, 0);
  const buf = Buffer.alloc(size);
  buf.write('QLBP', 0, 'latin1');
  buf.writeUInt32BE(packets.length, 4);
  let o = 8;
  for (const p of packets) {
    if (p.data.length < NATIVE_TRAILER_LENGTH || p.data.length > 0xffff)
      throw new Error(`bench: packet of flow ${p.flow} has length ${p.data.length}`);
    buf.writeUInt16BE(p.data.length, o);
    buf.writeUInt32BE(p.flow >>> 0, o + 2);
    buf.set(p.data, o + 6);
    o += 6 + p.data.length;
  }
  return buf;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/**
 * One 1-RTT short-header packet per flow (`size` octets; fixed bit set, random low bits, the
 * DCID minted with the library for `serverIds[owners[flow]]`, seeded random filler; the last
 * 24 octets are left for the blaster's trailer).
 */
export function buildFlowPackets(scheme: CidScheme, owners: Uint8Array, size: number, seed: number): FlowPacket[] {
  const config = createConfig({
    configId: scheme.configId,
    serverIdLength: scheme.serverIdLength,
    nonceLength: scheme.nonceLength,
    ...(scheme.key ? { key: hexBytes(scheme.key) } : {}),
  });
  const rng = new Prng(seed);
  const nonce = new Uint8Array(config.nonceLength);
  const out: FlowPacket[] = [];
  for (let f = 0; f < owners.length; f++) {
    const sid = new Uint8Array(scheme.serverIdLength);
    let id = scheme.serverIds[owners[f] === ANY_OWNER || owners[f] === LEARN_OWNER ? 0 : owners[f]];
    for (let i = scheme.serverIdLength - 1; i >= 0; i--, id = Math.floor(id / 256)) sid[i] = id & 0xff;
    rng.fill(nonce);
    const cid = encodeConnectionId(config, sid, nonce);
    const data = new Uint8Array(Math.max(size, 1 + cid.length + 1 + NATIVE_TRAILER_LENGTH));
    data[0] = 0x40 | (rng.nextU32() & 0x3f);
    data.set(cid, 1);
    rng.fill(data, 1 + cid.length, data.length - NATIVE_TRAILER_LENGTH);
    out.push({ flow: f, data });
  }
  return out;
}

export interface BlastOptions {
  file: string;
  dest: Target;
  rate: number;
  durationMs?: number;
  count?: number;
  /** Source addresses (sockets are bound to them in turn). */
  src: string[];
  sockets: number;
  batch?: number;
  trial: number;
  /** Network namespace to send from (`ip netns exec`); default this one. */
  netns?: string;
}

export interface BlastResult {
  sent: number;
  attempted: number;
  elapsed_ms: number;
  send_errors: number;
  batches: number;
  /** The blaster's own CPU time (user + system), µs. */
  cpu_us: number;
}

export function runBlast(tools: NativeTools, o: BlastOptions): Promise<BlastResult> {
  const args = [
    '--file',
    o.file,
    '--dest',
    `${o.dest.host}:${o.dest.port}`,
    '--rate',
    String(o.rate),
    ...(o.count !== undefined ? ['--count', String(o.count)] : ['--duration-ms', String(o.durationMs ?? 1000)]),
    '--src',
    o.src.join(','),
    '--sockets',
    String(o.sockets),
    '--batch',
    String(o.batch ?? 32),
    '--trial',
    String(o.trial & 0xffff),
  ];
  const [cmd, argv] = inNetns(o.netns, tools.blast, args);
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`udp-blast failed: ${err.message} ${stderr}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as BlastResult);
      } catch {
        reject(new Error(`udp-blast printed no result: ${stdout} ${stderr}`));
      }
    });
  });
}

export interface SinkReport {
  trial: number;
  received: number;
  per_backend: number[];
  wrong: number;
  corrupt: number;
  stale: number;
  foreign: number;
  duplicates: number;
  max_seq: number;
  flows_seen: number;
  p50_us: number | null;
  p99_us: number | null;
  per_flow?: number[];
}

/** The udp-sink process: one socket per address (backend index = position), driven over stdin. */
export class NativeSinks {
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  private buf = '';

  private constructor(
    private readonly child: Child,
    readonly ports: number[],
  ) {
    child.proc.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  static async start(
    tools: NativeTools,
    addresses: string[],
    flows: number,
    extra: string[] = [],
    netns?: string,
  ): Promise<NativeSinks> {
    let ports: number[] = [];
    const args = ['--bind', addresses.map((a) => `${a}:0`).join(','), '--flows', String(flows), ...extra];
    const child = await spawnReady(...inNetns(netns, tools.sink, args), {
      ready: /READY ([\d,]+)/,
      timeoutMs: 5000,
      onReady: (m) => (ports = m[1].split(',').map(Number)),
    });
    return new NativeSinks(child, ports);
  }

  private next(timeoutMs = 5000): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`udp-sink did not answer: ${this.child.output().slice(-300)}`)),
        timeoutMs,
      );
      this.waiters.push((line) => {
        clearTimeout(t);
        resolve(line);
      });
    });
  }

  /** Zeroes the counters; only datagrams of `trial` count from now on; `ownersFile`: one octet per flow. */
  async reset(trial: number, ownersFile?: string): Promise<void> {
    this.child.proc.stdin!.write(`reset ${trial & 0xffff}${ownersFile ? ` ${ownersFile}` : ''}\n`);
    await this.next();
  }

  async report(): Promise<SinkReport> {
    this.child.proc.stdin!.write('report\n');
    return JSON.parse(await this.next()) as SinkReport;
  }

  async close(): Promise<void> {
    await this.child.stop('SIGTERM');
  }
}

/**
 * Owner of each flow: for quic-lb the backends of the initial pool in turn (the CID names it);
 * one backend for the bare relay and the direct path; for routers that pick a flow's backend
 * themselves (Redis-mapped, nginx) the sink learns it from the flow's first datagram and counts
 * every later one elsewhere as misdelivered.
 */
export function flowOwners(conns: number, spec: RouterSpec | undefined): Uint8Array {
  const o = new Uint8Array(conns);
  for (let f = 0; f < conns; f++) {
    if (spec?.family === 'quic-lb') o[f] = INITIAL_POOL[f % INITIAL_POOL.length];
    else if (spec?.family === 'redis' || spec?.family === 'nginx') o[f] = LEARN_OWNER;
    else o[f] = INITIAL_POOL[0];
  }
  return o;
}

/** Loopback addresses of the native sinks (the Node sinks use 127.0.3.10-14). */
export const NATIVE_SINK_ADDRESSES = ['127.0.3.30', '127.0.3.31', '127.0.3.32', '127.0.3.33', '127.0.3.34'];

/** Where the NativeEngine's pieces run when they are not all on loopback here (bench/xdp). */
export interface NativeTopology {
  /** Namespace of udp-blast and its source addresses (sockets bound to them in turn). */
  loadNetns: string;
  sources: string[];
  /** Namespace of udp-sink and the address of each sink (backend index = position). */
  sinkNetns: string;
  sinkAddresses: string[];
  /** Listen address of router `index` (its namespace: Env.netns). */
  routerHost(index: number): string;
}

/**
 * CPU a trial cost, µs, by whom: the router's process tree, udp-blast (user + system: without
 * CONFIG_IRQ_TIME_ACCOUNTING the softirq work a send triggers, veth hops and XDP included, is
 * charged to the sending task), udp-sink, and the ksoftirqd threads (softirq work deferred to them).
 */
export interface TrialCpu {
  router: string;
  rate: number;
  received: number;
  /** Datagrams delivered per second, and the trial's loss (1 - received / attempted). */
  pps: number;
  loss: number;
  router_us: number;
  blast_us: number;
  sink_us: number;
  softirqd_us: number;
}

/**
 * The forwarding benchmark's engine in native mode: same `trial` contract as the Node Engine
 * (so the rate search is shared), steady short-header traffic only (no handshake: each flow's
 * owner is fixed, its CID minted for that owner; no scenario events, no echo).
 */
export class NativeEngine {
  private sinks!: NativeSinks;
  env!: Env;
  private trialId = 1;
  private readonly files = new Map<string, { packets: string; owners: string }>();
  /** CPU µs per delivered packet of the load tools themselves, one entry per trial, with the trial's offered rate. */
  readonly loadCpu: { pps: number; blast: number; sink: number }[] = [];

  constructor(
    readonly tools: NativeTools,
    readonly opts: {
      conns: number;
      packetSize: number;
      seed: number;
      tmp: string;
      batch?: number;
      /** The routing suite's redis-server, for the Redis-mapped routers. */
      redis?: RedisServer;
      /** Routers listen on 127.0.3.(hostBase + 2 × index); default 100. */
      hostBase?: number;
      /** Largest number of concurrent flows the routers will see (sizes nginx); default `conns`. */
      maxFlows?: number;
      /** Load, sinks and routers in network namespaces (default: all on loopback here). */
      topology?: NativeTopology;
      /**
       * What `cpu_us_per_packet` counts: `router` (default) the router's process tree; `path`
       * everything the trial cost (TrialCpu: router, udp-blast, udp-sink, ksoftirqd), so that
       * work done in softirq (XDP) is counted too.
       */
      cpu?: 'router' | 'path';
      /** Router namespaces (Env.netns), with `topology`. */
      netns?: RouterPlacement;
    },
  ) {}

  /** Each trial's CPU by whom (every trial, in order). */
  readonly trialCpu: TrialCpu[] = [];

  async setup(): Promise<void> {
    const topo = this.opts.topology;
    const addresses = topo?.sinkAddresses ?? NATIVE_SINK_ADDRESSES;
    this.sinks = await NativeSinks.start(this.tools, addresses, this.opts.conns, [], topo?.sinkNetns);
    const schemes = structuredClone(SCHEMES);
    for (const s of Object.values(schemes)) s.serverIds = SERVER_IDS;
    this.env = {
      ...(this.opts.netns ? { netns: this.opts.netns } : {}),
      sinks: addresses.map((a, i) => `${a}:${this.sinks.ports[i]}`),
      serverIds: SERVER_IDS,
      schemes,
      tmp: this.opts.tmp,
      maxFlows: this.opts.maxFlows ?? this.opts.conns,
      ...(this.opts.redis ? { redis: this.opts.redis } : {}),
    };
  }

  start(spec: RouterSpec, index: number): Promise<RouterHandle> {
    const host = this.opts.topology?.routerHost(index) ?? `127.0.3.${(this.opts.hostBase ?? 100) + index * 2}`;
    return spec.start(this.env, INITIAL_POOL, host);
  }

  sinkTarget(i: number): Target {
    const [host, port] = this.env.sinks[i].split(':');
    return { host, port: Number(port) };
  }

  private filesFor(spec: RouterSpec | undefined): { packets: string; owners: string } {
    const scheme: Algorithm = spec?.scheme ?? 'plaintext';
    const owner =
      spec?.family === 'quic-lb' ? 'lb' : spec?.family === 'redis' || spec?.family === 'nginx' ? 'learn' : 'one';
    const key = `${owner}-${scheme}`;
    let f = this.files.get(key);
    if (!f) {
      const owners = flowOwners(this.opts.conns, spec);
      f = {
        packets: path.join(this.opts.tmp, `native-${key}.bin`),
        owners: path.join(this.opts.tmp, `native-${key}.owners`),
      };
      writeFileSync(
        f.packets,
        encodePacketsFile(buildFlowPackets(this.env.schemes[scheme], owners, this.opts.packetSize, this.opts.seed)),
      );
      writeFileSync(f.owners, owners);
      this.files.set(key, f);
    }
    return f;
  }

  async trial(
    spec: RouterSpec | undefined,
    handle: RouterHandle | undefined,
    o: TrialOptions,
    target?: Target,
  ): Promise<TrialResult> {
    const to = target ?? handle!.target;
    const files = this.filesFor(spec);
    this.trialId = (this.trialId + 1) & 0xffff || 1;
    await this.sinks.reset(this.trialId, files.owners);
    const pids = handle ? handle.pids() : [];
    const cpu0 = pids.reduce((a, p) => a + treeCpuUs(p), 0);
    const sinkCpu0 = treeCpuUs(this.sinks.pid);
    const softirqd0 = softirqdCpuUs();
    const redis = spec?.family === 'redis' ? this.opts.redis : undefined;
    const redisPid = redis?.pid ?? -1;
    const redisCpu0 = redis ? treeCpuUs(redisPid) : 0;
    const run = await runBlast(this.tools, {
      file: files.packets,
      dest: to,
      rate: o.rate,
      durationMs: o.durationMs,
      src: this.opts.topology?.sources ?? SOURCE_ADDRESSES,
      sockets: Math.min(this.opts.conns, 1000),
      batch: this.opts.batch,
      trial: this.trialId,
      ...(this.opts.topology ? { netns: this.opts.topology.loadNetns } : {}),
    });
    await new Promise((r) => setTimeout(r, o.settleMs ?? 200));
    const cpu1 = pids.reduce((a, p) => a + treeCpuUs(p), 0);
    const redisCpu1 = redis && redis.pid === redisPid ? treeCpuUs(redisPid) : NaN;
    const st = await this.sinks.report();
    const received = st.received;
    const sinkUs = treeCpuUs(this.sinks.pid) - sinkCpu0;
    if (received > 0)
      this.loadCpu.push({
        pps: (run.attempted / run.elapsed_ms) * 1000,
        blast: run.cpu_us / received,
        sink: sinkUs / received,
      });
    const cpu: TrialCpu = {
      router: spec?.id ?? 'direct',
      rate: o.rate,
      received,
      pps: Math.round((received / run.elapsed_ms) * 1000),
      loss: run.attempted > 0 ? Math.max(0, 1 - received / run.attempted) : 0,
      router_us: handle ? cpu1 - cpu0 : 0,
      blast_us: run.cpu_us,
      sink_us: sinkUs,
      softirqd_us: softirqdCpuUs() - softirqd0,
    };
    this.trialCpu.push(cpu);
    const path = cpu.router_us + cpu.blast_us + cpu.sink_us + cpu.softirqd_us;
    return trialRecord({
      load: { attempted: run.attempted, sendErrors: run.send_errors, elapsedMs: run.elapsed_ms },
      connections: this.opts.conns,
      // No pool changes in native mode: nothing orphaned.
      sinks: { received, wrong: st.wrong, orphaned: 0, corrupt: st.corrupt, p50Us: st.p50_us, p99Us: st.p99_us },
      routerCpuUs: this.opts.cpu === 'path' ? path : handle ? cpu1 - cpu0 : null,
      routerRssBytes: handle ? pids.reduce((a, p) => a + treeRssBytes(p), 0) : null,
      redisCpuUs: redis ? redisCpu1 - redisCpu0 : null,
      redisMemMb: null,
    });
  }

  async close(): Promise<void> {
    await this.sinks?.close();
  }
}
