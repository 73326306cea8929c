// A fleet topology in Linux network namespaces for the fleet tests (issue 6). Root only.
//
//   client ──┐                         ┌── lb1 (VIP on lo) ─┐
//            router (ECMP to the VIP) ─┤                    ├── (via router) backends be1..beN
//                                      └── lb2 (VIP on lo) ─┘
//
// or, for the anycast topology without an LB tier (issue 12: `lbCount: 0, backendCount: 0,
// serverCount: N`), servers srv1..srvN that each hold the VIP on lo and their own unicast address.
//
// Every namespace hangs off the router on its own veth /24 link (router .1, host .2), all in
// the benchmark range 198.18.0.0/15 (RFC 2544), which never leaves these namespaces:
//   client 198.18.1.2, lbK 198.18.(10+K).2, beK 198.18.(20+K).2, srvK 198.18.(30+K).2,
//   VIP 198.19.0.1 (on the lo of each LB and each server).
// The router forwards, has rp_filter off and fib_multipath_hash_policy=1 (L4 hash: without it
// every flow from one client address takes the same path), and (routing 'static') a multipath
// route to the VIP over all VIP holders (the LBs, or the servers when there are no LBs). With
// routing 'none' the VIP route is left to BGP (bird.ts).
//
// Names are unique per run (`<prefix><pid>-<counter+random>-<role>`), every process started through
// `spawn`/`exec` is tracked, and `teardown()` kills them and deletes every namespace. It also runs
// on process exit and SIGINT/SIGTERM, and `createFleet` first removes namespaces left by dead
// processes of an earlier run with the same prefix. `withFleet` = create + run + always tear down,
// with a timeout.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { execFile, execFileSync, spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';

export const DEFAULT_PREFIX = 'qlbt';
/** The anycast VIP inside the namespaces (198.18.0.0/15 benchmark range). */
export const DEFAULT_VIP = '198.19.0.1';

export type NsRole = 'client' | 'router' | 'lb' | 'backend' | 'server';

/** One namespace of the topology. */
export interface Ns {
  /** Namespace name (`ip netns exec <name>`). */
  readonly name: string;
  readonly role: NsRole;
  /** 1-based index for lb/backend/server, 0 otherwise. */
  readonly index: number;
  /** This namespace's address on its link to the router (router: undefined). */
  readonly address: string | undefined;
  /** The router's address on that link (this namespace's gateway). */
  readonly gateway: string | undefined;
  /** Interface name of that link inside this namespace ('eth0'), and on the router side. */
  readonly ifname: string;
  readonly routerIfname: string;
}

export interface FleetOptions {
  /** Namespace name prefix (default 'qlbt'); the pid and a counter are appended. */
  prefix?: string;
  lbCount?: number;
  backendCount?: number;
  /** Anycast servers (VIP on lo + own unicast address, issue 12); default 0. */
  serverCount?: number;
  vip?: string;
  /** 'static' (default): the router gets a multipath route to the VIP holders; 'none': leave it to BGP. */
  routing?: 'static' | 'none';
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Error from a setup command, with the command line and its stderr. */
export class FleetError extends Error {
  constructor(
    message: string,
    readonly command?: string,
    readonly stderr?: string,
  ) {
    super(message);
    this.name = 'FleetError';
  }
}

/** True when `bin` is on PATH. */
export function commandExists(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v '${bin.replace(/'/g, '')}'`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** True when this process can build namespaces (root and `ip` present). */
export function canUseNetns(): boolean {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return false;
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Names of all network namespaces (`ip netns list`), optionally filtered by prefix. */
export function listNamespaces(prefix = ''): string[] {
  // stderr piped: `ip netns list` warns ("Peer netns reference is invalid") while another run
  // deletes a namespace; the list itself is still right.
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out
    .split('\n')
    .map((l) => l.split(' ')[0].trim())
    .filter((n) => n.length > 0 && n.startsWith(prefix));
}

/** True while `pid` runs (zombies, which only wait to be reaped, count as dead). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    return stat.charAt(close + 2) !== 'Z';
  } catch {
    return false;
  }
}

/** PIDs of every process inside namespace `name` (`ip netns pids`). */
export function namespacePids(name: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

function killNamespaceSync(name: string): void {
  // Only processes inside a namespace this library created (names are unique per run).
  for (const pid of namespacePids(name)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}

/**
 * Removes namespaces named `<prefix><pid>-<tag>-…` whose creating process is dead (left by a crashed
 * run). Namespaces of live processes (other test workers) are left alone. Returns the removed names.
 */
export function cleanupStaleNamespaces(prefix = DEFAULT_PREFIX): string[] {
  const re = new RegExp(`^${prefix}(\\d+)-[0-9a-z]+-`);
  const removed: string[] = [];
  for (const name of listNamespaces(prefix)) {
    const m = re.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    killNamespaceSync(name);
    removed.push(name);
  }
  return removed;
}

/** The role part of a namespace name (`…-be2`, `…-srv1`). */
const SHORT_ROLE: Record<NsRole, string> = {
  client: 'client',
  router: 'router',
  lb: 'lb',
  backend: 'be',
  server: 'srv',
};

let fleetCounter = 0;
const liveFleets = new Set<Fleet>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const f of liveFleets) f.teardownSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const f of liveFleets) f.teardownSync();
      process.kill(process.pid, sig);
    });
  }
}

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) {
    throw new FleetError(
      `${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`,
      `${cmd} ${args.join(' ')}`,
      r.stderr,
    );
  }
  return r.stdout;
}

/** A built topology. Obtain with {@link createFleet} or {@link withFleet}. */
export class Fleet {
  readonly id: string;
  readonly vip: string;
  readonly client: Ns;
  readonly router: Ns;
  readonly lbs: readonly Ns[];
  readonly backends: readonly Ns[];
  /** Anycast servers (issue 12): the VIP on lo and their own unicast address, no LB in front. */
  readonly servers: readonly Ns[];
  /** The namespaces with the VIP on lo: the LBs, then the servers. */
  readonly vipHolders: readonly Ns[];
  /** Every namespace, router first. */
  readonly all: readonly Ns[];
  private readonly children = new Set<ChildProcess>();
  private readonly cleanups: (() => void)[] = [];
  private readonly pids = new Set<number>();
  private tornDown = false;

  /** @internal use createFleet */
  constructor(id: string, vip: string, lbCount: number, backendCount: number, serverCount = 0) {
    this.id = id;
    this.vip = vip;
    const mk = (role: NsRole, index: number, subnet: number | undefined, rif: string): Ns => ({
      name: `${id}-${SHORT_ROLE[role]}${index > 0 ? index : ''}`,
      role,
      index,
      address: subnet === undefined ? undefined : `198.18.${subnet}.2`,
      gateway: subnet === undefined ? undefined : `198.18.${subnet}.1`,
      ifname: 'eth0',
      routerIfname: rif,
    });
    this.router = mk('router', 0, undefined, '');
    this.client = mk('client', 0, 1, 'r-client');
    this.lbs = Array.from({ length: lbCount }, (_, i) => mk('lb', i + 1, 11 + i, `r-lb${i + 1}`));
    this.backends = Array.from({ length: backendCount }, (_, i) => mk('backend', i + 1, 21 + i, `r-be${i + 1}`));
    this.servers = Array.from({ length: serverCount }, (_, i) => mk('server', i + 1, 31 + i, `r-srv${i + 1}`));
    this.vipHolders = [...this.lbs, ...this.servers];
    this.all = [this.router, this.client, ...this.lbs, ...this.backends, ...this.servers];
  }

  /** Namespaces of this fleet that currently exist. */
  existingNamespaces(): string[] {
    const mine = new Set(this.all.map((n) => n.name));
    return listNamespaces(this.id).filter((n) => mine.has(n));
  }

  /** PIDs started through this fleet that have not been reaped yet. */
  trackedPids(): number[] {
    return [...this.pids];
  }

  /** Runs `argv` inside `ns` to completion (`ip netns exec`). Never rejects; see `code`. */
  exec(ns: Ns | string, argv: string[], timeoutMs = 15_000): Promise<ExecResult> {
    const name = typeof ns === 'string' ? ns : ns.name;
    return run('ip', ['netns', 'exec', name, ...argv], timeoutMs);
  }

  /** Like exec, but rejects with FleetError when the command fails. Resolves to stdout. */
  async execOk(ns: Ns | string, argv: string[], timeoutMs = 15_000): Promise<string> {
    const r = await this.exec(ns, argv, timeoutMs);
    if (r.code !== 0) {
      throw new FleetError(
        `[${typeof ns === 'string' ? ns : ns.name}] ${argv.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`,
      );
    }
    return r.stdout;
  }

  /**
   * Starts `argv` inside `ns` in its own process group, tracked: teardown kills the group.
   * (`ip netns exec` execs the command, so the child's PID is the command's PID.)
   */
  spawn(ns: Ns | string, argv: string[], options: SpawnOptions = {}): ChildProcess {
    if (this.tornDown) throw new FleetError(`fleet ${this.id} is torn down`);
    const name = typeof ns === 'string' ? ns : ns.name;
    const child = spawnChild('ip', ['netns', 'exec', name, ...argv], { stdio: 'pipe', ...options, detached: true });
    if (child.pid !== undefined) this.pids.add(child.pid);
    this.children.add(child);
    child.once('exit', () => {
      if (child.pid !== undefined) this.pids.delete(child.pid);
      this.children.delete(child);
    });
    return child;
  }

  /** Registers a synchronous cleanup (temp files…) run by teardown after the processes are gone. */
  onTeardown(fn: () => void): void {
    this.cleanups.push(fn);
  }

  private runCleanups(): void {
    for (const fn of this.cleanups.splice(0)) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
  }

  /** Replaces the router's route to the VIP with a multipath route over `lbs` (any VIP holders; one = unicast, none = no route). */
  async setVipNexthops(lbs: readonly Ns[]): Promise<void> {
    if (lbs.length === 0) {
      await run('ip', ['-n', this.router.name, 'route', 'del', `${this.vip}/32`]); // none left (absent: fine)
      return;
    }
    const args = ['route', 'replace', `${this.vip}/32`];
    if (lbs.length === 1) args.push('via', lbs[0].address as string, 'dev', lbs[0].routerIfname);
    else for (const lb of lbs) args.push('nexthop', 'via', lb.address as string, 'dev', lb.routerIfname, 'weight', '1');
    await must('ip', ['-n', this.router.name, ...args]);
  }

  /** `ip route show <vip>/32` in the router, as the list of next-hop addresses. */
  async vipNexthops(): Promise<string[]> {
    const out = await must('ip', ['-n', this.router.name, 'route', 'show', `${this.vip}/32`]);
    return [...out.matchAll(/via (\S+)/g)].map((m) => m[1]).sort();
  }

  /**
   * Kills every tracked process group (SIGTERM, then SIGKILL after `graceMs`), then every
   * process still inside the fleet's namespaces, then deletes the namespaces. Idempotent; never
   * throws.
   */
  async teardown(graceMs = 1000): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    const groups = [...this.pids];
    for (const pid of groups) signalGroup(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && groups.some(pidAlive)) await new Promise((r) => setTimeout(r, 25));
    for (const pid of groups) if (pidAlive(pid)) signalGroup(pid, 'SIGKILL');
    for (const ns of this.all) killNamespaceSync(ns.name);
    // let node reap our direct children (their 'exit' events), bounded
    const reapBy = Date.now() + 2000;
    while (this.children.size > 0 && Date.now() < reapBy) await new Promise((r) => setTimeout(r, 10));
    this.pids.clear();
    this.runCleanups();
    liveFleets.delete(this);
  }

  /** Synchronous teardown for exit handlers (SIGKILL, no grace). */
  teardownSync(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    for (const pid of this.pids) signalGroup(pid, 'SIGKILL');
    for (const ns of this.all) killNamespaceSync(ns.name);
    this.pids.clear();
    this.runCleanups();
    liveFleets.delete(this);
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
}

/**
 * Builds the topology. On any failure, everything created so far is torn down and a FleetError
 * is thrown. Requires root (see {@link canUseNetns}).
 */
export async function createFleet(options: FleetOptions = {}): Promise<Fleet> {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) throw new FleetError(`bad prefix ${prefix}`);
  const lbCount = options.lbCount ?? 2;
  const backendCount = options.backendCount ?? 3;
  const serverCount = options.serverCount ?? 0;
  if (lbCount < 0 || lbCount > 8 || backendCount < 0 || backendCount > 8 || serverCount < 0 || serverCount > 8)
    throw new FleetError('lbCount 0..8, backendCount 0..8, serverCount 0..8');
  if (lbCount + serverCount === 0) throw new FleetError('nothing holds the VIP: lbCount or serverCount must be > 0');
  cleanupStaleNamespaces(prefix);
  installExitHooks();
  // pid + counter + random: unique even when a test runner reloads this module in one process
  const tag = `${(fleetCounter++).toString(36)}${randomBytes(2).toString('hex')}`;
  const fleet = new Fleet(
    `${prefix}${process.pid}-${tag}`,
    options.vip ?? DEFAULT_VIP,
    lbCount,
    backendCount,
    serverCount,
  );
  liveFleets.add(fleet);
  try {
    const r = fleet.router.name;
    for (const ns of fleet.all) await must('ip', ['netns', 'add', ns.name]);
    for (const ns of fleet.all) await must('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    await must('ip', [
      'netns',
      'exec',
      r,
      'sysctl',
      '-q',
      '-w',
      'net.ipv4.ip_forward=1',
      'net.ipv4.fib_multipath_hash_policy=1',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
    ]);
    for (const ns of fleet.all) {
      if (ns.role === 'router') continue;
      // veth pair created in the router namespace with its peer directly in `ns`
      await must('ip', [
        '-n',
        r,
        'link',
        'add',
        ns.routerIfname,
        'type',
        'veth',
        'peer',
        'name',
        ns.ifname,
        'netns',
        ns.name,
      ]);
      await must('ip', ['-n', r, 'addr', 'add', `${ns.gateway}/24`, 'dev', ns.routerIfname]);
      await must('ip', ['-n', r, 'link', 'set', ns.routerIfname, 'up']);
      await must('ip', ['-n', ns.name, 'addr', 'add', `${ns.address}/24`, 'dev', ns.ifname]);
      await must('ip', ['-n', ns.name, 'link', 'set', ns.ifname, 'up']);
      await must('ip', ['-n', ns.name, 'route', 'add', 'default', 'via', ns.gateway as string]);
      if (fleet.vipHolders.includes(ns))
        await must('ip', ['-n', ns.name, 'addr', 'add', `${fleet.vip}/32`, 'dev', 'lo']);
    }
    if ((options.routing ?? 'static') === 'static') await fleet.setVipNexthops(fleet.vipHolders);
    return fleet;
  } catch (e) {
    await fleet.teardown(0);
    throw e instanceof FleetError ? e : new FleetError(String(e));
  }
}

/**
 * Builds a fleet, runs `fn`, and ALWAYS tears the fleet down (success, error or timeout).
 * Rejects with a FleetError('timeout') if `fn` has not settled after `timeoutMs`.
 */
export async function withFleet<T>(
  options: FleetOptions & { timeoutMs?: number },
  fn: (fleet: Fleet) => Promise<T>,
): Promise<T> {
  const fleet = await createFleet(options);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new FleetError(`fleet ${fleet.id}: timeout after ${options.timeoutMs} ms`)),
        options.timeoutMs ?? 120_000,
      );
    });
    return await Promise.race([fn(fleet), timeout]);
  } finally {
    clearTimeout(timer);
    await fleet.teardown();
  }
}
