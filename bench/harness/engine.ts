// The measuring engine: sinks and load generator in worker threads of this process, routers as
// child processes. One trial = handshake (one Initial per connection through the router; the
// sink that receives it owns the connection) -> CIDs minted for the owners -> timed short-header
// traffic at a paced rate, with scenario events. Loss, misdelivery and one-way latency come
// from the sinks; CPU and RSS of the router from /proc.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { CidScheme, RunEvent, RunResult, SessionGenReport, Target } from '../load/generator.js';
import { percentile } from '../lib/histogram.js';
import { sleep } from '../lib/proc.js';
import { RedisServer } from '../lib/redis-server.js';
import { treeCpuUs, treeRssBytes } from '../lib/procstat.js';
import { WorkerRpc } from '../lib/rpc.js';
import type { SinkStats } from '../sink/sinks.js';
import type { Algorithm, Env, RouterHandle, RouterSpec } from './routers.js';

export const SINK_ADDRESSES = ['127.0.3.10', '127.0.3.11', '127.0.3.12', '127.0.3.13', '127.0.3.14'];
/** Backends in the pool at the start of every trial; sink 4 joins in the pool-change scenario. */
export const INITIAL_POOL = [0, 1, 2, 3];
export const SOURCE_ADDRESSES = Array.from({ length: 40 }, (_, i) => `127.0.3.${150 + i}`);
export const SCHEMES: Record<Algorithm, CidScheme> = {
  // draft-21 §5.2 plaintext: 2-octet server ID + 6-octet nonce (8-octet CID + first octet).
  plaintext: { configId: 0, serverIdLength: 2, nonceLength: 6, serverIds: [] },
  // §5.4.1 single-pass: server ID + nonce = 16 octets.
  'single-pass': {
    configId: 1,
    serverIdLength: 2,
    nonceLength: 14,
    key: '4d7573745365637265744b6579303031',
    serverIds: [],
  },
  // §5.4.2 four-pass: any other length.
  'four-pass': {
    configId: 2,
    serverIdLength: 2,
    nonceLength: 6,
    key: '8f95f09245765f80256934e50c66207f',
    serverIds: [],
  },
};
export const SERVER_IDS = [0x0101, 0x0202, 0x0303, 0x0404, 0x0505];

export interface EngineOptions {
  conns: number;
  packetSize: number;
  seed: number;
  /** Flows the memory curve will create (sizes nginx and the Redis router's cache). */
  maxFlows: number;
  needRedis: boolean;
  /** Share of connections with a spare socket for rebinding (default 0.5; the session benchmark takes 1). */
  spareShare?: number;
}

export interface TrialOptions {
  rate: number;
  durationMs: number;
  events?: RunEvent[];
  /** Harness-side actions at a time offset (restart the router, restart Redis, change the pool). */
  actions?: { atMs: number; run: () => Promise<void> }[];
  /** Second router instance for path switches. */
  second?: RouterHandle;
  settleMs?: number;
  /** Sinks reflect every packet back through the router's return path; the generator measures round trips. */
  echo?: boolean;
}

/**
 * One trial's record, the same for both engines (Node: this file; native: bench/native/native.ts),
 * always built by {@link trialRecord}.
 */
export interface TrialResult {
  /** Datagrams per second the generator tried to send (`attempted` / elapsed). */
  offered_pps: number;
  /** Datagrams the generator tried to send in the timed run, accepted by the kernel or not. */
  attempted: number;
  /** Of those, the ones the kernel accepted (`attempted` - `send_errors`). */
  sent: number;
  received: number;
  /** Packets per second delivered to backends. */
  pps: number;
  /** 1 - received / attempted (0 when nothing was attempted); see {@link trialRecord}. */
  loss: number;
  cpu_us_per_packet: number | null;
  redis_cpu_us_per_packet: number | null;
  p50_us: number | null;
  p99_us: number | null;
  /** Share of delivered packets, not counting orphaned ones, that reached their connection's owner. */
  correct_ratio: number | null;
  misdelivered: number;
  /** Packets of connections whose owner left the pool (`retireSink`) delivered elsewhere: not misdeliveries. */
  orphaned: number;
  /** Connections with an owner after the handshake. */
  connections: number;
  rss_mb: number;
  redis_mem_mb: number | null;
  corrupt: number;
  /** Sends the kernel refused (counted in `attempted`, not in `sent`). */
  send_errors: number;
  /** Round trip generator -> router -> backend -> return path -> generator (echo trials only). */
  rtt_p50_us: number | null;
  rtt_p99_us: number | null;
  /** Echoes that came back / packets the sinks reflected (echo trials only). */
  echo_ratio: number | null;
}

/** What one trial measured, in the units the tools report, before {@link trialRecord} derives the rates. */
export interface TrialMeasurement {
  /** The load generator's timed run (Node worker: `sent` calls; udp-blast: `attempted`). */
  load: { attempted: number; sendErrors: number; elapsedMs: number };
  connections: number;
  sinks: {
    received: number;
    wrong: number;
    orphaned: number;
    corrupt: number;
    p50Us: number | null;
    p99Us: number | null;
  };
  /** The router's CPU time over the run, µs (NaN when a process was restarted); null: no router (direct path). */
  routerCpuUs: number | null;
  /** The router's resident memory after the run; null: no router. */
  routerRssBytes: number | null;
  /** Redis CPU time over the run, µs (NaN after a Redis restart); null: not a Redis-mapped router. */
  redisCpuUs: number | null;
  redisMemMb: number | null;
  /** Echo trials only: round-trip percentiles and echoes back / packets reflected (null: none reflected). */
  echo?: { p50Us: number | null; p99Us: number | null; ratio: number | null };
}

/**
 * The trial record of both engines. Loss and the offered rate count every datagram the generator
 * tried to send (`attempted`), also those the kernel refused (`send_errors`): the rate search asks
 * whether the path carried the paced load, and a send refused because the host is saturated
 * (router and generator share it) is load that was not carried. Counting only accepted sends
 * would let a step pass with part of its load never offered.
 */
export function trialRecord(m: TrialMeasurement): TrialResult {
  const { attempted, sendErrors, elapsedMs } = m.load;
  const { received, orphaned } = m.sinks;
  const perPacket = (us: number | null): number | null =>
    us !== null && received > 0 ? round(us / received, 2) : null;
  return {
    offered_pps: Math.round((attempted / elapsedMs) * 1000),
    attempted,
    sent: attempted - sendErrors,
    received,
    pps: Math.round((received / elapsedMs) * 1000),
    loss: attempted > 0 ? Math.max(0, 1 - received / attempted) : 0,
    cpu_us_per_packet: perPacket(m.routerCpuUs),
    redis_cpu_us_per_packet: perPacket(m.redisCpuUs),
    p50_us: round(m.sinks.p50Us, 1),
    p99_us: round(m.sinks.p99Us, 1),
    // Orphaned packets (their backend left the pool) have no right destination: left out.
    correct_ratio:
      received - orphaned > 0 ? round((received - orphaned - m.sinks.wrong) / (received - orphaned), 5) : null,
    misdelivered: m.sinks.wrong,
    orphaned,
    connections: m.connections,
    rss_mb: m.routerRssBytes !== null ? round(m.routerRssBytes / 1048576, 1)! : 0,
    redis_mem_mb: round(m.redisMemMb, 2),
    corrupt: m.sinks.corrupt,
    send_errors: sendErrors,
    rtt_p50_us: m.echo ? round(m.echo.p50Us, 1) : null,
    rtt_p99_us: m.echo ? round(m.echo.p99Us, 1) : null,
    echo_ratio: m.echo ? round(m.echo.ratio, 4) : null,
  };
}

export class Engine {
  readonly ownerBuffer: SharedArrayBuffer;
  readonly owner: Int8Array;
  private sinks!: WorkerRpc;
  private gen!: WorkerRpc;
  redis: RedisServer | undefined;
  private redisClient: Redis | undefined;
  env!: Env;
  private trialId = 1;
  private readonly tmp = mkdtempSync(path.join(tmpdir(), 'quic-lb-bench-'));

  constructor(readonly opts: EngineOptions) {
    this.ownerBuffer = new SharedArrayBuffer(opts.conns);
    this.owner = new Int8Array(this.ownerBuffer);
  }

  async setup(): Promise<void> {
    const schemes = structuredClone(SCHEMES);
    for (const s of Object.values(schemes)) s.serverIds = SERVER_IDS;
    this.sinks = WorkerRpc.start(new URL('../sink/worker.ts', import.meta.url), {
      addresses: SINK_ADDRESSES,
      ownerBuffer: this.ownerBuffer,
    });
    const ports = await this.sinks.call<number[]>('start');
    this.gen = WorkerRpc.start(new URL('../load/worker.ts', import.meta.url), {
      ownerBuffer: this.ownerBuffer,
      options: {
        conns: this.opts.conns,
        sourceAddresses: SOURCE_ADDRESSES,
        packetSize: this.opts.packetSize,
        seed: this.opts.seed,
        schemes,
        spareShare: this.opts.spareShare ?? 0.5,
      },
    });
    await this.gen.call('init');
    if (this.opts.needRedis) {
      this.redis = await RedisServer.start();
      this.redisClient = new Redis({
        port: this.redis.port,
        host: '127.0.0.1',
        retryStrategy: () => 50,
        maxRetriesPerRequest: 1,
      });
      this.redisClient.on('error', () => {});
    }
    this.env = {
      sinks: SINK_ADDRESSES.map((a, i) => `${a}:${ports[i]}`),
      serverIds: SERVER_IDS,
      schemes,
      redis: this.redis,
      tmp: this.tmp,
      maxFlows: this.opts.maxFlows,
    };
  }

  /** Starts a router on its own loopback address (instance 1 = the second LB of the ECMP case). */
  start(spec: RouterSpec, index: number, instance = 0): Promise<RouterHandle> {
    return spec.start(this.env, INITIAL_POOL, `127.0.3.${100 + index * 2 + instance}`);
  }

  sinkTarget(i: number): Target {
    const [host, port] = this.env.sinks[i].split(':');
    return { host, port: Number(port) };
  }

  async redisMemoryMb(): Promise<number | null> {
    if (!this.redisClient) return null;
    try {
      const info = await this.redisClient.info('memory');
      const m = /used_memory:(\d+)/.exec(info);
      return m ? Number(m[1]) / 1048576 : null;
    } catch {
      return null;
    }
  }

  /** Empties every Redis database (the native rate search's mappings must not weigh on the rest). */
  async flushRedis(): Promise<void> {
    await this.redisClient?.flushall();
  }

  /** Directory for generated files, removed on close(). */
  get tmpDir(): string {
    return this.tmp;
  }

  /** Keys in Redis database `db`. */
  async redisKeys(db = 0): Promise<number | null> {
    if (!this.redisClient) return null;
    try {
      const info = await this.redisClient.info('keyspace');
      const m = new RegExp(`^db${db}:keys=(\\d+)`, 'm').exec(info);
      return m ? Number(m[1]) : 0;
    } catch {
      return null;
    }
  }

  /**
   * One measured trial of `router` (CPU/RSS from `handle`'s process trees; `spec` picks the CID
   * scheme). `target` defaults to the router; a sink's address measures the direct path.
   */
  async trial(
    spec: RouterSpec | undefined,
    handle: RouterHandle | undefined,
    o: TrialOptions,
    target?: Target,
  ): Promise<TrialResult> {
    const to = target ?? handle!.target;
    // Handshake: owners are whoever receives each connection's Initial.
    this.owner.fill(-1);
    const hsTrial = this.nextTrial();
    await this.sinks.call('reset', { trial: hsTrial });
    await this.gen.call('connect', { target: to });
    await this.gen.call('handshake', { trial: hsTrial, rate: Math.min(20_000, Math.max(5_000, o.rate)) });
    await sleep(100);
    const connections = await this.gen.call<number>('mint', { scheme: spec?.scheme ?? 'plaintext' });

    const runTrial = this.nextTrial();
    await this.sinks.call('reset', { trial: runTrial, echo: o.echo === true });
    const pids = handle ? [...handle.pids(), ...(o.second?.pids() ?? [])] : [];
    const cpu0 = sumCpu(pids);
    const redisPid0 = this.redis?.pid ?? -1;
    const redisCpu0 = this.redis ? treeCpuUs(redisPid0) : 0;
    const timers = (o.actions ?? []).map((a) => {
      let done: Promise<void> = Promise.resolve();
      const t = setTimeout(() => {
        done = a.run();
      }, a.atMs);
      return { t, done: () => done };
    });
    const targets = [to, ...(o.second ? [o.second.target] : [])];
    const run = await this.gen.call<RunResult>('run', {
      trial: runTrial,
      rate: o.rate,
      durationMs: o.durationMs,
      targets,
      events: o.events ?? [],
    });
    for (const t of timers) clearTimeout(t.t);
    await Promise.all(timers.map((t) => t.done()));
    await sleep(o.settleMs ?? 200);
    // pids may have changed after a restart
    const pidsAfter = handle ? [...handle.pids(), ...(o.second?.pids() ?? [])] : [];
    // After a restart the killed process's CPU is gone with it: no per-packet CPU for that trial.
    const cpu1 = samePids(pids, pidsAfter) ? sumCpu(pidsAfter) : NaN;
    const redisCpu1 = this.redis && this.redis.pid === redisPid0 ? treeCpuUs(redisPid0) : NaN;
    const st = await this.sinks.call<SinkStats>('stats');
    const echo = o.echo ? await this.gen.call<{ echoes: number; rttHist: number[] }>('echoStats') : undefined;
    const usesRedis = spec?.family === 'redis' && this.redis !== undefined;
    return trialRecord({
      // The generator counts a datagram as sent when it calls send(); refusals arrive as errors.
      load: { attempted: run.sent, sendErrors: run.sendErrors, elapsedMs: run.elapsedMs },
      connections,
      sinks: {
        received: st.received.reduce((a, b) => a + b, 0),
        wrong: st.wrong,
        orphaned: st.orphaned,
        corrupt: st.corrupt,
        p50Us: percentile(st.hist, 50),
        p99Us: percentile(st.hist, 99),
      },
      routerCpuUs: handle ? cpu1 - cpu0 : null,
      routerRssBytes: handle ? sumRss(pidsAfter) : null,
      redisCpuUs: usesRedis ? redisCpu1 - redisCpu0 : null,
      redisMemMb: usesRedis ? await this.redisMemoryMb() : null,
      echo: echo && {
        p50Us: percentile(echo.rttHist, 50),
        p99Us: percentile(echo.rttHist, 99),
        ratio: st.echoed > 0 ? echo.echoes / st.echoed : null,
      },
    });
  }

  /**
   * Sink `sink` leaves the pool: call before telling the router, so packets of its connections
   * that the router then sends elsewhere count as orphaned, not misdelivered.
   */
  async retireSink(sink: number): Promise<void> {
    await this.sinks.call('retire', { sink });
  }

  // --- Session benchmark (bench/sessions) ---

  /**
   * Per-frame bitmaps of `rowBytes` octets per connection, shared with the workers: `up` (frame
   * reached its owner; set by the sinks), `down` (its echo came back; set by the generator).
   * Latency histograms take only frames numbered below `latencyFrames`.
   */
  async sessionMode(rowBytes: number, latencyFrames: number): Promise<{ up: Uint8Array; down: Uint8Array }> {
    const up = new SharedArrayBuffer(this.opts.conns * rowBytes);
    const down = new SharedArrayBuffer(this.opts.conns * rowBytes);
    await this.sinks.call('sessionMode', { up, rowBytes, clientHosts: SOURCE_ADDRESSES, latencyFrames });
    await this.gen.call('sessionMode', { down, rowBytes, sinkHosts: SINK_ADDRESSES, latencyFrames });
    return { up: new Uint8Array(up), down: new Uint8Array(down) };
  }

  /**
   * A session's handshake datagrams through `target`: one Initial per connection (client-chosen
   * DCID; the sink that receives it owns the connection), then `tail` datagrams per connection
   * with the CIDs the owner issued (scheme `scheme`). `owners` given: no tier, the owners are set
   * (the direct path). Returns the connections with an owner and the datagrams sent.
   */
  async sessionHandshake(
    target: Target,
    scheme: Algorithm,
    tail: number,
    owners?: (conn: number) => number,
  ): Promise<{ connections: number; datagrams: number }> {
    const trial = this.nextTrial();
    await this.sinks.call('reset', { trial });
    await this.gen.call('connect', { target });
    let datagrams = 0;
    if (owners) for (let i = 0; i < this.owner.length; i++) this.owner[i] = owners(i);
    else {
      this.owner.fill(-1);
      datagrams += (await this.gen.call<RunResult>('handshake', { trial, rate: 5_000 })).sent;
      await sleep(100);
    }
    const connections = await this.gen.call<number>('mint', { scheme });
    if (tail > 0 && connections > 0 && !owners) {
      const rate = Math.min(10_000, connections * 20);
      const r = await this.gen.call<RunResult>('run', {
        trial,
        rate,
        durationMs: ((tail * connections) / rate) * 1000,
        targets: [target],
      });
      datagrams += r.sent;
    }
    return { connections, datagrams };
  }

  /** Points every owned connection straight at its owner (the client took preferred_address). */
  async connectOwners(): Promise<void> {
    await this.gen.call('connectOwners', { sinks: this.env.sinks.map((_, i) => this.sinkTarget(i)) });
  }

  /** One timed session run (frames at `rate` round robin, sinks echo): what the workers counted. */
  async sessionRun(o: {
    rate: number;
    durationMs: number;
    target: Target;
    events: RunEvent[];
    actions: { atMs: number; run: () => Promise<void> }[];
    settleMs: number;
  }): Promise<{ run: RunResult; sinks: SinkStats; gen: SessionGenReport; rttHist: number[] }> {
    const trial = this.nextTrial();
    await this.sinks.call('reset', { trial, echo: true });
    const timers = o.actions.map((a) => {
      let done: Promise<void> = Promise.resolve();
      const t = setTimeout(() => {
        done = a.run();
      }, a.atMs);
      return { t, done: () => done };
    });
    const run = await this.gen.call<RunResult>('run', {
      trial,
      rate: o.rate,
      durationMs: o.durationMs,
      targets: [o.target],
      events: o.events,
      resetSeq: true,
    });
    for (const t of timers) clearTimeout(t.t);
    await Promise.all(timers.map((t) => t.done()));
    await sleep(o.settleMs);
    const sinks = await this.sinks.call<SinkStats>('stats');
    const gen = await this.gen.call<SessionGenReport>('sessionReport');
    const { rttHist } = await this.gen.call<{ rttHist: number[] }>('echoStats');
    return { run, sinks, gen, rttHist };
  }

  /** Creates `count` new flows (fresh 4-tuples, one Initial each) through `target`. */
  async churn(target: Target, count: number, rate: number): Promise<number> {
    const trial = this.nextTrial();
    await this.sinks.call('reset', { trial });
    return this.gen.call<number>('churn', { trial, target, count, batch: 1000, rate });
  }

  private nextTrial(): number {
    this.trialId = (this.trialId + 1) & 0xffff || 1;
    return this.trialId;
  }

  async close(): Promise<void> {
    await this.gen?.call('close').catch(() => {});
    await this.gen?.close();
    await this.sinks?.call('close').catch(() => {});
    await this.sinks?.close();
    this.redisClient?.disconnect();
    await this.redis?.stop();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

function sumCpu(pids: number[]): number {
  return pids.reduce((a, p) => a + treeCpuUs(p), 0);
}

function sumRss(pids: number[]): number {
  return pids.reduce((a, p) => a + treeRssBytes(p), 0);
}

function samePids(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

export function round(v: number | null, digits: number): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
