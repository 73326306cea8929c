// The anycast fleet of issue 12 ("Anycast without a load-balancer tier"): no LB tier, every server
// holds the VIP on lo and its own unicast address, and announces the VIP to the router's BIRD while
// its /healthz answers 200 (deploy/bird/vip-health.sh). The router installs one ECMP route
// (`merge paths`, fib_multipath_hash_policy=1). Each server is one `quic-lb demo backend --anycast`
// process (QUIC server + co-located forwarder for VIP traffic); clients are Debian's gtlsclient in
// the client namespace. Root only; needs the build (dist/cli.js).
//
//   client 198.18.1.2 ── router ──┬── srv1 198.18.31.2 (+ VIP 198.19.0.1 on lo), BIRD, vip-health.sh
//                                 ├── srv2 198.18.32.2 …
//                                 └── srv3 198.18.33.2 …
//
// Which server owns a connection is read from the servers' event logs (`connection-accepted` has
// the server's SCID, which gtlsclient prints as the server's initial_source_connection_id).
// Figures the tests measure go to `.tmp/anycast-results.json` (recordFigure) for the closing note.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { BIRD_DIR, lbBirdConfig, routerBirdConfig, startBird, type BirdInstance } from './bird.js';
import { canUseNetns, commandExists, createFleet, type Fleet, type Ns } from './netns.js';
import { CLI, isDemoBody, outputOf, REPO, startReady, VIP_PORT } from './quic-fleet.js';
import { parseMetrics } from '../helpers/metrics.js';
import { sleep, waitFor } from '../helpers/wait.js';

export { isDemoBody, VIP_PORT };
/** Every anycast suite needs root, gtlsclient, curl and BIRD. */
export const RUN_ANYCAST =
  canUseNetns() &&
  commandExists('gtlsclient') &&
  commandExists('curl') &&
  commandExists('bird') &&
  commandExists('birdc');
/** Each server's unicast port (its `address` in the config, and its preferred_address). */
export const UNICAST_PORT = 4434;
/** `metrics.listen` of every server, inside its own namespace. */
export const METRICS = '127.0.0.1:9433';
/** vip-health.sh: poll every 0.2 s, announce after 2 answers of 200, withdraw after 2 failures. */
export const VIP_HEALTH = { intervalS: 0.2, rise: 2, fall: 2 } as const;
/** The servers' probes of each other (config `health`): a dead or drained server leaves the Maglev set within ~0.5 s. */
export const HEALTH = { intervalMs: 200, timeoutMs: 300, rise: 2, fall: 2 } as const;

/** The `anycast` section of the config (common3.md); omitted keys keep the server's defaults. */
export interface AnycastSection {
  forward?: boolean;
  announce?: Partial<Record<'intervalMs' | 'withdrawAfter' | 'announceAfter' | 'maxConnections', number>>;
}

export interface AnycastFleetOptions {
  serverCount?: number;
  anycast?: AnycastSection;
  /** Servers started (and awaited as announced) by setup, by index (default: all). */
  start?: number[];
  /** Extra arguments of `quic-lb demo backend` per server name (`s1`…), at setup. */
  extra?: Record<string, string[]>;
}

/**
 * The shared config file: one QUIC-LB config (2-octet server IDs), server sK = server ID 000K at
 * its namespace's unicast address, direct return path (replies leave from the VIP on the server),
 * forwarded datagrams signed (returnPath.signForward) so peers need no address allow list.
 */
export function anycastConfig(
  fleet: Fleet,
  keys: { quicLb: string; fallback: string; hmac: string },
  a: AnycastSection,
): string {
  const announce = Object.entries(a.announce ?? {}).map(([k, v]) => `${k}: ${v}`);
  return [
    'listen:',
    `  - '${fleet.vip}:${VIP_PORT}'`,
    'quicLb:',
    `  - { configId: 0, serverIdLength: 2, nonceLength: 6, key: '${keys.quicLb}' }`,
    'backends:',
    ...fleet.servers.map(
      (s) => `  - { name: s${s.index}, address: '${s.address}:${UNICAST_PORT}', serverIds: { '0': '000${s.index}' } }`,
    ),
    `health: { intervalMs: ${HEALTH.intervalMs}, timeoutMs: ${HEALTH.timeoutMs}, rise: ${HEALTH.rise}, fall: ${HEALTH.fall} }`,
    `fallback: { key: '${keys.fallback}' }`,
    `returnPath: { mode: direct, hmacKeys: ['${keys.hmac}'], signForward: true }`,
    `metrics: { listen: '${METRICS}' }`,
    'log: { level: warn }',
    'anycast:',
    `  forward: ${a.forward ?? true}`,
    ...(announce.length > 0 ? [`  announce: { ${announce.join(', ')} }`] : []),
    '',
  ].join('\n');
}

/** One server's process and the files it writes. */
export interface ServerProc {
  ns: Ns;
  name: string;
  child: ChildProcess;
  eventLog: string;
  output: () => string;
}

export interface AnycastFleet {
  fleet: Fleet;
  dir: string;
  configFile: string;
  router: BirdInstance;
  /** Running (or killed) server processes by name (`s1`…); replaced when a server is restarted. */
  procs: Map<string, ServerProc>;
  /** Starts `quic-lb demo backend --anycast` for server `ns` and waits for its ready line. */
  startServer(ns: Ns, extra?: string[]): Promise<ServerProc>;
}

export function serverName(ns: Ns): string {
  return `s${ns.index}`;
}

/**
 * Builds the topology, starts BIRD on the router and on every server (the VIP protocol starts
 * disabled), one vip-health.sh per server polling its /healthz, then the servers in
 * `options.start`, and waits until the router's ECMP route names exactly those. Tears everything
 * down if setup fails.
 */
export async function startAnycastFleet(options: AnycastFleetOptions = {}): Promise<AnycastFleet> {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` first`);
  const fleet = await createFleet({
    lbCount: 0,
    backendCount: 0,
    serverCount: options.serverCount ?? 3,
    routing: 'none',
  });
  try {
    const dir = mkdtempSync(path.join(tmpdir(), `${fleet.id}-`));
    fleet.onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const configFile = path.join(dir, 'anycast.yaml');
    const hex = (): string => randomBytes(16).toString('hex');
    writeFileSync(
      configFile,
      anycastConfig(fleet, { quicLb: hex(), fallback: hex(), hmac: hex() }, options.anycast ?? {}),
    );
    const router = await startBird(fleet, fleet.router, routerBirdConfig(fleet));
    for (const s of fleet.servers) {
      const bird = await startBird(fleet, s, lbBirdConfig(fleet, s));
      fleet.spawn(s, [
        'sh',
        path.join(BIRD_DIR, 'vip-health.sh'),
        `http://${METRICS}/healthz`,
        bird.socket,
        String(VIP_HEALTH.intervalS),
        String(VIP_HEALTH.rise),
        String(VIP_HEALTH.fall),
      ]);
    }
    const procs = new Map<string, ServerProc>();
    const af: AnycastFleet = {
      fleet,
      dir,
      configFile,
      router,
      procs,
      async startServer(ns, extra = []) {
        const p = await startServerProcess(fleet, dir, configFile, ns, extra);
        procs.set(p.name, p);
        return p;
      },
    };
    const start = (options.start ?? fleet.servers.map((s) => s.index)).map((i) => fleet.servers[i - 1]);
    await Promise.all(start.map((s) => af.startServer(s, options.extra?.[serverName(s)] ?? [])));
    await waitNexthops(af, start, 30_000);
    return af;
  } catch (e) {
    await fleet.teardown();
    throw e;
  }
}

async function startServerProcess(
  fleet: Fleet,
  dir: string,
  configFile: string,
  ns: Ns,
  extra: string[],
): Promise<ServerProc> {
  const name = serverName(ns);
  const eventLog = path.join(dir, `${name}-${Date.now()}.jsonl`);
  const argv = [
    'demo',
    'backend',
    '--config',
    configFile,
    '--name',
    name,
    '--anycast',
    '--metrics',
    METRICS,
    '--event-log',
    eventLog,
    ...extra,
  ];
  const child = await startReady(fleet, ns, argv);
  const out = outputOf.get(child) as () => string;
  return { ns, name, child, eventLog, output: out };
}

/** Waits until the router's route to the VIP has exactly the unicast addresses of `servers` as next hops. */
export async function waitNexthops(af: AnycastFleet, servers: readonly Ns[], timeoutMs: number): Promise<void> {
  const want = JSON.stringify(servers.map((s) => s.address as string).sort());
  await waitFor(
    `VIP route via ${servers.map((s) => s.name).join(', ')}`,
    async () => JSON.stringify(await af.fleet.vipNexthops()) === want,
    timeoutMs,
  );
}

/** Registers the fleet's beforeAll/afterAll in the calling describe; read `ctx.af` inside the tests. */
export function useAnycastFleet(options: AnycastFleetOptions = {}): { af: AnycastFleet } {
  const ctx = {} as { af: AnycastFleet };
  beforeAll(async () => {
    ctx.af = await startAnycastFleet(options);
  }, 60_000);
  afterAll(async () => {
    await ctx.af?.fleet.teardown();
  });
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// Observing the servers

/** Every sample of server `ns`'s /metrics (scraped inside its namespace); empty when it does not answer. */
export async function metricsOf(af: AnycastFleet, ns: Ns): Promise<Map<string, number>> {
  const r = await af.fleet.exec(ns, ['curl', '-s', '--max-time', '2', `http://${METRICS}/metrics`]);
  return parseMetrics(r.code === 0 ? r.stdout : '');
}

/** One sample (`name{labels}` exactly as exported) per server, 0 when absent. */
export async function sampleEach(af: AnycastFleet, sample: string, servers = af.fleet.servers): Promise<number[]> {
  return Promise.all(servers.map(async (s) => (await metricsOf(af, s)).get(sample) ?? 0));
}

/** `/healthz` of server `ns`: HTTP status (0: no answer) and body. */
export async function healthz(af: AnycastFleet, ns: Ns): Promise<{ status: number; body: string }> {
  const r = await af.fleet.exec(ns, [
    'curl',
    '-s',
    '--max-time',
    '2',
    '-w',
    '\n%{http_code}',
    `http://${METRICS}/healthz`,
  ]);
  const nl = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(nl + 1)) || 0, body: r.stdout.slice(0, Math.max(nl, 0)) };
}

/** The JSON-lines events a server process wrote so far. */
export function eventsOf(p: ServerProc): Record<string, unknown>[] {
  if (!existsSync(p.eventLog)) return [];
  return readFileSync(p.eventLog, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A connection as the servers' event logs tell it. */
export interface Accepted {
  server: string;
  conn: number;
  /** ms since the epoch, from the event's `ts`. */
  at: number;
  via: string;
  /** `via` of its `migrated` event(s), in order. */
  migratedVia: string[];
}

/** Every connection every server process (also earlier, killed ones) accepted, by the server's SCID (hex). */
export function acceptedBySCID(procs: Iterable<ServerProc>): Map<string, Accepted> {
  const out = new Map<string, Accepted>();
  for (const p of procs) {
    const byConn = new Map<number, Accepted>();
    for (const e of eventsOf(p)) {
      if (e.event === 'connection-accepted') {
        const a: Accepted = {
          server: p.name,
          conn: Number(e.conn),
          at: Date.parse(String(e.ts)),
          via: String(e.via),
          migratedVia: [],
        };
        byConn.set(a.conn, a);
        out.set(String(e.scid), a);
      } else if (e.event === 'migrated') byConn.get(Number(e.conn))?.migratedVia.push(String(e.via));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Clients

export interface ClientRun {
  /** Whether the client honours preferred_address (false: `--no-preferred-addr`, the VIP path). */
  migrating: boolean;
  /** The client's UDP source port (its first datagram to the VIP). */
  port?: number;
  startedAt: number;
  endedAt: number;
  out: string;
  /** HTTP 200 and the exact body. */
  ok: boolean;
  /** The server's SCID (its initial_source_connection_id), hex, when the handshake got that far. */
  scid?: string;
  /** `[ip]:port` the client selected as the server's preferred address. */
  preferred?: string;
  /** The client's path validation to its preferred address succeeded. */
  validated: boolean;
}

export interface ClientOptions {
  size: number;
  migrating: boolean;
  /** `--delay-stream`: the request leaves this long after the handshake (default 300 ms). */
  delayMs?: number;
  /** `--timeout`: the client's idle timeout (default 5 s; must exceed `delayMs`, the server sends nothing meanwhile). */
  idleS?: number;
}

/** A client started by {@link startClient}. */
export interface StartedClient {
  /** Its source port, as soon as it sent its first datagram (undefined if it never did). */
  port: Promise<number | undefined>;
  done: Promise<ClientRun>;
}

/**
 * Starts one gtlsclient in the client namespace, to the VIP, downloading `/bytes/<size>`. Bounded:
 * idle (default 5 s) and handshake (5 s) timeouts, killed after 20 s. gtlsclient's exit code says nothing (0 after
 * a failed handshake too): success = status 200 and the exact demo body.
 */
export function startClient(af: AnycastFleet, o: ClientOptions): StartedClient {
  const { fleet } = af;
  const dl = mkdtempSync(path.join(af.dir, 'dl-'));
  const startedAt = Date.now();
  const child = fleet.spawn(fleet.client, [
    'timeout',
    '20',
    'gtlsclient',
    '--exit-on-all-streams-close',
    '--no-quic-dump',
    '--no-http-dump',
    `--timeout=${o.idleS ?? 5}s`,
    '--handshake-timeout=5s',
    `--delay-stream=${o.delayMs ?? 300}ms`,
    `--download=${dl}`,
    ...(o.migrating ? [] : ['--no-preferred-addr']),
    fleet.vip,
    String(VIP_PORT),
    `https://${fleet.vip}:${VIP_PORT}/bytes/${o.size}`,
  ]);
  let out = '';
  let resolvePort: (p: number | undefined) => void = () => {};
  const port = new Promise<number | undefined>((r) => (resolvePort = r));
  const sent = new RegExp(`Sent packet: local=\\[[\\d.]+\\]:(\\d+) remote=\\[${fleet.vip.replace(/\./g, '\\.')}\\]`);
  const onData = (d: string): void => {
    out += d;
    const m = sent.exec(out);
    if (m) resolvePort(Number(m[1]));
  };
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const done = new Promise<ClientRun>((resolve) => {
    child.once('close', () => {
      resolvePort(undefined);
      const f = path.join(dl, String(o.size));
      const body = existsSync(f) ? readFileSync(f) : undefined;
      rmSync(dl, { recursive: true, force: true });
      const preferred = /selected server preferred_address is (\[[\d.]+\]:\d+)/.exec(out)?.[1];
      const p = sent.exec(out)?.[1];
      resolve({
        migrating: o.migrating,
        port: p === undefined ? undefined : Number(p),
        startedAt,
        endedAt: Date.now(),
        out,
        ok: out.includes('[:status: 200]') && isDemoBody(body, o.size),
        scid: /initial_source_connection_id=0x([0-9a-f]+)/.exec(out)?.[1],
        preferred,
        validated: preferred !== undefined && out.includes(`remote:${preferred}} succeeded`),
      });
    });
  });
  return { port, done };
}

export function runClient(af: AnycastFleet, o: ClientOptions): Promise<ClientRun> {
  return startClient(af, o).done;
}

/** `count` clients started `gapMs` apart (all running concurrently), resolved when every one has finished. */
export async function clientBurst(
  af: AnycastFleet,
  count: number,
  gapMs: number,
  o: ClientOptions,
): Promise<ClientRun[]> {
  const runs: Promise<ClientRun>[] = [];
  for (let i = 0; i < count; i++) {
    runs.push(runClient(af, o));
    if (gapMs > 0 && i < count - 1) await sleep(gapMs);
  }
  return Promise.all(runs);
}

/** The owning server of each run (by its SCID in the event logs), undefined when no server accepted it. */
export function ownerOf(runs: readonly ClientRun[], accepted: Map<string, Accepted>): (Accepted | undefined)[] {
  return runs.map((r) => (r.scid === undefined ? undefined : accepted.get(r.scid)));
}

/**
 * The servers the router's ECMP route sends the client's flows `sport` -> VIP:VIP_PORT to right
 * now (`ip route get` with the L4 fields, as the multipath hash policy 1 sees them; one `ip -batch`
 * for all ports): each a server's unicast address, or '' (no route, or no port).
 */
export async function ecmpChoices(af: AnycastFleet, ports: readonly (number | undefined)[]): Promise<string[]> {
  const { fleet } = af;
  const known = ports.filter((p): p is number => p !== undefined);
  if (known.length === 0) return ports.map(() => '');
  const batch = path.join(af.dir, `route-get-${randomBytes(4).toString('hex')}`);
  const line = (p: number): string =>
    `route get ${fleet.vip} from ${fleet.client.address} iif ${fleet.client.routerIfname} ipproto udp sport ${p} dport ${VIP_PORT}`;
  writeFileSync(batch, `${known.map(line).join('\n')}\n`);
  const r = await fleet.exec(fleet.router, ['ip', '-batch', batch]);
  rmSync(batch, { force: true });
  // one answer line per command, in order ("<vip> from … via <next hop> dev …"); a failed one has none
  const answers = r.stdout.split('\n').filter((l) => l.startsWith(fleet.vip));
  const byPort = new Map(known.map((p, i) => [p, /via (\S+)/.exec(answers[i] ?? '')?.[1] ?? '']));
  return ports.map((p) => (p === undefined ? '' : (byPort.get(p) ?? '')));
}

/** {@link ecmpChoices} for one flow. */
export async function ecmpChoice(af: AnycastFleet, sport: number): Promise<string> {
  return (await ecmpChoices(af, [sport]))[0];
}

// ---------------------------------------------------------------------------------------------
// Watching transitions with timestamps (same clock as the test: every process runs on this host)

export interface Transition {
  at: number;
  value: string;
}

/**
 * Polls server `ns`'s /healthz every 20 ms from inside its namespace and records each change of
 * status (`200`, `503`, `000` = no answer) with its time. Stopped by fleet teardown or `stop()`.
 */
export function watchHealthz(af: AnycastFleet, ns: Ns): { transitions: Transition[]; stop: () => void } {
  const script = `
const http = require('node:http');
let last = '';
function poll() {
  const req = http.get('http://${METRICS}/healthz', { timeout: 200 }, (res) => {
    res.resume();
    note(String(res.statusCode));
  });
  req.on('timeout', () => req.destroy());
  req.on('error', () => note('000'));
}
function note(s) {
  if (s !== last) { last = s; process.stdout.write(Date.now() + ' ' + s + '\\n'); }
  setTimeout(poll, 20);
}
poll();`;
  const child = af.fleet.spawn(ns, [process.execPath, '-e', script]);
  const transitions: Transition[] = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const [at, value] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      transitions.push({ at: Number(at), value });
    }
  });
  return { transitions, stop: () => child.kill('SIGTERM') };
}

/**
 * Records every change of the router's next hops for the VIP (`ip monitor route`, timestamped on
 * arrival here; the route itself is re-read on each event). Values are the sorted next-hop
 * addresses joined by ','; '' = no route. `onChange` runs after each change is recorded (before
 * the next one is looked at); `settled()` resolves when every change seen so far was handled.
 */
export function watchRoute(
  af: AnycastFleet,
  onChange?: (hops: string) => Promise<void>,
): { transitions: Transition[]; stop: () => void; settled: () => Promise<void> } {
  const child = af.fleet.spawn(af.fleet.router, ['ip', 'monitor', 'route']);
  const transitions: Transition[] = [];
  let last: string | undefined;
  let chain = Promise.resolve();
  const check = (at: number): void => {
    chain = chain.then(async () => {
      const hops = (await af.fleet.vipNexthops().catch(() => [])).join(',');
      if (hops !== last) {
        last = hops;
        transitions.push({ at, value: hops });
        await onChange?.(hops).catch(() => {});
      }
    });
  };
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    if (d.includes(af.fleet.vip)) check(Date.now());
  });
  check(Date.now());
  return { transitions, stop: () => child.kill('SIGTERM'), settled: () => chain };
}

// ---------------------------------------------------------------------------------------------
// Figures for the closing note

/** Where the figures go (repository root, ignored by git). */
export const RESULTS_FILE = path.join(REPO, '.tmp', 'anycast-results.json');

/**
 * Records one figure under `key` in RESULTS_FILE and prints one summary line for it. Test files
 * run in parallel workers and each adds its own keys, so the read-modify-write happens under a
 * lock file (created exclusively; one left by a crashed worker is taken over after 5 s).
 */
export function recordFigure(key: string, value: number | string, unit: string, note = ''): void {
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  withLock(`${RESULTS_FILE}.lock`, () => {
    let all: Record<string, unknown> = {};
    try {
      all = JSON.parse(readFileSync(RESULTS_FILE, 'utf8')) as Record<string, unknown>;
    } catch {
      /* first figure of the run */
    }
    all[key] = { value, unit, note, at: new Date().toISOString() };
    writeFileSync(RESULTS_FILE, `${JSON.stringify(all, null, 2)}\n`);
  });
  process.stdout.write(`anycast figure: ${key} = ${value} ${unit}${note ? ` (${note})` : ''}\n`);
}

function withLock(lock: string, fn: () => void): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      try {
        if (Date.now() - statSync(lock).mtimeMs > 5000) rmSync(lock, { force: true });
      } catch {
        /* released meanwhile */
      }
      Atomics.wait(pause, 0, 0, 10);
    }
  }
  try {
    fn();
  } finally {
    rmSync(lock, { force: true });
  }
}
