// The hostile-internet harness (issue 10): one LB namespace running `quic-lb serve`, backend
// namespaces running `quic-lb demo backend`, the attacker (raw-udp send) and the octet counter
// (raw-udp count) in the client namespace. Built on test/netns/netns.ts and quic-fleet.ts.
//
// Accounting of octets toward unvalidated addresses: the attacker's spoofed sources live in
// ATTACKER_PREFIX and the victims its forged PROXY headers name in VICTIM_PREFIX. The router
// routes both prefixes to the client namespace, where the counter sees every packet sent to
// them (AF_PACKET, before routing) and a blackhole route then drops them without an ICMP
// answer (forwarding on, so the kernel takes the EINVAL path of ip_error, which is silent).
// Amplification factor of a case = IP octets that reached those prefixes / IP octets the
// attacker sent.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { canUseNetns, createFleet, namespacePids, pidAlive, type Fleet, type Ns } from '../netns/netns.js';
import {
  BACKEND_PORT,
  CLI,
  REPO,
  RETURN_PORT,
  VIP_PORT,
  client,
  isDemoBody,
  outputOf,
  scrape,
  startReady,
} from '../netns/quic-fleet.js';
import { OctetCounter, buildRawUdp, rawSend, writePayloads, type CountReport, type SendResult } from './native.js';
import { recordCase, type CaseResult } from './summary.js';
import { sleep, waitFor } from '../helpers/wait.js';

export { BACKEND_PORT, RETURN_PORT, VIP_PORT };

/** Spoofed attacker sources (inside the RFC 2544 benchmark range, unused by the fleet): 32 766 hosts. */
export const ATTACKER_PREFIX = '198.19.128.0/17';
/** Victims named by forged PROXY headers (never send anything themselves). */
export const VICTIM_PREFIX = '198.19.64.0/18';
export const VICTIM = '198.19.64.7';

/**
 * Names of the fix's contract this harness depends on, in one place so the integrator can adjust
 * them (common.md "Shared contract").
 */
export const CONTRACT = {
  /** LB metric of datagrams the LB could not send, by reason (bad_port, bad_address, queue_full, socket). */
  sendErrors: 'quic_lb_send_errors_total',
  /** Return-path refusals (existing). */
  returnRejected: 'quic_lb_return_rejected_total',
  /** Config field: the list of return-path HMAC keys, first signs, all verify. */
  hmacKeys: 'hmacKeys',
} as const;

/** Stated bound of the LB's RSS growth under the slow-backend flood. */
export const RSS_GROWTH_LIMIT_MB = 64;

export interface LbOptions {
  workers?: number;
  /** Return-path HMAC keys (hex); none: no HMAC. One key is written as the `hmacKey` shorthand unless `keyList`. */
  hmacKeys?: string[];
  keyList?: boolean;
  signForward?: boolean;
  /** QUIC-LB config ids (default [0]); each gets a fixed key of this harness. */
  configIds?: number[];
  weights?: Record<string, number>;
  /** The `health:` mapping (flow style); default probes every 500 ms, 1 s timeout, down after 3 misses. */
  health?: string;
  /** Backends listen on the dual-stack wildcard `[::]:4434` (the LB's IPv4 datagrams then arrive as ::ffff:a.b.c.d). */
  dualStackBackends?: boolean;
}

/** Fixed per-run keys, so every config file of a run agrees with the backends' CIDs. */
export const QUIC_LB_KEYS = [0, 1, 2].map(() => randomBytes(16).toString('hex'));
const FALLBACK_KEY = randomBytes(16).toString('hex');

/** The LB config file (shared by the LB and the backends, as draft-21 has it). */
export function lbConfig(fleet: Fleet, o: LbOptions = {}): string {
  const ids = o.configIds ?? [0];
  const keys = o.hmacKeys ?? [];
  const hmac =
    keys.length === 0
      ? ''
      : keys.length === 1 && !o.keyList
        ? `, hmacKey: '${keys[0]}'`
        : `, ${CONTRACT.hmacKeys}: [${keys.map((k) => `'${k}'`).join(', ')}]`;
  return [
    'listen:',
    `  - '${fleet.vip}:${VIP_PORT}'`,
    'quicLb:',
    ...ids.map((id) => `  - { configId: ${id}, serverIdLength: 2, nonceLength: 6, key: '${QUIC_LB_KEYS[id]}' }`),
    'backends:',
    ...fleet.backends.map(
      (b) =>
        `  - { name: be${b.index}, address: '${b.address}:${BACKEND_PORT}', weight: ${o.weights?.[`be${b.index}`] ?? 1}, ` +
        `serverIds: { ${ids.map((id) => `'${id}': '000${b.index}'`).join(', ')} } }`,
    ),
    // probes every 500 ms, 1 s to answer, down after 3 misses: the probe-loss case needs ~2.5 s
    `health: ${o.health ?? '{ intervalMs: 500, timeoutMs: 1000, fall: 3, rise: 2 }'}`,
    `fallback: { key: '${FALLBACK_KEY}' }`,
    `returnPath: { mode: via-lb, listen: '${fleet.vip}:${RETURN_PORT}'${hmac}${o.signForward ? ', signForward: true' : ''} }`,
    "metrics: { listen: '127.0.0.1:9433' }",
    'log: { level: warn }',
    `workers: ${o.workers ?? 1}`,
    '',
  ].join('\n');
}

/** A running hostile topology: 1 LB, N backends, attacker + counter in the client namespace. */
export interface Hostile {
  fleet: Fleet;
  dir: string;
  config: string;
  bin: string;
  counter: OctetCounter;
  /** Datagrams arriving on the LB's link for the VIP port and for the return port. */
  arrivals: { vip: OctetCounter; return: OctetCounter };
  lb: ChildProcess;
  lbNs: Ns;
  backends: Map<string, ChildProcess>;
  /** PIDs that must stay up: the LB, its workers, the backends (name -> pid). */
  watched: Map<string, number>;
  /** "worker exited" lines in the LB's log when the watch started. */
  workerExitsSeen: number;
  options: LbOptions;
}

/** Kernel UDP counters of a namespace (/proc/net/snmp "Udp:" lines). */
export async function udpStats(fleet: Fleet, ns: Ns): Promise<Record<string, number>> {
  const r = await fleet.exec(ns, ['cat', '/proc/net/snmp']);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const out: Record<string, number> = {};
  if (lines.length < 2) return out;
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1);
  names.forEach((n, i) => (out[n] = Number(values[i])));
  return out;
}

/**
 * Whether `pid` runs Node, by its executable (not /proc/PID/comm: Node 24 names its main thread
 * `MainThread`, and comm is that name). Throws when the process is gone.
 */
function isNodeProcess(pid: number): boolean {
  return path.basename(readlinkSync(`/proc/${pid}/exe`)) === 'node';
}

/** Resident set size of every node process in the LB namespace (main + workers), MB. */
export function lbRssMb(h: Hostile): number {
  let kb = 0;
  for (const pid of namespacePids(h.lbNs.name)) {
    try {
      if (!isNodeProcess(pid)) continue;
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      /* exited meanwhile */
    }
  }
  return Math.round(kb / 102.4) / 10;
}

/** `quic-lb demo backend` for `be`. --allow-lb names the LB's address: the fixed kit requires it (or HMAC + signForward). */
function backendArgv(dir: string, config: string, be: Ns, lbNs: Ns, o: LbOptions): string[] {
  const listen = o.dualStackBackends ? ['--listen', `[::]:${BACKEND_PORT}`, '--no-preferred'] : [];
  return [
    'demo',
    'backend',
    '--config',
    config,
    '--name',
    `be${be.index}`,
    '--allow-lb',
    lbNs.address as string,
    '--reset-key-file',
    path.join(dir, 'reset.hex'),
    ...listen,
  ];
}

/** Builds the topology and starts everything; tears the fleet down itself when setup fails. */
export async function startHostile(o: LbOptions & { backendCount?: number } = {}): Promise<Hostile> {
  const bin = buildRawUdp();
  const fleet = await createFleet({ prefix: 'qlbh', lbCount: 1, backendCount: o.backendCount ?? 2 });
  try {
    const dir = mkdtempSync(path.join(tmpdir(), `${fleet.id}-`));
    fleet.onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const r = fleet.router.name;
    for (const p of [ATTACKER_PREFIX, VICTIM_PREFIX]) {
      await fleet.execOk(r, ['ip', 'route', 'add', p, 'via', fleet.client.address as string]);
      await fleet.execOk(fleet.client, ['ip', 'route', 'add', 'blackhole', p]);
    }
    await fleet.execOk(fleet.client, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    const counter = await OctetCounter.start(fleet, fleet.client, bin, [ATTACKER_PREFIX, VICTIM_PREFIX]);
    const config = path.join(dir, 'lb.yaml');
    writeFileSync(config, lbConfig(fleet, o));
    const lbNs = fleet.lbs[0];
    const arrivals = {
      vip: await OctetCounter.start(fleet, lbNs, bin, [`${fleet.vip}/32`], VIP_PORT),
      return: await OctetCounter.start(fleet, lbNs, bin, [`${fleet.vip}/32`], RETURN_PORT),
    };
    const lb = await startReady(fleet, lbNs, ['serve', '--config', config]);
    // One stateless-reset key for every backend, as a deployment has it (any backend can reset
    // any connection, RFC 9000 §10.3.2): a datagram misrouted to another backend is answered
    // with a reset the client accepts, so a wrong routing decision shows as a failed download.
    writeFileSync(path.join(dir, 'reset.hex'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const backends = new Map<string, ChildProcess>();
    for (const be of fleet.backends)
      backends.set(`be${be.index}`, await startReady(fleet, be, backendArgv(dir, config, be, lbNs, o)));
    const h: Hostile = {
      fleet,
      dir,
      config,
      bin,
      counter,
      arrivals,
      lb,
      lbNs,
      backends,
      watched: new Map(),
      workerExitsSeen: 0,
      options: o,
    };
    await waitFor(
      'LB workers started',
      async () => (await scrape(fleet, lbNs)).get('quic_lb_workers') === (o.workers ?? 1),
      20_000,
    ).catch(() => undefined);
    watchProcesses(h);
    await waitFor(
      'every backend up at the LB',
      async () => {
        const m = await scrape(fleet, lbNs);
        return fleet.backends.every((b) => m.get(`quic_lb_backend_state{backend="be${b.index}",state="up"}`) === 1);
      },
      20_000,
    );
    return h;
  } catch (e) {
    await fleet.teardown();
    throw e;
  }
}

/** Records the PIDs that must survive: LB main, its workers, every backend. */
export function watchProcesses(h: Hostile): void {
  h.watched.clear();
  h.watched.set('lb', h.lb.pid as number);
  for (const pid of namespacePids(h.lbNs.name)) {
    if (pid === h.lb.pid) continue;
    try {
      if (isNodeProcess(pid)) h.watched.set(`lb-worker-${pid}`, pid);
    } catch {
      /* gone */
    }
  }
  for (const [name, c] of h.backends) h.watched.set(name, c.pid as number);
  h.workerExitsSeen = workerExits(h);
}

const workerExits = (h: Hostile): number => [...(outputOf.get(h.lb)?.() ?? '').matchAll(/worker exited/g)].length;

/** Names of watched processes that died, plus one entry per other "worker exited" the LB logged (a replacement worker that died too). */
export function deadProcesses(h: Hostile): string[] {
  const dead = [...h.watched].filter(([, pid]) => !pidAlive(pid)).map(([n]) => n);
  // a watched worker that died is also one "worker exited" line: count each crash once
  const deadWorkers = dead.filter((n) => n.startsWith('lb-worker-')).length;
  for (let i = h.workerExitsSeen + deadWorkers; i < workerExits(h); i++) dead.push('lb-worker-restarted');
  return dead;
}

/** Last lines of a process's output, for failure messages. */
export function tail(c: ChildProcess | undefined, n = 6): string {
  return (outputOf.get(c as ChildProcess)?.() ?? '').trim().split('\n').slice(-n).join(' | ');
}

/** Sum of every sample of `name` (all label sets). */
export function metricSum(m: Map<string, number>, name: string, labelFilter = ''): number {
  let s = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && k.includes(labelFilter)) s += v;
  return s;
}

/** Differences of every sample between two scrapes (only the non-zero ones). */
export function metricDelta(a: Map<string, number>, b: Map<string, number>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) if (k.startsWith(prefix) && v - (a.get(k) ?? 0) !== 0) out[k] = v - (a.get(k) ?? 0);
  return out;
}

export type Target = 'vip' | 'return' | 'backend';

/** IPv4 + UDP header octets (no IP options). */
const UDP4_HEADERS = 28;
const delta1 = (a: Map<string, number>, b: Map<string, number>, name: string): number =>
  metricSum(b, name) - metricSum(a, name);

export interface BlastSpec {
  name: string;
  target: Target;
  payloads: Buffer[];
  sport: number | 'random';
  /** One spoofed address (`src`), or this many random hosts of ATTACKER_PREFIX. */
  src?: string;
  sources?: number;
  count: number;
  rate: number;
  /** Largest acceptable amplification factor (default 1: never more octets than received, handshakes included). */
  amplificationLimit?: number;
  /** PROXY forgeries: nothing at all may reach VICTIM_PREFIX (the receiver must not obey a forged header). */
  victimsGetNothing?: boolean;
  /** Nothing at all may go back to anyone (e.g. health probes from sources that are not the LB). */
  nothingBack?: boolean;
  /** Time for the answers to arrive after the last datagram (handshake retransmissions). */
  settleMs?: number;
  /** The backend attacked (target 'backend'); default the first. */
  backend?: Ns;
  /** Record the case in the summary (default true; a live case records itself with the blast's figures). */
  record?: boolean;
  /**
   * Nothing else runs during the case (default true): every datagram the LB sends from the VIP
   * goes to the spoofed prefixes, so what it counts as sent can be checked against what left.
   * False when live downloads run alongside.
   */
  exclusive?: boolean;
}

/** Where a target is. */
export function targetAddress(h: Hostile, t: Target, backend?: Ns): string {
  if (t === 'vip') return `${h.fleet.vip}:${VIP_PORT}`;
  if (t === 'return') return `${h.fleet.vip}:${RETURN_PORT}`;
  return `${(backend ?? h.fleet.backends[0]).address}:${BACKEND_PORT}`;
}

export interface BlastOutcome {
  result: CaseResult;
  send: SendResult;
  count: CountReport;
  delta: Record<string, number>;
}

/**
 * Runs one attack and checks it: every process up, octets toward the spoofed/victim prefixes at
 * most `amplificationLimit` times what was sent (nothing at all toward victims for PROXY
 * forgeries), every datagram the LB received accounted for (its counters plus the kernel's
 * receive-buffer drops), the counter itself lost nothing. Records the case; returns its
 * violations (empty = passed) in `result.violations`.
 */
export async function blast(h: Hostile, spec: BlastSpec): Promise<BlastOutcome> {
  const { fleet } = h;
  const file = path.join(h.dir, `payloads-${spec.name.replace(/[^a-z0-9]+/gi, '-')}.bin`);
  writePayloads(file, spec.payloads);
  const m0 = await scrape(fleet, h.lbNs);
  const k0 = await udpStats(fleet, h.lbNs);
  await h.counter.reset();
  const arrivals = spec.target === 'backend' ? undefined : h.arrivals[spec.target === 'vip' ? 'vip' : 'return'];
  if (spec.target !== 'backend') await Promise.all([h.arrivals.vip.reset(), h.arrivals.return.reset()]);
  const send = await rawSend(fleet, fleet.client, h.bin, {
    file,
    dst: targetAddress(h, spec.target, spec.backend),
    sport: spec.sport,
    count: spec.count,
    rate: spec.rate,
    ...(spec.src ? { src: spec.src } : { srcPrefix: ATTACKER_PREFIX, sources: spec.sources ?? 1 }),
  });
  await sleep(spec.settleMs ?? 1500);
  const count = await h.counter.report();
  const arrivedReturn = spec.target === 'backend' ? 0 : (await h.arrivals.return.report()).packets;
  const arrived = spec.target === 'return' ? arrivedReturn : ((await arrivals?.report())?.packets ?? 0);
  const m1 = await scrape(fleet, h.lbNs);
  const k1 = await udpStats(fleet, h.lbNs);
  const delta = metricDelta(m0, m1, 'quic_lb_');
  const violations: string[] = [];
  const dead = deadProcesses(h);
  if (dead.length > 0) violations.push(`processes down: ${dead.join(', ')} (LB: ${tail(h.lb)})`);
  if (send.sent !== spec.count) violations.push(`attacker sent ${send.sent} of ${spec.count} (${send.errors} errors)`);
  const factor = send.ip_octets > 0 ? count.ip_octets / send.ip_octets : 0;
  const limit = spec.amplificationLimit ?? 1;
  if (factor > limit)
    violations.push(
      `amplification ${factor.toFixed(3)} > ${limit}: ${count.ip_octets} octets toward unvalidated addresses for ${send.ip_octets} received (by sender ${JSON.stringify(count.by_sender)})`,
    );
  if (spec.victimsGetNothing && count.by_prefix[1] > 0)
    violations.push(
      `${count.by_prefix[1]} octets reached forged victims (by sender ${JSON.stringify(count.by_sender)})`,
    );
  if (spec.nothingBack && count.ip_octets > 0)
    violations.push(
      `${count.ip_octets} octets answered to sources that must get nothing (by sender ${JSON.stringify(count.by_sender)})`,
    );
  if (count.socket_drops > 0)
    violations.push(`the octet counter lost ${count.socket_drops} packets: accounting not trustworthy`);
  if (spec.target !== 'backend' && dead.length === 0) {
    // Every datagram that reached the LB's link is counted: by a decision reason (VIP), as
    // accepted or refused (return port), or by the kernel as a receive-buffer drop. (Datagrams
    // lost on the way, e.g. a full veth backlog, never reached the LB: not its drops.)
    const counted =
      spec.target === 'vip'
        ? metricSum(m1, 'quic_lb_received_packets_total') - metricSum(m0, 'quic_lb_received_packets_total')
        : metricSum(m1, CONTRACT.returnRejected) -
          metricSum(m0, CONTRACT.returnRejected) +
          metricSum(m1, 'quic_lb_return_packets_total') -
          metricSum(m0, 'quic_lb_return_packets_total') +
          // a header naming a destination the LB cannot send to (port 0, ...) is a send error
          delta1(m0, m1, CONTRACT.sendErrors);
    // (InErrors includes RcvbufErrors and checksum errors)
    const kernelDrops = (k1.InErrors ?? 0) - (k0.InErrors ?? 0);
    if (counted + kernelDrops < arrived)
      violations.push(
        `only ${counted} of ${arrived} datagrams that reached the LB counted (+${kernelDrops} kernel drops; ${send.sent} sent)`,
      );
    // Everything that reached the return port (the backends' answers, the attacker's headers) is
    // counted as returned, refused, or a send error.
    const returnCounted =
      delta1(m0, m1, 'quic_lb_return_packets_total') +
      delta1(m0, m1, CONTRACT.returnRejected) +
      delta1(m0, m1, CONTRACT.sendErrors);
    if (spec.target === 'vip' && returnCounted + kernelDrops < arrivedReturn)
      violations.push(
        `only ${returnCounted} of ${arrivedReturn} datagrams that reached the return port counted (+${kernelDrops} kernel drops)`,
      );
    if (spec.exclusive !== false) {
      // Nothing counted as sent that never left: the LB's return octets (QUIC payloads) all reached the spoofed prefixes.
      const vip = fleet.vip;
      const left = (count.by_sender[vip] ?? 0) - UDP4_HEADERS * (count.by_sender_packets[vip] ?? 0);
      const claimed = delta1(m0, m1, 'quic_lb_return_bytes_total');
      // (slack: 1 % plus one datagram for what a veth backlog may drop on the way under a flood)
      if (claimed > left * 1.01 + 1500)
        violations.push(`the LB counts ${claimed} octets returned from the VIP, only ${left} left toward the clients`);
    }
  }
  const result: CaseResult = {
    case: spec.name,
    datagrams: send.sent,
    octetsFromAttacker: send.ip_octets,
    octetsTowardUnvalidated: count.ip_octets,
    octetsTowardVictims: count.by_prefix[1] ?? 0,
    amplification: Math.round(factor * 1000) / 1000,
    amplificationLimit: limit,
    crashes: dead.length,
    rssMb: lbRssMb(h),
    counters: delta,
    violations,
  };
  if (spec.record !== false) recordCase(result);
  return { result, send, count, delta };
}

/** Records a case that could not even start (setup failed): it counts as tried and failed. */
export function recordSetupFailure(name: string, e: unknown): void {
  recordCase({
    case: name,
    datagrams: 0,
    octetsFromAttacker: 0,
    octetsTowardUnvalidated: 0,
    octetsTowardVictims: 0,
    amplification: 0,
    amplificationLimit: 1,
    crashes: 0,
    violations: [`setup failed: ${String(e).slice(0, 400)}`],
  });
}

/** `n` VIP-path downloads of `size` octets (gtlsclient --no-preferred-addr); resolves to how many arrived intact. */
export async function downloads(
  h: Hostile,
  n: number,
  size: number,
): Promise<{ ok: number; total: number; failures: string[] }> {
  const runs = await Promise.all(
    Array.from({ length: n }, () => client(h.fleet, h.dir, `/bytes/${size}`, ['--no-preferred-addr'])),
  );
  const failures = runs
    .filter((r) => !isDemoBody(r.file, size))
    .map((r) => `got ${r.file?.length ?? 'nothing'}: ${r.out.trim().split('\n').slice(-3).join(' | ')}`);
  return { ok: n - failures.length, total: n, failures };
}

/** Sends `sig` to a process of this harness by PID. */
export function signal(c: ChildProcess, sig: NodeJS.Signals): void {
  process.kill(c.pid as number, sig);
}

export { CLI, REPO, scrape };

/** Restarts the LB and any backend that died (a crash is recorded by the case that caused it), so later cases still test something. */
export async function revive(h: Hostile): Promise<void> {
  const { fleet } = h;
  if (!pidAlive(h.lb.pid as number)) h.lb = await startReady(fleet, h.lbNs, ['serve', '--config', h.config]);
  for (const be of fleet.backends) {
    const name = `be${be.index}`;
    if (!pidAlive(h.backends.get(name)?.pid as number)) {
      h.backends.set(name, await startReady(fleet, be, backendArgv(h.dir, h.config, be, h.lbNs, h.options)));
    }
  }
  // a revived LB logs afresh; forget "worker exited" lines of the old one by watching anew
  watchProcesses(h);
  await waitFor(
    'every backend up at the LB after revive',
    async () => {
      const m = await scrape(fleet, h.lbNs);
      return fleet.backends.every((b) => m.get(`quic_lb_backend_state{backend="be${b.index}",state="up"}`) === 1);
    },
    15_000,
  ).catch(() => undefined);
}

/**
 * Stops every backend (SIGTERM, by PID) and starts it again, then waits until the LB sees them
 * up. For cases that start handshakes on purpose (a replayed genuine header): those connections
 * keep retransmitting for seconds, within their 1x budget, and would be counted against the next
 * case's accounting window.
 */
export async function restartBackends(h: Hostile): Promise<void> {
  for (const [, c] of h.backends) {
    if (!pidAlive(c.pid as number)) continue;
    const exited = new Promise((r) => c.once('exit', r));
    process.kill(c.pid as number, 'SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (pidAlive(c.pid as number)) process.kill(c.pid as number, 'SIGKILL');
  }
  await revive(h);
}

/** Root with network namespaces: every hostile suite needs it, and fails (never skips) without it. */
export const ROOT = canUseNetns();

/**
 * Registers a suite's fleet: `start()` runs once before its tests (root checked first), the fleet
 * is torn down after them, and with `reviveEach` a crashed LB or backend is restarted before every
 * test (a crash stays recorded against the case that caused it). `ready(name)` returns the fleet,
 * or records the case as failed and throws the setup error.
 */
export function useHostile(
  start: () => Promise<Hostile>,
  o: { reviveEach?: boolean } = {},
): { ready: (name: string) => Hostile } {
  let h: Hostile | undefined;
  let setupError: unknown;
  beforeAll(async () => {
    try {
      if (!ROOT) throw new Error('test:hostile needs root (network namespaces, raw sockets); CI runs it as root');
      h = await start();
    } catch (e) {
      setupError = e;
    }
  }, 90_000);
  afterAll(async () => {
    await h?.fleet.teardown();
  });
  if (o.reviveEach) {
    beforeEach(async () => {
      if (h) await revive(h);
    }, 60_000);
  }
  return {
    ready(name: string): Hostile {
      if (!h) {
        recordSetupFailure(name, setupError);
        throw setupError;
      }
      return h;
    },
  };
}
