// `datapath: xdp` (docs/xdp.md): the XDP program on the VIP interface forwards what it decides and
// passes everything else up the stack to the Node data plane it wraps, which stays bound to the
// VIPs and forwards as in `node` mode. This plane keeps the program's maps equal to the config
// and health view the Node plane runs, one generation at a time (src/lb/xdp-maps.ts), and reads
// its per-CPU counters back for /metrics.
//
// Failure is never an outage: if the agent cannot start, `unavailable: fallback` forwards on
// node:dgram alone; if it exits later, or a map write fails, the program is detached (the agent
// owns the link) and node:dgram, which saw every pass-up all along, carries everything.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type LbConfig, datapathOf } from './config.js';
import type { CounterSnapshot } from './counters.js';
import { scrapeTimeMetrics } from './metrics.js';
import type { DataPlane, LocalPlane } from './plane.js';
import type { HealthView } from './router.js';
import type { ParsedEndpoint } from '../wire/index.js';
import { XdpAgent, XdpAgentError } from './xdp-agent.js';
import { type XdpArtifacts, defaultXdpArtifacts, xdpUnavailable } from './xdp-availability.js';
import { LAYOUT_QUERIES, type MapInputs, MapWriter, checkLayout, encodeImage } from './xdp-maps.js';

/** `quic-lb serve` refuses to start: `datapath.unavailable: stop` and XDP cannot run. */
export class XdpUnavailableError extends Error {
  readonly code = 'ERR_XDP_UNAVAILABLE';
  constructor(readonly reason: string) {
    super(`datapath xdp unavailable (datapath.unavailable: stop): ${reason}`);
  }
}

/** What the data path is doing, for /metrics and /healthz. */
export interface XdpStatus {
  /** attached: forwarding in the kernel; unavailable: never attached; failed: detached after a fault. */
  state: 'attached' | 'unavailable' | 'failed';
  /** native or generic while attached. */
  mode?: string;
  interface: string;
  /** Why not attached. */
  reason?: string;
}

export const XDP_STATES: readonly XdpStatus['state'][] = ['attached', 'unavailable', 'failed'];

/** The Node plane with the XDP program in front of it. */
export class XdpPlane implements DataPlane {
  private writer: MapWriter | undefined;
  /** Tail of the map writes: one at a time, in call order. */
  private writes: Promise<void> = Promise.resolve();
  private reasonNames: string[] = [];
  private packets: bigint[] = [];
  private config: LbConfig;

  private constructor(
    private readonly inner: LocalPlane,
    private agent: XdpAgent | undefined,
    private status: XdpStatus,
    config: LbConfig,
    private readonly logger: Logger,
  ) {
    this.config = config;
  }

  /**
   * Puts the XDP program in front of `inner` as `config.datapath` says. Resolves with the plane
   * (attached, or unavailable with the reason logged); rejects with XdpUnavailableError when
   * XDP cannot run and `datapath.unavailable` is `stop`.
   */
  static async start(
    inner: LocalPlane,
    config: LbConfig,
    health: HealthView,
    logger: Logger,
    artifacts: XdpArtifacts = defaultXdpArtifacts(),
  ): Promise<XdpPlane> {
    const spec = datapathOf(config);
    const iface = spec.interface ?? '';
    let why = xdpUnavailable(spec, artifacts);
    let agent: XdpAgent | undefined;
    const plane = new XdpPlane(inner, undefined, { state: 'unavailable', interface: iface }, config, logger);
    if (why === undefined) {
      try {
        agent = await XdpAgent.start({ ...artifacts, interface: iface, attach: spec.attach });
        plane.agent = agent;
        const a = agent;
        plane.writer = new MapWriter((commands) => a.apply(commands));
        const layout = checkLayout(await agent.request(LAYOUT_QUERIES));
        if (layout) throw new Error(`${artifacts.object} does not match this version: ${layout}`);
        const [names] = await agent.apply(['reasons']);
        plane.reasonNames = names.split(' ').slice(1);
        await plane.write(config, health);
      } catch (err) {
        why = err instanceof XdpAgentError ? err.reason : (err as Error).message;
        await agent?.close();
        plane.agent = undefined;
      }
    }
    if (why !== undefined) {
      if (spec.unavailable === 'stop') throw new XdpUnavailableError(why);
      plane.status = { state: 'unavailable', interface: iface, reason: why };
      logger.warn({ interface: iface, reason: why }, 'XDP unavailable: forwarding on node:dgram alone');
      return plane;
    }
    plane.status = { state: 'attached', mode: agent!.mode, interface: iface };
    agent!.onExit((err) => plane.fail(err.message));
    logger.info({ interface: iface, mode: agent!.mode }, 'XDP program attached');
    return plane;
  }

  /** The VIPs as bound and the Node forwarder's upstream sockets (the outer sources). */
  private inputs(): MapInputs {
    return { vips: this.inner.vipAddresses(), sources: this.inner.forwarder.upstreamSources() };
  }

  /** Detaches the program (the agent exits) and leaves node:dgram to carry everything. */
  private fail(reason: string): void {
    if (this.status.state !== 'attached') return;
    this.status = { state: 'failed', interface: this.status.interface, reason };
    this.logger.error({ interface: this.status.interface, reason }, 'XDP detached: forwarding on node:dgram alone');
    void this.agent?.close();
  }

  /**
   * Writes the maps of `config` and `health` into the inactive generation, then makes it the
   * active one (one array write the program reads once per datagram: no datagram sees half of
   * either). Rejects when the agent refuses a write; the active generation is then unchanged.
   */
  private write(config: LbConfig, health: HealthView): Promise<void> {
    const run = this.writes.then(() =>
      this.agent?.running ? this.writer?.write(config, health, this.inputs()) : undefined,
    );
    this.writes = run.catch(() => undefined);
    return run;
  }

  async apply(config: LbConfig, health: HealthView): Promise<void> {
    encodeImage(config, health, 0, this.inputs()); // a config the maps cannot hold is refused before anything changes
    await this.inner.apply(config, health);
    this.config = config;
    await this.write(config, health).catch((err: Error) => this.fail(`map write: ${err.message}`));
  }

  setHealth(health: HealthView): void {
    this.inner.setHealth(health);
    void this.write(this.config, health).catch((err: Error) => this.fail(`map write: ${err.message}`));
  }

  /** The Node plane's counters; refreshes the program's counters on the way (read at each scrape). */
  async counters(): Promise<CounterSnapshot> {
    const [snap] = await Promise.all([
      this.inner.counters(),
      this.agent?.running
        ? this.agent.sum('counters').then(
            (v) => (this.packets = v),
            () => undefined,
          )
        : undefined,
    ]);
    return snap;
  }

  /** Registers quic_lb_xdp_packets_total and quic_lb_xdp_state (refreshed by `counters()`). */
  registerMetrics(registry: Registry, prefix: string): void {
    const { counter, gauge } = scrapeTimeMetrics(registry, prefix);
    counter(
      'xdp_packets_total',
      'Datagrams the XDP program saw on the interface, by its decision: routed (forwarded in the kernel) or why it passed one up the stack to node:dgram',
      ['reason'],
      (c) => this.reasonNames.forEach((reason, i) => c.inc({ reason }, Number(this.packets[i] ?? 0n))),
    );
    gauge(
      'xdp_state',
      'The XDP data path: 1 for the current state (attached, unavailable, failed), with the attach mode and interface',
      ['state', 'mode', 'interface'],
      (g) => {
        for (const state of XDP_STATES)
          g.set(
            { state, mode: this.status.mode ?? '', interface: this.status.interface },
            state === this.status.state ? 1 : 0,
          );
      },
    );
  }

  /** The data path as /healthz reports it. */
  xdpStatus(): XdpStatus {
    return { ...this.status };
  }

  running(): number {
    return this.inner.running();
  }

  restarts(): number {
    return this.inner.restarts();
  }

  workerPackets(): Map<string, number> {
    return this.inner.workerPackets();
  }

  vipAddresses(): ParsedEndpoint[] {
    return this.inner.vipAddresses();
  }

  returnAddress(): ParsedEndpoint | undefined {
    return this.inner.returnAddress();
  }

  async close(): Promise<void> {
    this.status = { state: 'unavailable', interface: this.status.interface, reason: 'closed' };
    await this.agent?.close();
    await this.inner.close();
  }
}
