// The routers under test, behind one interface: start (instance 0 or a second instance for the
// ECMP scenario), restart (a crash: SIGKILL of the whole process tree, then start again),
// change the backend pool, stop. Each runs as its own process so its CPU and memory are its own.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { CidScheme, Target } from '../load/generator.js';
import { freeUdpPort, inNetns, killTree, spawnReady, waitUdpBound, type Child } from '../lib/proc.js';
import { repoRoot, routerJs } from './build.js';
import type { RedisServer } from '../lib/redis-server.js';
import type { CipherName as QuicLbCipher } from '../../src/cid/index.js';
import { NginxProxy } from '../routers/nginx.js';

export const cliPath = path.join(repoRoot, 'dist', 'cli.js');

export type Algorithm = 'plaintext' | 'single-pass' | 'four-pass';
export type Family = 'quic-lb' | 'redis' | 'bare' | 'nginx';

export interface Env {
  /** "ip:port" of each sink (backend), by sink index. */
  sinks: string[];
  /** QUIC-LB server ID of each sink. */
  serverIds: number[];
  schemes: Record<Algorithm, CidScheme>;
  redis?: RedisServer;
  /** Directory for generated config files. */
  tmp: string;
  /** Largest number of concurrent flows the run will create (sizes nginx). */
  maxFlows: number;
  /** Routers in network namespaces (bench:xdp); without it they run here, on free loopback ports. */
  netns?: RouterPlacement;
}

/** Where routers run when each has a network namespace of its own (bench/xdp). */
export interface RouterPlacement {
  /** The namespace of the router that listens on `host`. */
  of(host: string): string;
  /** The port every router listens on (each namespace is fresh: the port is free). */
  port: number;
}

/** The address a router listens on: a fixed port in its own namespace, else a free loopback port. */
async function listenTarget(env: Env, host: string): Promise<Target> {
  return { host, port: env.netns ? env.netns.port : await freeUdpPort(host) };
}

/** `cmd args`, run in the namespace of the router on `host` when there is one (`ip netns exec` execs it: same PID). */
export function placed(env: Env, host: string, cmd: string, args: string[]): [string, string[]] {
  return inNetns(env.netns?.of(host), cmd, args);
}

export interface RouterHandle {
  readonly target: Target;
  /** Root PIDs of the router's processes (CPU and RSS are summed over their trees). */
  pids(): number[];
  /** Crash and start again: SIGKILL of the process tree, new process on the same address. */
  restart(): Promise<void>;
  /** New backend pool (sink indices): existing flows keep their backend where the design allows. */
  setPool(pool: number[]): Promise<void>;
  stop(): Promise<void>;
}

export interface RouterSpec {
  id: string;
  label: string;
  family: Family;
  /** CID scheme the generator mints with for this router (only quic-lb reads it). */
  scheme: Algorithm;
  workers: number;
  /** Redis database the router keeps its map in (Redis routers only). */
  redisDb?: number;
  start(env: Env, pool: number[], listenHost: string): Promise<RouterHandle>;
}

const FALLBACK_KEY = '000102030405060708090a0b0c0d0e0f';

function hexId(id: number, length: number): string {
  return id.toString(16).padStart(length * 2, '0');
}

/**
 * The `quic-lb serve` config (YAML is a superset of JSON, so the harness writes JSON): one
 * QUIC-LB config for the scheme, a backend per sink in the pool with its server ID, health
 * checks off (sinks do not answer probes), fallback hashing key, return path via the LB.
 */
export function quicLbConfig(
  env: Env,
  algorithm: Algorithm,
  pool: number[],
  listen: Target,
  workers: number,
  cipher?: QuicLbCipher,
  xdp?: XdpDatapath,
): object {
  const s = env.schemes[algorithm];
  return {
    // The XDP program on the interface forwards what it decides; `stop`: a run never measures
    // node:dgram under an XDP label. Metrics: the benchmark reads how much the program carried.
    ...(xdp
      ? {
          datapath: { mode: 'xdp', interface: xdp.interface, attach: xdp.attach, unavailable: 'stop' },
          metrics: { listen: `127.0.0.1:${XDP_METRICS_PORT}` },
        }
      : {}),
    listen: [`${listen.host}:${listen.port}`],
    quicLb: [
      {
        configId: s.configId,
        serverIdLength: s.serverIdLength,
        nonceLength: s.nonceLength,
        ...(s.key ? { key: s.key } : {}),
        ...(s.key && cipher ? { cipher } : {}),
      },
    ],
    backends: pool.map((i) => ({
      name: `sink${i}`,
      address: env.sinks[i],
      serverIds: { [String(s.configId)]: hexId(env.serverIds[i], s.serverIdLength) },
      health: { type: 'none' },
    })),
    fallback: { key: FALLBACK_KEY },
    // Replies (echo mode) come back through the LB: sinks send them to the upstream socket the
    // datagram came from, which the LB accepts from configured backends.
    returnPath: { mode: 'via-lb', listen: `${listen.host}:0` },
    workers,
    // Large socket buffers (the kernel caps them at net.core.rmem_max / wmem_max), as the bare relay has.
    socket: { recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 },
    drainMs: 0,
    log: { level: 'warn' },
  };
}

class ProcessRouter implements RouterHandle {
  constructor(
    readonly target: Target,
    private child: Child,
    private readonly launch: () => Promise<Child>,
    private readonly onPool: (pool: number[], child: Child) => Promise<void>,
  ) {}

  pids(): number[] {
    return [this.child.pid];
  }

  async restart(): Promise<void> {
    await killTree(this.child);
    this.child = await this.launch();
  }

  setPool(pool: number[]): Promise<void> {
    return this.onPool(pool, this.child);
  }

  async stop(): Promise<void> {
    await killTree(this.child);
  }
}

/** Another build of `quic-lb serve` to run beside this one (bench:forwarder --baseline). */
export interface Build {
  /** Its `dist/cli.js`. */
  cli: string;
  /** Short name for ids and labels, e.g. `baseline`. */
  name: string;
}

/** `datapath: xdp` of a benchmarked `quic-lb serve` (docs/config.md). */
export interface XdpDatapath {
  interface: string;
  attach: 'native' | 'generic';
}

/** Where a `quic-lb serve` with XDP serves its metrics (in its own namespace, so one port for all). */
export const XDP_METRICS_PORT = 9433;

/**
 * `quic-lb serve` with the CID scheme `algorithm`. `cipher` sets the config's AES implementation
 * (`table` or `node`; default: the config's default) and becomes part of the id (`-aes-<cipher>`);
 * `build` runs another build's CLI (id suffix `@<name>`); `xdp` attaches the XDP data path (id
 * suffix `-xdp-<attach>`; one worker, as `datapath: xdp` requires).
 */
export function quicLbRouter(
  algorithm: Algorithm,
  workers = 1,
  cipher?: QuicLbCipher,
  build?: Build,
  xdp?: XdpDatapath,
): RouterSpec {
  const cli = build?.cli ?? cliPath;
  return {
    id: `quic-lb-${algorithm}${workers === 1 ? '' : `-w${workers}`}${cipher ? `-aes-${cipher}` : ''}${build ? `@${build.name}` : ''}${xdp ? `-xdp-${xdp.attach}` : ''}`,
    label: `quic-lb serve (${algorithm}${workers === 1 ? '' : `, ${workers} workers`}${cipher ? `, ${cipher} AES` : ''}${build ? `, ${build.name}` : ''}${xdp ? `, XDP ${xdp.attach}` : ''})`,
    family: 'quic-lb',
    scheme: algorithm,
    workers,
    async start(env, pool, host) {
      const target = await listenTarget(env, host);
      const file = path.join(env.tmp, `quic-lb-${algorithm}-w${workers}-${host}-${target.port}.yaml`);
      const write = (p: number[]): void =>
        writeFileSync(file, JSON.stringify(quicLbConfig(env, algorithm, p, target, workers, cipher, xdp), null, 2));
      write(pool);
      const launch = async (): Promise<Child> => {
        // `serve` prints one JSON line with "ready": true once every socket is bound (docs/lb.md).
        const [cmd, args] = placed(env, host, process.execPath, [cli, 'serve', '--config', file, '--no-watch']);
        const child = await spawnReady(cmd, args, {
          ready: /"ready":\s*true/,
          // Loading and attaching the XDP program (and the agent's self-tests) take longer.
          timeoutMs: xdp ? 60000 : 15000,
        });
        await waitUdpBound(host, target.port, child);
        return child;
      };
      return new ProcessRouter(target, await launch(), launch, async (p, child) => {
        write(p);
        process.kill(child.pid, 'SIGHUP'); // hot reload (docs/lb.md)
        await new Promise((r) => setTimeout(r, 300));
      });
    },
  };
}

export function redisRouter(mode: 'per-packet' | 'cache'): RouterSpec {
  return {
    id: `redis-${mode}`,
    label: mode === 'cache' ? 'Redis-mapped, local cache' : 'Redis-mapped, lookup per packet',
    family: 'redis',
    scheme: 'plaintext',
    workers: 1,
    // Each variant its own database: one's re-assignments never show up in the other's map.
    redisDb: mode === 'cache' ? 1 : 0,
    async start(env, pool, host) {
      if (!env.redis) throw new Error('redis router needs a redis-server');
      const redisPort = env.redis.port;
      const target = { host, port: await freeUdpPort(host) };
      const backends = (p: number[]): string => p.map((i) => env.sinks[i]).join(',');
      let current = pool;
      const launch = (): Promise<Child> =>
        spawnReady(
          process.execPath,
          [
            routerJs('redis-router'),
            '--listen',
            `${host}:${target.port}`,
            '--redis',
            String(redisPort),
            '--db',
            mode === 'cache' ? '1' : '0',
            '--backends',
            backends(current),
            '--mode',
            mode,
            '--cache-size',
            String(Math.max(100_000, env.maxFlows)),
            '--ttl',
            '600',
          ],
          { ready: /READY \d+/, timeoutMs: 20000, cwd: repoRoot },
        );
      return new ProcessRouter(target, await launch(), launch, async (p, child) => {
        current = p;
        child.proc.stdin!.write(`${JSON.stringify({ backends: p.map((i) => env.sinks[i]) })}\n`);
        await new Promise((r) => setTimeout(r, 100));
      });
    },
  };
}

export function bareRelay(workers = 1): RouterSpec {
  return {
    id: workers === 1 ? 'bare-relay' : `bare-relay-w${workers}`,
    label: `bare node:dgram relay${workers === 1 ? '' : ` (${workers} workers)`}`,
    family: 'bare',
    scheme: 'plaintext',
    workers,
    async start(env, pool, host) {
      const target = await listenTarget(env, host);
      const launch = (): Promise<Child> =>
        spawnReady(
          ...placed(env, host, process.execPath, [
            routerJs('bare-relay'),
            '--listen',
            `${host}:${target.port}`,
            '--backend',
            env.sinks[pool[0]],
            '--workers',
            String(workers),
          ]),
          { ready: /READY \d+/, timeoutMs: 20000, cwd: repoRoot },
        );
      // One backend by construction: a pool change does not apply.
      return new ProcessRouter(target, await launch(), launch, async () => {});
    },
  };
}

export function nginxRouter(): RouterSpec {
  return {
    id: 'nginx',
    label: 'nginx stream UDP proxy',
    family: 'nginx',
    scheme: 'plaintext',
    workers: 1,
    async start(env, pool, host) {
      const target = await listenTarget(env, host);
      const n = await NginxProxy.start({
        listen: target,
        backends: pool.map((i) => env.sinks[i]),
        maxSessions: env.maxFlows + 4096,
        ...(env.netns ? { netns: env.netns.of(host) } : {}),
      });
      return {
        target,
        pids: () => [n.pid],
        restart: () => n.restart(),
        setPool: (p) => n.setBackends(p.map((i) => env.sinks[i])),
        stop: () => n.stop(),
      };
    },
  };
}

/** Every router of the routing benchmark, in report order. */
export function allRouters(): RouterSpec[] {
  return [
    quicLbRouter('plaintext'),
    quicLbRouter('single-pass'),
    quicLbRouter('four-pass'),
    redisRouter('per-packet'),
    redisRouter('cache'),
    bareRelay(),
    nginxRouter(),
  ];
}
