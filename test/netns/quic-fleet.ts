// Shared setup of the QUIC fleet tests: two `quic-lb serve` processes on one VIP and one config in
// two LB namespaces behind the ECMP router, three `quic-lb demo backend` processes, Debian's ngtcp2
// client (gtlsclient) in the client namespace. Root only; needs the build (dist/cli.js).
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns, commandExists, createFleet, type Fleet, type Ns } from './netns.js';
import { parseMetrics } from '../helpers/metrics.js';
import { waitFor } from '../helpers/wait.js';
import { readyLine } from '../helpers/process.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The CLI under test (QUIC_LB_CLI overrides, e.g. to try another build). */
export const CLI = process.env.QUIC_LB_CLI ?? path.join(REPO, 'dist', 'cli.js');
export const has = commandExists;
export const RUN = canUseNetns() && has('gtlsclient') && has('curl');
export const VIP_PORT = 4433;
export const BACKEND_PORT = 4434;
export const RETURN_PORT = 4435;

export interface ClientResult {
  out: string;
  file?: Buffer;
}

/** One gtlsclient run from the client namespace (exit code is meaningless: assert on output). */
export async function client(fleet: Fleet, dir: string, urlPath: string, extra: string[] = []): Promise<ClientResult> {
  const dl = mkdtempSync(path.join(dir, 'dl-'));
  const r = await fleet.exec(
    fleet.client,
    [
      'timeout',
      '40',
      'gtlsclient',
      '--exit-on-all-streams-close',
      '--no-quic-dump',
      '--no-http-dump',
      `--download=${dl}`,
      ...extra,
      fleet.vip,
      String(VIP_PORT),
      `https://${fleet.vip}:${VIP_PORT}${urlPath}`,
    ],
    45_000,
  );
  const name = path.basename(urlPath);
  const f = path.join(dl, name);
  return { out: r.stdout + r.stderr, file: existsSync(f) ? readFileSync(f) : undefined };
}

/**
 * Runs `task` while the router's VIP route alternates between the fleet's first two LBs every
 * `periodMs` (ECMP set changes as seen by one connection); restores every LB as next hop after.
 * Returns the task's result and how many times the route was switched.
 */
export async function whileAlternatingLbs<T>(
  fleet: Fleet,
  task: () => Promise<T>,
  periodMs = 150,
): Promise<{ result: T; flips: number }> {
  const [lb1, lb2] = fleet.lbs;
  let flipping = true;
  let flips = 0;
  const flipper = (async () => {
    while (flipping) {
      await fleet.setVipNexthops([flips % 2 === 0 ? lb1 : lb2]);
      flips++;
      await new Promise((r) => setTimeout(r, periodMs));
    }
  })();
  try {
    return { result: await task(), flips };
  } finally {
    flipping = false;
    await flipper;
    await fleet.setVipNexthops(fleet.lbs);
  }
}
/** The demo server's `/bytes/N` body: octet i = i mod 251. */
export function isDemoBody(b: Buffer | undefined, n: number): boolean {
  if (b === undefined || b.length !== n) return false;
  for (let i = 0; i < n; i++) if (b[i] !== i % 251) return false;
  return true;
}

/** Sum of `quic_lb_received_packets_total` by reason, scraped inside the LB's namespace. */
export async function received(fleet: Fleet, lb: Ns): Promise<Record<string, number>> {
  const r = await fleet.exec(lb, ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:9433/metrics']);
  const out: Record<string, number> = {};
  for (const m of r.stdout.matchAll(/^quic_lb_received_packets_total\{reason="([a-z0-9_]+)"\} (\d+)/gm))
    out[m[1]] = Number(m[2]);
  return out;
}
export const total = (m: Record<string, number>): number => Object.values(m).reduce((a, b) => a + b, 0);

/** Output (stdout + stderr) captured so far for processes started by {@link startReady}. */
export const outputOf = new WeakMap<ChildProcess, () => string>();

/**
 * Starts `node dist/cli.js ...argv` in namespace `ns` (tracked by the fleet, stopped by PID at
 * teardown) and resolves once it prints its ready line (test/helpers/process.ts `readyLine`).
 */
export async function startReady(fleet: Fleet, ns: Ns, argv: string[]): Promise<ChildProcess> {
  const c = fleet.spawn(ns, [process.execPath, CLI, ...argv], { cwd: REPO });
  let out = '';
  outputOf.set(c, () => out);
  c.stdout?.setEncoding('utf8');
  c.stderr?.setEncoding('utf8');
  c.stdout?.on('data', (d: string) => (out += d));
  c.stderr?.on('data', (d: string) => (out += d));
  await waitFor(
    `${argv.slice(0, 2).join(' ')} in ${ns.name}: ${out}`,
    async () => {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(`${ns.name}: exited (${c.exitCode ?? c.signalCode}): ${out}`);
      return readyLine(out) !== undefined;
    },
    20_000,
  );
  return c;
}

/** A running QUIC fleet. */
export interface QuicFleet {
  fleet: Fleet;
  /** Temp dir (config, downloads), removed on teardown. */
  dir: string;
  config: string;
  lbProcs: Map<string, ChildProcess>;
  backendProcs: Map<string, ChildProcess>;
  startLb(lb: Ns): Promise<void>;
}

/**
 * Builds the fleet and starts every LB and backend (`routing: 'none'`: the VIP route is left to
 * BGP; `drainMs`: the LBs' graceful-drain time). One config file for all of them (draft-21:
 * LBs and servers share it). The return port is on the VIP itself (anycast), so a backend that
 * sends its replies there reaches whichever LB the router picks.
 */
/** One QUIC-LB config of the fleet's config file. */
export interface FleetQuicLbConfig {
  configId: number;
  key: string;
}

/**
 * The fleet's config file (shared by every LB and backend): the given QUIC-LB configs, and for
 * backend K (`beK`) the server ID `000K` under each of them; `weights` (0 = drained: no new
 * connections by fallback, CID-routed packets still delivered) and `omit` (removed backends).
 */
export function fleetConfig(
  fleet: Fleet,
  configs: FleetQuicLbConfig[],
  opts: { drainMs?: number; weights?: Record<string, number>; omit?: string[]; xdp?: XdpAttach } = {},
): string {
  return [
    'listen:',
    `  - '${fleet.vip}:${VIP_PORT}'`,
    'quicLb:',
    ...configs.map((c) => `  - { configId: ${c.configId}, serverIdLength: 2, nonceLength: 6, key: '${c.key}' }`),
    'backends:',
    ...fleet.backends
      .filter((b) => !(opts.omit ?? []).includes(`be${b.index}`))
      .map(
        (b) =>
          `  - { name: be${b.index}, address: '${b.address}:${BACKEND_PORT}', weight: ${opts.weights?.[`be${b.index}`] ?? 1}, ` +
          `serverIds: { ${configs.map((c) => `'${c.configId}': '000${b.index}'`).join(', ')} } }`,
      ),
    // A backend busy with downloads on a shared 2-core machine may answer a probe late; these
    // tests are about routing, so a probe gets 1 s (3 misses in a row mark a backend down).
    'health: { intervalMs: 500, timeoutMs: 1000 }',
    `fallback: { key: '${FALLBACK_KEY}' }`,
    `returnPath: { mode: via-lb, listen: '${fleet.vip}:${RETURN_PORT}' }`,
    "metrics: { listen: '127.0.0.1:9433' }",
    'log: { level: warn }',
    ...(opts.drainMs === undefined ? [] : [`drainMs: ${opts.drainMs}`]),
    // The LBs' link to the router is `eth0` in every LB namespace; `stop`: a test must not pass
    // on node:dgram alone when XDP did not attach.
    ...(opts.xdp === undefined
      ? []
      : [`datapath: { mode: xdp, interface: ${fleet.lbs[0].ifname}, attach: ${opts.xdp}, unavailable: stop }`]),
    '',
  ].join('\n');
}

/** `datapath.attach` of an XDP fleet (docs/xdp.md). */
export type XdpAttach = 'native' | 'generic';

/**
 * Attaches the XDP program (no maps filled: every frame passes) natively to the router side of
 * `lb`'s link, by running the agent there until the fleet's teardown stops it.
 */
async function attachPeerXdp(fleet: Fleet, lb: Ns): Promise<void> {
  const dist = path.join(REPO, 'dist', 'xdp');
  const agent = fleet.spawn(fleet.router, [
    path.join(dist, 'quic-lb-xdp'),
    path.join(dist, 'quic_lb.bpf.o'),
    lb.routerIfname,
    'native',
  ]);
  let out = '';
  agent.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  agent.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(`XDP on ${lb.routerIfname} in the router: ${out}`, () => {
    if (agent.exitCode !== null) throw new Error(`agent exited: ${out}`);
    return out.startsWith('ready native');
  });
}
const FALLBACK_KEY = randomBytes(16).toString('hex');

/** A test file's fleet: started once before its tests (90 s allowed), torn down after them, even on failure. */
export interface QuicFleetContext {
  qf: QuicFleet;
  fleet: Fleet;
  dir: string;
}

/** Registers the fleet's beforeAll/afterAll in the calling `describe`; read the context inside tests. */
export function useQuicFleet(options?: Parameters<typeof startQuicFleet>[0]): QuicFleetContext {
  const ctx = {} as QuicFleetContext;
  beforeAll(async () => {
    ctx.qf = await startQuicFleet(options);
    ctx.fleet = ctx.qf.fleet;
    ctx.dir = ctx.qf.dir;
  }, 90_000);
  afterAll(async () => {
    await ctx.qf?.fleet.teardown();
  });
  return ctx;
}

export async function startQuicFleet(
  options: { routing?: 'static' | 'none'; drainMs?: number; configs?: FleetQuicLbConfig[]; xdp?: XdpAttach } = {},
): Promise<QuicFleet> {
  if (!existsSync(CLI))
    throw new Error(`${CLI} missing: run \`npm run build\` first (npm test and npm run test:netns do)`);
  const fleet = await createFleet({ lbCount: 2, backendCount: 3, routing: options.routing ?? 'static' });
  try {
    const dir = mkdtempSync(path.join(tmpdir(), `${fleet.id}-`));
    fleet.onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const config = path.join(dir, 'lb.yaml');
    const configs = options.configs ?? [{ configId: 0, key: randomBytes(16).toString('hex') }];
    writeFileSync(config, fleetConfig(fleet, configs, { drainMs: options.drainMs, xdp: options.xdp }));
    // The XDP program's next-hop lookup is a forwarding lookup from its interface (xdp/encap.h):
    // the LB forwards, as a router does (docs/xdp.md "Requirements").
    if (options.xdp !== undefined)
      for (const lb of fleet.lbs) await fleet.execOk(lb, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    // A frame a native XDP program sends out of a veth reaches the peer only if the peer runs in
    // NAPI mode: an XDP program of its own (the kernel's veth rule; a NIC needs nothing). The
    // agent, load-only maps and all, passes every frame there (no VIP in its maps).
    if (options.xdp === 'native') for (const lb of fleet.lbs) await attachPeerXdp(fleet, lb);
    // A veth hands a locally sent datagram on with its UDP checksum left to "hardware" (only the
    // pseudo-header sum in the field), and a native XDP program sees exactly that: the client
    // computes its checksums itself, as any sender behind a real link has.
    if (options.xdp === 'native') await fleet.execOk(fleet.client, ['ethtool', '-K', fleet.client.ifname, 'tx', 'off']);
    const lbProcs = new Map<string, ChildProcess>();
    const backendProcs = new Map<string, ChildProcess>();
    const qf: QuicFleet = {
      fleet,
      dir,
      config,
      lbProcs,
      backendProcs,
      async startLb(lb: Ns) {
        lbProcs.set(lb.name, await startReady(fleet, lb, ['serve', '--config', config]));
      },
    };
    for (const lb of fleet.lbs) await qf.startLb(lb);
    // --allow-lb: an LB's forwarded datagrams and probes reach the backends (through the router,
    // no NAT) from its own link address 198.18.(10+K).2, not from the VIP on its loopback.
    const allowLb = fleet.lbs.map((lb) => lb.address as string).join(',');
    for (const be of fleet.backends) {
      backendProcs.set(
        be.name,
        await startReady(fleet, be, [
          'demo',
          'backend',
          '--config',
          config,
          '--name',
          `be${be.index}`,
          '--allow-lb',
          allowLb,
        ]),
      );
    }
    return qf;
  } catch (e) {
    await fleet.teardown();
    throw e;
  }
}

/** Every sample of the LB's /metrics (scraped inside its namespace) as `name{labels}` -> value. */
export async function scrape(fleet: Fleet, lb: Ns): Promise<Map<string, number>> {
  const r = await fleet.exec(lb, ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:9433/metrics']);
  return parseMetrics(r.stdout);
}

/** Successful config reloads of `lb` so far (`quic_lb_config_reloads_total{outcome="success"}`). */
export async function reloadsOk(fleet: Fleet, lb: Ns): Promise<number> {
  return (await scrape(fleet, lb)).get('quic_lb_config_reloads_total{outcome="success"}') ?? 0;
}

/** Writes the shared config file, SIGHUPs every LB and waits until each has reloaded it. */
export async function reloadLbs(qf: QuicFleet, text: string): Promise<void> {
  const { fleet } = qf;
  const before = await Promise.all(fleet.lbs.map((lb) => reloadsOk(fleet, lb)));
  writeFileSync(qf.config, text);
  for (const lb of fleet.lbs) process.kill(qf.lbProcs.get(lb.name)?.pid as number, 'SIGHUP');
  await waitFor(
    'every LB reloaded the config',
    async () => {
      const now = await Promise.all(fleet.lbs.map((lb) => reloadsOk(fleet, lb)));
      return now.every((n, i) => n > before[i]);
    },
    20_000,
  );
}
