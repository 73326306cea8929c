// Several forwarding processes on one VIP port. node:cluster shares one socket handle between
// workers, and the kernel hands each datagram to whichever worker is waiting (docs/design.md §2). The primary keeps the control plane (config, health checks,
// metrics); workers only forward. Everything a worker needs arrives over IPC, so all workers
// route with the same config and the same health view. A config change is two-phase: every
// worker prepares it (binds its upstream sockets) and reports; only when all succeeded does the
// primary tell them to commit (one swap each); otherwise all discard it.
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { LbConfig } from './config.js';
import { type CounterSnapshot, Counters, addSnapshot, emptySnapshot } from './counters.js';
import { Forwarder, type PreparedConfig } from './forwarder.js';
import type { ParsedEndpoint } from '../wire/index.js';
import { createLogger } from './logger.js';
import type { DataPlane } from './plane.js';
import type { HealthView } from './router.js';

/** A health view as it crosses IPC: its entries, whatever the view's value type is. */
type HealthEntries = HealthView extends ReadonlyMap<string, infer V> ? [string, V][] : never;

/** IPC messages primary -> worker. `txn` names one two-phase config change. */
type ToWorker =
  | { t: 'lb:init'; config: LbConfig; health: HealthEntries }
  | { t: 'lb:prepare'; id: number; txn: number; config: LbConfig }
  | { t: 'lb:commit'; id: number; txn: number; health: HealthEntries }
  | { t: 'lb:discard'; txn: number }
  | { t: 'lb:health'; health: HealthEntries }
  | { t: 'lb:snapshot'; id: number };
/** IPC messages worker -> primary. */
type FromWorker =
  | { t: 'lb:hello' }
  | { t: 'lb:ready'; vips: ParsedEndpoint[]; ret: ParsedEndpoint | undefined }
  | { t: 'lb:failed'; error: string }
  | { t: 'lb:prepared'; id: number; error?: string }
  | { t: 'lb:committed'; id: number; error?: string }
  | { t: 'lb:snapshot'; id: number; snap: CounterSnapshot };

const IPC_TIMEOUT_MS = 5000;
/** A worker drops a prepared config no commit or discard came for in this time. */
const PREPARED_TTL_MS = 4 * IPC_TIMEOUT_MS;
/** Worker restart delay: RESTART_BASE_MS doubled per crash in a row, at most RESTART_MAX_MS. */
const RESTART_BASE_MS = 1000;
const RESTART_MAX_MS = 60_000;
/** A worker that ran this long before exiting resets the doubling. */
const RESTART_STABLE_MS = 60_000;

interface WorkerEntry {
  worker: Worker;
  last: CounterSnapshot;
  ready: boolean;
  /** When it reported ready (ms since the epoch), 0 before. */
  readyAt: number;
  /** The config it was started with. */
  initConfig: LbConfig | undefined;
}

function entriesOf(health: HealthView): HealthEntries {
  return [...health] as HealthEntries;
}

/** Sends over IPC if the worker is connected; returns false otherwise. Never throws. */
function sendTo(worker: Worker, msg: ToWorker): boolean {
  if (!worker.isConnected()) return false;
  try {
    // With a callback, a failed send is reported there instead of as an 'error' event.
    worker.send(msg, undefined, undefined, () => undefined);
    return true;
  } catch {
    return false;
  }
}

/** The cluster primary's view of its workers. */
export class ClusterPlane implements DataPlane {
  private readonly workers = new Map<number, WorkerEntry>();
  /** Counters of workers that exited (so totals never go backwards). */
  private retired = emptySnapshot();
  private seq = 0;
  private readonly waiters = new Map<number, { worker: number; done: (msg: FromWorker | undefined) => void }>();
  private config: LbConfig;
  private health: HealthView;
  private vips: ParsedEndpoint[] = [];
  private ret: ParsedEndpoint | undefined;
  private closing = false;
  /** Two-phase config changes started (names each one). */
  private txn = 0;
  /** Tail of the queue of config changes: one at a time. */
  private applyTail: Promise<unknown> = Promise.resolve();
  /** Workers started again after an exit, and crashes in a row (the backoff exponent). */
  private restartCount = 0;
  private crashesInARow = 0;

  private constructor(
    config: LbConfig,
    health: HealthView,
    private readonly logger: Logger,
  ) {
    this.config = config;
    this.health = health;
  }

  /** Forks `count` workers and waits until every one is forwarding. */
  static async start(config: LbConfig, health: HealthView, count: number, logger: Logger): Promise<ClusterPlane> {
    cluster.setupPrimary({
      exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)),
      args: [],
      silent: false,
    });
    const plane = new ClusterPlane(config, health, logger);
    try {
      await Promise.all(Array.from({ length: count }, () => plane.fork()));
    } catch (err) {
      await plane.close();
      throw err;
    }
    return plane;
  }

  private fork(): Promise<void> {
    const worker = cluster.fork({ QUIC_LB_WORKER: '1' });
    const entry: WorkerEntry = { worker, last: emptySnapshot(), ready: false, readyAt: 0, initConfig: undefined };
    this.workers.set(worker.id, entry);
    // IPC errors of a dying worker must not become unhandled 'error' events in the primary.
    worker.on('error', (err) => this.logger.warn({ worker: worker.id, err: err.message }, 'worker IPC error'));
    return new Promise((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.t === 'lb:hello') {
          // The worker listens now (messages sent before its listener exists are lost).
          entry.initConfig = this.config;
          sendTo(worker, { t: 'lb:init', config: this.config, health: entriesOf(this.health) });
        } else if (msg.t === 'lb:ready') {
          entry.ready = true;
          entry.readyAt = Date.now();
          // Started during a config change it was not part of: bring it (and, harmlessly, the
          // others) to the config committed since.
          if (entry.initConfig !== this.config && !this.closing) {
            this.apply(this.config, this.health).catch((err: unknown) =>
              this.logger.error({ err: (err as Error).message }, 'could not bring a new worker to the running config'),
            );
          }
          this.vips = msg.vips;
          this.ret = msg.ret;
          resolve();
        } else if (msg.t === 'lb:failed') {
          reject(new Error(`worker failed to start: ${msg.error}`));
        } else if ('id' in msg) {
          this.waiters.get(msg.id)?.done(msg);
        }
      });
      worker.on('exit', (code, signal) => {
        this.workers.delete(worker.id);
        // Nobody waits for an answer from a dead worker.
        for (const w of [...this.waiters.values()]) if (w.worker === worker.id) w.done(undefined);
        addSnapshot(this.retired, entry.last);
        if (!entry.ready) reject(new Error(`worker exited during start (code ${code}, signal ${signal})`));
        if (!this.closing && entry.ready) this.restartLater(worker.id, Date.now() - entry.readyAt, code, signal);
      });
    });
  }

  /**
   * Starts a worker in place of one that exited, after RESTART_BASE_MS doubled per crash in a
   * row (capped at RESTART_MAX_MS): a datagram that kills workers cannot make them spin.
   */
  private restartLater(id: number, ranMs: number, code: number | null, signal: string | null): void {
    if (ranMs >= RESTART_STABLE_MS) this.crashesInARow = 0;
    const delayMs = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** this.crashesInARow);
    this.crashesInARow++;
    this.logger.error(
      { worker: id, code, signal, delayMs, crashesInARow: this.crashesInARow },
      'worker exited; starting a new one',
    );
    setTimeout(() => {
      if (this.closing) return;
      this.restartCount++;
      this.fork().catch((err: unknown) => {
        this.logger.error({ err: (err as Error).message }, 'worker restart failed');
        this.restartLater(id, 0, null, null);
      });
    }, delayMs).unref();
  }

  private request(entry: WorkerEntry, build: (id: number) => ToWorker): Promise<FromWorker | undefined> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve(undefined);
      }, IPC_TIMEOUT_MS);
      this.waiters.set(id, {
        worker: entry.worker.id,
        done: (msg) => {
          clearTimeout(timer);
          this.waiters.delete(id);
          resolve(msg);
        },
      });
      if (!sendTo(entry.worker, build(id))) {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve(undefined);
      }
    });
  }

  /** See DataPlane.apply: two-phase over every ready worker, one change at a time. */
  apply(config: LbConfig, health: HealthView): Promise<void> {
    const run = this.applyTail.then(() => this.twoPhase(config, health));
    this.applyTail = run.catch(() => undefined);
    return run;
  }

  private async twoPhase(config: LbConfig, health: HealthView): Promise<void> {
    const txn = ++this.txn;
    const entries = [...this.workers.values()].filter((e) => e.ready);
    const prepared = await Promise.all(
      entries.map((e) => this.request(e, (id) => ({ t: 'lb:prepare', id, txn, config }))),
    );
    const failures = prepared
      .map((r, i) =>
        r?.t === 'lb:prepared' && r.error === undefined
          ? undefined
          : `worker ${entries[i].worker.id}: ${r?.t === 'lb:prepared' ? r.error : 'no answer'}`,
      )
      .filter((x) => x !== undefined);
    if (failures.length > 0) {
      // Every worker drops it, also one whose answer is late (it gets the discard after its prepare).
      for (const e of this.workers.values()) sendTo(e.worker, { t: 'lb:discard', txn });
      throw new Error(
        `config not applied by any worker: ${failures.length} of ${entries.length} could not prepare it (${failures.join('; ')})`,
      );
    }
    // From here on the new config is the one a restarted worker gets at init.
    this.config = config;
    this.health = health;
    const acks = await Promise.all(
      entries.map((e) => this.request(e, (id) => ({ t: 'lb:commit', id, txn, health: entriesOf(health) }))),
    );
    acks.forEach((a, i) => {
      // A commit cannot fail in a live worker; no answer means it is exiting (its replacement starts with this config).
      if (a?.t !== 'lb:committed')
        this.logger.warn({ worker: entries[i].worker.id }, 'worker did not confirm the config switch');
    });
  }

  setHealth(health: HealthView): void {
    this.health = health;
    // An exiting worker misses it; its replacement gets the view at init.
    for (const e of this.workers.values()) sendTo(e.worker, { t: 'lb:health', health: entriesOf(health) });
  }

  restarts(): number {
    return this.restartCount;
  }

  async counters(): Promise<CounterSnapshot> {
    // Only ready workers: one still starting may not listen to IPC yet (the request would be
    // lost and the scrape wait IPC_TIMEOUT_MS); it has counted nothing.
    const entries = [...this.workers.values()].filter((e) => e.ready);
    const replies = await Promise.all(entries.map((e) => this.request(e, (id) => ({ t: 'lb:snapshot', id }))));
    const total = addSnapshot(emptySnapshot(), this.retired);
    entries.forEach((e, i) => {
      const r = replies[i];
      if (r?.t === 'lb:snapshot') e.last = r.snap;
      addSnapshot(total, e.last);
    });
    return total;
  }

  workerPackets(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [id, e] of this.workers)
      m.set(
        String(id),
        e.last.reasonPackets.reduce((a, b) => a + b, 0),
      );
    return m;
  }

  running(): number {
    let n = 0;
    for (const e of this.workers.values()) if (e.ready && e.worker.isConnected()) n++;
    return n;
  }

  vipAddresses(): ParsedEndpoint[] {
    return this.vips;
  }

  returnAddress(): ParsedEndpoint | undefined {
    return this.ret;
  }

  async close(): Promise<void> {
    this.closing = true;
    const exits = [...this.workers.values()].map(
      (e) =>
        new Promise<void>((resolve) => {
          if (e.worker.isDead()) return resolve();
          const timer = setTimeout(() => {
            e.worker.process.kill('SIGKILL');
            resolve();
          }, 3000);
          e.worker.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          e.worker.disconnect();
        }),
    );
    await Promise.all(exits);
  }
}

/**
 * The worker side: waits for `lb:init`, forwards, answers config/health/snapshot messages.
 * Exits when the primary disconnects. SIGTERM/SIGINT are ignored: the primary decides when
 * draining ends (a process-group SIGTERM must not stop forwarding before the drain time).
 */
export function runWorker(): void {
  const counters = new Counters();
  let forwarder: Forwarder | undefined;
  // Two-phase changes in flight, by txn: the prepare (settles to undefined when it failed).
  const pending = new Map<number, Promise<PreparedConfig | undefined>>();
  const settle = (txn: number, commit: boolean, health?: HealthEntries): Promise<boolean> => {
    const p = pending.get(txn);
    pending.delete(txn);
    if (!p) return Promise.resolve(false);
    return p.then((prepared) => {
      if (!prepared || !forwarder) return false;
      if (commit) forwarder.commit(prepared, health ? new Map(health) : undefined);
      else forwarder.discard(prepared);
      return commit;
    });
  };
  let logger = createLogger('info');
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('disconnect', () => {
    forwarder?.close();
    process.exit(0);
  });
  const send = (m: FromWorker): void => {
    if (process.connected) process.send?.(m);
  };
  process.on('message', (msg: ToWorker) => {
    switch (msg.t) {
      case 'lb:init':
        logger = createLogger(msg.config.log.level).child({ worker: cluster.worker?.id });
        Forwarder.start({ config: msg.config, counters, logger, health: new Map(msg.health) }).then(
          (f) => {
            forwarder = f;
            send({ t: 'lb:ready', vips: f.vipAddresses(), ret: f.returnAddress() });
          },
          (err: unknown) => {
            send({ t: 'lb:failed', error: (err as Error).message });
            process.exit(1);
          },
        );
        break;
      case 'lb:prepare': {
        if (!forwarder) return send({ t: 'lb:prepared', id: msg.id, error: 'not started' });
        const { id, txn } = msg;
        const p = forwarder.prepare(msg.config).then(
          (prepared) => {
            send({ t: 'lb:prepared', id });
            // The primary decides within its IPC timeouts; without a decision, drop it.
            setTimeout(() => void settle(txn, false), PREPARED_TTL_MS).unref();
            return prepared;
          },
          (err: unknown) => {
            send({ t: 'lb:prepared', id, error: (err as Error).message });
            return undefined;
          },
        );
        pending.set(txn, p);
        break;
      }
      case 'lb:commit':
        void settle(msg.txn, true, msg.health).then((ok) => {
          if (ok && forwarder) logger.level = forwarder.runningConfig().log.level;
          send({ t: 'lb:committed', id: msg.id, error: ok ? undefined : 'nothing prepared' });
        });
        break;
      case 'lb:discard':
        void settle(msg.txn, false);
        break;
      case 'lb:health':
        forwarder?.setHealth(new Map(msg.health));
        break;
      case 'lb:snapshot':
        send({ t: 'lb:snapshot', id: msg.id, snap: counters.snapshot() });
        break;
    }
  });
  send({ t: 'lb:hello' });
}
