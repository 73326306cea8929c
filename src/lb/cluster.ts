// Several forwarding processes on one VIP port. Node 20's dgram has no reusePort; node:cluster
// shares one socket handle between workers, and the kernel hands each datagram to whichever
// worker is waiting (PERF.md). The primary keeps the control plane (config, health checks,
// metrics); workers only forward. Everything a worker needs arrives over IPC, so all workers
// route with the same config and the same health view.
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { LbConfig } from './config.js';
import { type CounterSnapshot, Counters, addSnapshot, emptySnapshot } from './counters.js';
import { Forwarder } from './forwarder.js';
import type { Endpoint } from './ip.js';
import { createLogger } from './logger.js';
import type { DataPlane } from './plane.js';
import type { BackendState, HealthView } from './router.js';

/** IPC messages primary -> worker. */
type ToWorker =
  | { t: 'lb:init'; config: LbConfig; health: [string, BackendState][] }
  | { t: 'lb:config'; id: number; config: LbConfig; health: [string, BackendState][] }
  | { t: 'lb:health'; health: [string, BackendState][] }
  | { t: 'lb:snapshot'; id: number };
/** IPC messages worker -> primary. */
type FromWorker =
  | { t: 'lb:hello' }
  | { t: 'lb:ready'; vips: Endpoint[]; ret: Endpoint | undefined }
  | { t: 'lb:failed'; error: string }
  | { t: 'lb:applied'; id: number; error?: string }
  | { t: 'lb:snapshot'; id: number; snap: CounterSnapshot };

const IPC_TIMEOUT_MS = 5000;

interface WorkerEntry {
  worker: Worker;
  last: CounterSnapshot;
  ready: boolean;
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
  private vips: Endpoint[] = [];
  private ret: Endpoint | undefined;
  private closing = false;

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
    cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)), args: [], silent: false });
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
    const entry: WorkerEntry = { worker, last: emptySnapshot(), ready: false };
    this.workers.set(worker.id, entry);
    // IPC errors of a dying worker must not become unhandled 'error' events in the primary.
    worker.on('error', (err) => this.logger.warn({ worker: worker.id, err: err.message }, 'worker IPC error'));
    return new Promise((resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.t === 'lb:hello') {
          // The worker listens now (messages sent before its listener exists are lost).
          sendTo(worker, { t: 'lb:init', config: this.config, health: [...this.health] });
        } else if (msg.t === 'lb:ready') {
          entry.ready = true;
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
        if (!this.closing && entry.ready) {
          this.logger.error({ worker: worker.id, code, signal }, 'worker exited; starting a new one in 1 s');
          setTimeout(() => {
            if (!this.closing) this.fork().catch((err: unknown) => this.logger.error({ err }, 'worker restart failed'));
          }, 1000).unref();
        }
      });
    });
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

  async apply(config: LbConfig, health: HealthView): Promise<void> {
    this.config = config;
    this.health = health;
    const replies = await Promise.all([...this.workers.values()].map((e) => this.request(e, (id) => ({ t: 'lb:config', id, config, health: [...health] }))));
    const failed = replies.filter((r) => r === undefined || (r.t === 'lb:applied' && r.error !== undefined));
    if (failed.length > 0) throw new Error(`${failed.length} worker(s) did not apply the config`);
  }

  setHealth(health: HealthView): void {
    this.health = health;
    // An exiting worker misses it; its replacement gets the view at init.
    for (const e of this.workers.values()) sendTo(e.worker, { t: 'lb:health', health: [...health] });
  }

  async counters(): Promise<CounterSnapshot> {
    const entries = [...this.workers.values()];
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
    for (const [id, e] of this.workers) m.set(String(id), e.last.reasonPackets.reduce((a, b) => a + b, 0));
    return m;
  }

  running(): number {
    let n = 0;
    for (const e of this.workers.values()) if (e.ready && e.worker.isConnected()) n++;
    return n;
  }

  vipAddresses(): Endpoint[] {
    return this.vips;
  }

  returnAddress(): Endpoint | undefined {
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
      case 'lb:config':
        if (!forwarder) return send({ t: 'lb:applied', id: msg.id, error: 'not started' });
        logger.level = msg.config.log.level;
        forwarder.apply(msg.config, new Map(msg.health)).then(
          () => send({ t: 'lb:applied', id: msg.id }),
          (err: unknown) => send({ t: 'lb:applied', id: msg.id, error: (err as Error).message }),
        );
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
