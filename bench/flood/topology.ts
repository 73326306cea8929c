// The flood benchmark's topology (issue 14), in network namespaces (root only), built on
// test/netns/netns.ts (which tracks every process it starts and deletes its namespaces on
// teardown, process exit, SIGINT and SIGTERM):
//
//   client ns: the attacker (raw-udp send, spoofed sources in ATTACKER_PREFIX), the legitimate
//              gtlsclient runs (its own address), the octet counter (raw-udp count: every packet
//              toward ATTACKER_PREFIX, which the router sends here and a blackhole route drops)
//   lb ns:     `quic-lb serve` (one worker unless told), the VIP
//   be1, be2:  `quic-lb demo backend`, with the same retry key file as the LB when they take one
//
// The LB and the backends are restarted for every step (a fresh process per mode and rate): a
// flood without the offload leaves thousands of half-open handshakes in the backends, which would
// otherwise spill into the next step's figures.
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createFleet, namespacePids, pidAlive, type Fleet, type Ns } from '../../test/netns/netns.js';
import { OctetCounter, buildRawUdp } from '../../test/hostile/native.js';
import { parseMetrics } from '../../test/helpers/metrics.js';
import { readyLine } from '../../test/helpers/process.js';
import { formatRetryTokenKey, generateRetryTokenKey } from '../../src/wire/retry-token.js';
import { repoRoot } from '../harness/build.js';
import { sleep } from '../lib/proc.js';

export const VIP_PORT = 4433;
export const BACKEND_PORT = 4434;
export const RETURN_PORT = 4435;
/** Spoofed attacker sources (RFC 2544 benchmark range, unused by the fleet): 32 766 hosts. */
export const ATTACKER_PREFIX = '198.19.128.0/17';
const CLI = path.join(repoRoot, 'dist', 'cli.js');
const METRICS = 'http://127.0.0.1:9433/metrics';

/** The offload modes compared (the LB's `retry.mode`, issue 14 contract). */
export type Mode = 'off' | 'load' | 'always';
export const MODES: readonly Mode[] = ['off', 'load', 'always'];

/** Load-triggered thresholds (`retry.load`), per LB worker process. */
export interface LoadThresholds {
  onPerSecond: number;
  offPerSecond: number;
  offAfterMs: number;
  transitionMs: number;
}

/** The LB config: one VIP, both backends, via-lb return path, and the `retry` section unless mode off. */
export function floodConfig(
  fleet: Fleet,
  o: { mode: Mode; keyFile: string; quicLbKey: string; fallbackKey: string; load: LoadThresholds; workers: number },
): string {
  const retry =
    o.mode === 'off'
      ? []
      : [
          'retry:',
          `  mode: ${o.mode}`,
          `  keyFiles: ['${o.keyFile}']`,
          '  tokenLifetimeSeconds: 10',
          `  load: { onPerSecond: ${o.load.onPerSecond}, offPerSecond: ${o.load.offPerSecond}, ` +
            `offAfterMs: ${o.load.offAfterMs}, transitionMs: ${o.load.transitionMs} }`,
        ];
  return [
    'listen:',
    `  - '${fleet.vip}:${VIP_PORT}'`,
    'quicLb:',
    `  - { configId: 0, serverIdLength: 2, nonceLength: 6, key: '${o.quicLbKey}' }`,
    'backends:',
    ...fleet.backends.map(
      (b) =>
        `  - { name: be${b.index}, address: '${b.address}:${BACKEND_PORT}', weight: 1, serverIds: { '0': '000${b.index}' } }`,
    ),
    // the hostile harness's health settings: a busy backend gets 1 s, down after 3 misses
    'health: { intervalMs: 500, timeoutMs: 1000, fall: 3, rise: 2 }',
    `fallback: { key: '${o.fallbackKey}' }`,
    `returnPath: { mode: via-lb, listen: '${fleet.vip}:${RETURN_PORT}' }`,
    "metrics: { listen: '127.0.0.1:9433' }",
    'log: { level: warn }',
    `workers: ${o.workers}`,
    ...retry,
    '',
  ].join('\n');
}

/** Whether the built demo backend takes `--retry-key-file` (the backend half of issue 14). */
export function backendTakesRetryKey(): boolean {
  try {
    return execFileSync(process.execPath, [CLI, 'demo', 'backend', '--help'], { encoding: 'utf8' }).includes(
      '--retry-key-file',
    );
  } catch {
    return false;
  }
}

/** The running pieces of one step. */
export interface Stack {
  lb: ChildProcess;
  backends: ChildProcess[];
}

/** The built topology: namespaces, routes, the octet counter, the key file; stacks come and go per step. */
export class FloodTopology {
  readonly dir: string;
  readonly keyFile: string;
  private readonly quicLbKey = randomBytes(16).toString('hex');
  private readonly fallbackKey = randomBytes(16).toString('hex');
  private readonly output = new WeakMap<ChildProcess, () => string>();

  private constructor(
    readonly fleet: Fleet,
    readonly bin: string,
    readonly counter: OctetCounter,
    readonly backendKey: boolean,
  ) {
    this.dir = mkdtempSync(path.join(tmpdir(), `${fleet.id}-`));
    fleet.onTeardown(() => rmSync(this.dir, { recursive: true, force: true }));
    this.keyFile = path.join(this.dir, 'retry.key');
    writeFileSync(this.keyFile, formatRetryTokenKey(generateRetryTokenKey(0)), { mode: 0o600 });
    writeFileSync(path.join(this.dir, 'reset.hex'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  }

  /** Builds the namespaces; tears them down itself when setup fails. */
  static async create(): Promise<FloodTopology> {
    const bin = buildRawUdp();
    const fleet = await createFleet({ prefix: 'qlbf', lbCount: 1, backendCount: 2 });
    try {
      await fleet.execOk(fleet.router, ['ip', 'route', 'add', ATTACKER_PREFIX, 'via', fleet.client.address as string]);
      await fleet.execOk(fleet.client, ['ip', 'route', 'add', 'blackhole', ATTACKER_PREFIX]);
      // forwarding on: the blackhole then drops silently (no ICMP back toward the LB)
      await fleet.execOk(fleet.client, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      const counter = await OctetCounter.start(fleet, fleet.client, bin, [ATTACKER_PREFIX]);
      return new FloodTopology(fleet, bin, counter, backendTakesRetryKey());
    } catch (e) {
      await fleet.teardown();
      throw e;
    }
  }

  get lbNs(): Ns {
    return this.fleet.lbs[0];
  }

  /** Starts the LB in `mode` and both backends, and waits until the LB sees both up. */
  async startStack(mode: Mode, load: LoadThresholds, workers: number): Promise<Stack> {
    // The backends read the same file minus the `retry` section (they take the key by
    // --retry-key-file, and a build without the offload refuses the section).
    const write = (m: Mode): string => {
      const file = path.join(this.dir, `lb-${m}.yaml`);
      const o = {
        mode: m,
        keyFile: this.keyFile,
        quicLbKey: this.quicLbKey,
        fallbackKey: this.fallbackKey,
        load,
        workers,
      };
      writeFileSync(file, floodConfig(this.fleet, o));
      return file;
    };
    const config = write(mode);
    const backendConfig = write('off');
    const started: ChildProcess[] = [];
    try {
      const [lb, ...backends] = await Promise.all([
        this.startReady(this.lbNs, ['serve', '--config', config], started),
        ...this.fleet.backends.map((be) => this.startReady(be, this.backendArgv(backendConfig, be), started)),
      ]);
      const stack = { lb, backends };
      await this.waitBackendsUp(stack);
      return stack;
    } catch (e) {
      await this.stopAll(started);
      throw e;
    }
  }

  private backendArgv(config: string, be: Ns): string[] {
    return [
      'demo',
      'backend',
      '--config',
      config,
      '--name',
      `be${be.index}`,
      '--allow-lb',
      this.lbNs.address as string,
      '--reset-key-file',
      path.join(this.dir, 'reset.hex'),
      ...(this.backendKey ? ['--retry-key-file', this.keyFile] : []),
    ];
  }

  /** `node dist/cli.js ...argv` in `ns`, resolved once it prints its ready line (20 s at most). */
  private async startReady(ns: Ns, argv: string[], started: ChildProcess[]): Promise<ChildProcess> {
    const c = this.fleet.spawn(ns, [process.execPath, CLI, ...argv], { cwd: repoRoot });
    started.push(c);
    let out = '';
    this.output.set(c, () => out);
    c.stdout?.setEncoding('utf8');
    c.stderr?.setEncoding('utf8');
    c.stdout?.on('data', (d: string) => (out += d));
    c.stderr?.on('data', (d: string) => (out += d));
    const deadline = Date.now() + 20_000;
    while (readyLine(out) === undefined) {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(
          `${argv.slice(0, 2).join(' ')} in ${ns.name} exited (${c.exitCode ?? c.signalCode}): ${out.trim()}`,
        );
      if (Date.now() > deadline)
        throw new Error(`${argv.slice(0, 2).join(' ')} in ${ns.name} not ready: ${out.trim()}`);
      await sleep(25);
    }
    return c;
  }

  private async waitBackendsUp(stack: Stack): Promise<void> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const m = await this.scrape();
      const up = this.fleet.backends.every(
        (b) => m.get(`quic_lb_backend_state{backend="be${b.index}",state="up"}`) === 1,
      );
      if (up) return;
      if (stack.lb.exitCode !== null) throw new Error(`the LB exited: ${this.tail(stack.lb)}`);
      if (Date.now() > deadline) throw new Error('the LB did not see both backends up within 20 s');
      await sleep(100);
    }
  }

  /** The LB's /metrics (empty when it does not answer within 2 s). */
  async scrape(): Promise<Map<string, number>> {
    const r = await this.fleet.exec(this.lbNs, ['curl', '-s', '--max-time', '2', METRICS], 5000);
    return parseMetrics(r.code === 0 ? r.stdout : '');
  }

  /** Kernel UDP counters of a namespace (/proc/net/snmp "Udp:"): receive-buffer drops show what a process could not read. */
  async udpStats(ns: Ns): Promise<Record<string, number>> {
    const r = await this.fleet.exec(ns, ['cat', '/proc/net/snmp']);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
    const out: Record<string, number> = {};
    if (lines.length < 2) return out;
    const names = lines[0].split(/\s+/).slice(1);
    const values = lines[1].split(/\s+/).slice(1);
    names.forEach((n, i) => (out[n] = Number(values[i])));
    return out;
  }

  /** Last lines a started process printed, for error messages. */
  tail(c: ChildProcess, n = 5): string {
    return (this.output.get(c)?.() ?? '').trim().split('\n').slice(-n).join(' | ');
  }

  /** Stops the step's processes by PID (SIGTERM, SIGKILL after 0.5 s) and anything else left in the LB and backend namespaces. */
  async stopStack(stack: Stack): Promise<void> {
    await this.stopAll([stack.lb, ...stack.backends]);
  }

  private async stopAll(children: ChildProcess[]): Promise<void> {
    const pids = children.map((c) => c.pid).filter((p): p is number => p !== undefined);
    for (const pid of pids) signal(pid, 'SIGTERM');
    const deadline = Date.now() + 500; // a benchmark's processes need no graceful drain
    while (Date.now() < deadline && pids.some(pidAlive)) await sleep(25);
    for (const pid of pids) if (pidAlive(pid)) signal(pid, 'SIGKILL');
    // LB cluster workers or anything else still inside the step's namespaces (this run's own, by PID)
    for (const ns of [this.lbNs, ...this.fleet.backends])
      for (const pid of namespacePids(ns.name)) signal(pid, 'SIGKILL');
    while (pids.some(pidAlive) && Date.now() < deadline + 2000) await sleep(25);
  }

  async teardown(): Promise<void> {
    await this.fleet.teardown();
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}
