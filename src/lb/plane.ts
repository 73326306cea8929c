// Data planes: the forwarding process(es) the control plane drives. `LocalPlane` forwards in
// this process; `ClusterPlane` (cluster.ts) runs node:cluster workers sharing the VIP sockets.
import type { Logger } from 'pino';
import type { LbConfig } from './config.js';
import { type CounterSnapshot, Counters } from './counters.js';
import { Forwarder, type LocalDelivery } from './forwarder.js';
import type { ParsedEndpoint } from '../wire/index.js';
import type { HealthView } from './router.js';

/** What the control plane needs from the forwarding side. */
export interface DataPlane {
  /**
   * Installs a new config (and the health view to use with it) in every forwarding process, or
   * in none: rejects, with every process still on the running config, when one cannot. Calls
   * are applied one at a time.
   */
  apply(config: LbConfig, health: HealthView): Promise<void>;
  setHealth(health: HealthView): void;
  /** Counters of every forwarding process, summed. */
  counters(): Promise<CounterSnapshot>;
  /** Number of forwarding processes running. */
  running(): number;
  /** Forwarding processes started again after one exited. */
  restarts(): number;
  /** Datagrams received per forwarding process (worker id -> count), as of the last `counters()`. */
  workerPackets(): Map<string, number>;
  vipAddresses(): ParsedEndpoint[];
  returnAddress(): ParsedEndpoint | undefined;
  close(): Promise<void>;
}

/** Forwarding in the current process (workers: 1, and `startLoadBalancer` by default). */
export class LocalPlane implements DataPlane {
  private constructor(
    readonly forwarder: Forwarder,
    private readonly localCounters: Counters,
  ) {}

  static async start(
    config: LbConfig,
    health: HealthView,
    logger: Logger,
    server?: { local: LocalDelivery; upstreamSource?: string },
  ): Promise<LocalPlane> {
    const counters = new Counters();
    const forwarder = await Forwarder.start({
      config,
      counters,
      logger,
      health,
      local: server?.local,
      upstreamSource: server?.upstreamSource,
    });
    return new LocalPlane(forwarder, counters);
  }

  async apply(config: LbConfig, health: HealthView): Promise<void> {
    await this.forwarder.apply(config, health);
  }

  setHealth(health: HealthView): void {
    this.forwarder.setHealth(health);
  }

  counters(): Promise<CounterSnapshot> {
    return Promise.resolve(this.localCounters.snapshot());
  }

  running(): number {
    return 1;
  }

  restarts(): number {
    return 0;
  }

  workerPackets(): Map<string, number> {
    return new Map([['0', this.localCounters.totalPackets()]]);
  }

  vipAddresses(): ParsedEndpoint[] {
    return this.forwarder.vipAddresses();
  }

  returnAddress(): ParsedEndpoint | undefined {
    return this.forwarder.returnAddress();
  }

  close(): Promise<void> {
    this.forwarder.close();
    return Promise.resolve();
  }
}
