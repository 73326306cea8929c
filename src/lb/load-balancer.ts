// The control plane of `quic-lb serve`: config (load, hot reload), health checks, metrics and
// health endpoint, graceful drain; it drives one data plane (in-process or cluster workers).
import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, realpathSync, watch } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ClusterPlane } from './cluster.js';
import { configFromSpec } from '../cid/index.js';
import { type LbConfig, configSources, datapathOf, loadConfigFile, restartOnlyChanges, retryOf } from './config.js';
import type { RetrySnapshot } from './counters.js';
import type { ConfigError } from './errors.js';
import { type BackendHealth, HealthChecker } from './health.js';
import { type ParsedEndpoint, formatEndpoint } from '../wire/index.js';
import { createLogger } from './logger.js';
import { type ControlStats, METRICS_PREFIX, createMetrics, startHttp } from './metrics.js';
import { type DataPlane, LocalPlane } from './plane.js';
import type { Forwarder, LocalDelivery } from './forwarder.js';
import type { BackendState } from './router.js';
import type { XdpArtifacts } from './xdp-availability.js';
import { XdpPlane } from './xdp-plane.js';

/** How long /healthz waits for the forwarding processes' Retry offload state. */
const HEALTHZ_COUNTERS_WAIT_MS = 250;

/** Options of `startLoadBalancer`. */
export interface LoadBalancerOptions {
  /** Logger (default: pino to stderr at the config's log level). */
  logger?: Logger;
  /** The file the config came from: enables `reload()`, SIGHUP and the file watch. */
  configFile?: string;
  /** Watch `configFile` for changes (default true when configFile is given). */
  watch?: boolean;
  /** Install SIGHUP (reload) and SIGTERM/SIGINT (drain, then exit) handlers. Default false. */
  handleSignals?: boolean;
  /** Run `config.workers` cluster workers (needs the built dist/ files). Default false: forward in this process. */
  cluster?: boolean;
  /** Debounce of the file watch, ms (default 200). */
  watchDebounceMs?: number;
  /**
   * Server mode (src/anycast): this process is backend `local.name`; the VIP datagrams decided
   * for it go to `local.deliver` (forwarder.ts `LocalDelivery`). Single process only (not with
   * `cluster`).
   */
  local?: LocalDelivery;
  /** Source address of the upstream sockets and UDP health probes (server mode: its own unicast address). */
  sourceAddress?: string;
  /** Decides `/healthz` instead of the LB's own rule (server mode: the announcement). */
  healthy?: () => { ok: boolean; why: string };
  /** Adds metrics to the registry `/metrics` serves (called once, at start). */
  registerMetrics?: (registry: Registry) => void;
  /** The XDP agent and object for `datapath: xdp` (default: dist/xdp of this package). */
  xdpArtifacts?: XdpArtifacts;
}

/** Result of a reload attempt. */
export interface ReloadResult {
  ok: boolean;
  error?: ConfigError | Error;
  /** Fields that changed but need a restart (kept at their running values). */
  restartRequired: string[];
}

/**
 * A running load balancer. Build with `startLoadBalancer()`; stop with `close()` (immediately)
 * or `drain()` (health endpoint fails first, forwarding continues for `drainMs`).
 */
export class LoadBalancer {
  private config: LbConfig;
  /** The running config's QUIC-LB configs, for quic_lb_config_info. */
  private quicLbInfo: { configId: number; algorithm: string }[];
  private readonly control: ControlStats = {
    reloadsOk: 0,
    reloadsFailed: 0,
    lastReloadOk: true,
    lastReloadTime: 0,
    loadedTime: Date.now(),
    restartRequired: false,
    draining: false,
    workers: 0,
    workerRestarts: 0,
  };
  private httpServer: http.Server | undefined;
  private httpAddress: ParsedEndpoint | undefined;
  /** Directory -> watcher (the config file's and every key file's directories). */
  private readonly watchers = new Map<string, FSWatcher>();
  private debounce: NodeJS.Timeout | undefined;
  /** Hash of the resolved content (config text + key files) the running config was read from. */
  private lastFileHash = '';
  private reloading: Promise<ReloadResult> | undefined;
  /** A reload asked for while one runs (it may have read the file already): runs after it. */
  private reloadAgain: Promise<ReloadResult> | undefined;
  /** Tail of the queue of config applications: one at a time, in call order. */
  private applyTail: Promise<unknown> = Promise.resolve();
  private readonly signalHandlers: [string, () => void][] = [];
  /** The Retry offload state of the last counters read for /healthz. */
  private lastRetry: RetrySnapshot | undefined;
  private closed = false;

  private constructor(
    config: LbConfig,
    readonly logger: Logger,
    private readonly health: HealthChecker,
    readonly plane: DataPlane,
    private readonly opts: LoadBalancerOptions,
  ) {
    this.config = config;
    this.quicLbInfo = quicLbInfoOf(config);
  }

  /** Starts everything; see `startLoadBalancer`. */
  static async start(config: LbConfig, opts: LoadBalancerOptions = {}): Promise<LoadBalancer> {
    const logger = opts.logger ?? createLogger(config.log.level);
    let plane: DataPlane | undefined;
    // The health checker exists before the plane so the first view is ready; its changes
    // reach the plane once it exists.
    const holder: { lb?: LoadBalancer } = {};
    const health = new HealthChecker({
      logger,
      onChange: (view) => holder.lb?.plane.setHealth(view),
      sourceAddress: opts.sourceAddress,
    });
    health.configure(config);
    try {
      const workers = config.workers === 0 ? availableParallelism() : config.workers;
      if (opts.local && opts.cluster) throw new Error('server mode (local) runs in one process: not with cluster');
      const server = opts.local ? { local: opts.local, upstreamSource: opts.sourceAddress } : undefined;
      plane =
        opts.cluster && workers > 1
          ? await ClusterPlane.start(config, health.view(), workers, logger)
          : await LocalPlane.start(config, health.view(), logger, server);
      // datapath xdp needs workers: 1 (config.ts): the kernel spreads the fast path over the cores.
      if (datapathOf(config).mode === 'xdp' && plane instanceof LocalPlane)
        plane = await XdpPlane.start(plane, config, health.view(), logger, opts.xdpArtifacts);
      const lb = new LoadBalancer(config, logger, health, plane, opts);
      holder.lb = lb;
      // A health change between configure() and now is pushed once more.
      plane.setHealth(health.view());
      await lb.startOps();
      return lb;
    } catch (err) {
      health.close();
      await plane?.close();
      throw err;
    }
  }

  private async startOps(): Promise<void> {
    const { registry, refresh } = createMetrics({
      counters: () => this.plane.counters(),
      health: () => this.health.states(),
      control: () => ({ ...this.control, workers: this.plane.running(), workerRestarts: this.plane.restarts() }),
      backendNames: () => this.config.backends.map((b) => b.name),
      workerPackets: () => this.plane.workerPackets(),
      quicLbConfigs: () => this.quicLbInfo,
      serverMode: this.opts.local !== undefined,
      vips: () => this.plane.vipAddresses().map((v) => formatEndpoint(v)),
    });
    this.opts.registerMetrics?.(registry);
    if (this.plane instanceof XdpPlane) this.plane.registerMetrics(registry, METRICS_PREFIX);
    this.metricsText = async () => {
      await refresh();
      return registry.metrics();
    };
    if (this.config.metrics.listen) {
      const { server, address } = await startHttp(this.config.metrics.listen, {
        contentType: registry.contentType,
        metrics: this.metricsText,
        healthy: () => this.healthz(),
      });
      this.httpServer = server;
      this.httpAddress = address;
    }
    const file = this.opts.configFile;
    if (file) {
      const { hash, dirs } = resolvedContent(file);
      this.lastFileHash = hash ?? '';
      if (this.opts.watch ?? true) this.syncWatchers(dirs);
    }
    if (this.opts.handleSignals) {
      this.onSignal('SIGHUP', () => void this.reload());
      const stop = (): void => {
        void this.drain().then(() => process.exit(0));
      };
      this.onSignal('SIGTERM', stop);
      this.onSignal('SIGINT', stop);
    }
    this.logger.info(
      {
        vips: this.plane.vipAddresses(),
        returnPort: this.plane.returnAddress(),
        metrics: this.httpAddress,
        workers: this.plane.running(),
        backends: this.config.backends.length,
        quicLbConfigs: this.config.quicLb.map((c) => c.configId),
      },
      'quic-lb serving',
    );
  }

  /** Prometheus text of every metric (what GET /metrics returns). */
  metricsText: () => Promise<string> = () => Promise.resolve('');

  private onSignal(sig: string, fn: () => void): void {
    process.on(sig, fn);
    this.signalHandlers.push([sig, fn]);
  }

  /**
   * Watches every directory the config depends on: the config file's, its symlink target's, and
   * those of the key files it references. Any event (whatever the name: Kubernetes swaps a `..data`
   * symlink, editors and `mv` replace the file by rename) arms the debounce; then the resolved
   * content (config text + key files) is hashed and the config reloaded only if that changed.
   */
  private syncWatchers(dirs: string[]): void {
    if (this.closed) return;
    const wanted = new Set(dirs);
    for (const [dir, w] of this.watchers) {
      if (!wanted.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.watchers.has(dir)) continue;
      let w: FSWatcher;
      try {
        w = watch(dir, () => this.onWatchEvent());
      } catch (err) {
        this.logger.warn({ dir, err: (err as Error).message }, 'cannot watch config directory');
        continue;
      }
      // A watched directory that goes away (an old Kubernetes timestamped dir) ends its watch;
      // the next event elsewhere re-syncs the set.
      w.on('error', (err) => {
        this.logger.debug({ dir, err: err.message }, 'config watch ended');
        w.close();
        if (this.watchers.get(dir) === w) this.watchers.delete(dir);
        this.onWatchEvent();
      });
      this.watchers.set(dir, w);
    }
  }

  private onWatchEvent(): void {
    if (this.closed) return;
    const file = this.opts.configFile;
    if (!file) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      const { hash, dirs } = resolvedContent(file);
      this.syncWatchers(dirs);
      // Unreadable config (mid-rename): the rename's own event comes next.
      if (hash === undefined || hash === this.lastFileHash) return;
      void this.reload();
    }, this.opts.watchDebounceMs ?? 200);
  }

  /**
   * `/healthz`: the `healthy` option's answer when given; else fails while draining, with no
   * forwarding process, or with no healthy backend.
   */
  healthy(): { ok: boolean; why: string } {
    if (this.opts.healthy) return this.opts.healthy();
    if (this.control.draining) return { ok: false, why: 'draining' };
    if (this.plane.running() === 0) return { ok: false, why: 'no forwarding process' };
    const up = [...this.health.view().values()].filter((s) => s === 'up').length;
    if (up === 0) return { ok: false, why: 'no backend up for new flows' };
    return { ok: true, why: `ok: ${up}/${this.config.backends.length} backends up` };
  }

  /**
   * What GET /healthz answers: `healthy()`; with `datapath: xdp` the data path's state appended
   * as `; xdp: {"state":…,"mode":…,"interface":…,"reason":…}` (src/lb/xdp-plane.ts XdpStatus);
   * while the Retry offload is configured its state appended as
   * `; retry: {"mode":…,"active":…,"since":…}` (active: on for some VIP in some
   * process; since: ISO time of the latest change, null before any). The state comes from the
   * forwarding processes; one that does not answer within HEALTHZ_COUNTERS_WAIT_MS leaves the last
   * state known (a health check must not wait for the IPC timeout).
   */
  async healthz(): Promise<{ ok: boolean; why: string }> {
    const h = this.healthy();
    const details = [h.why];
    if (this.plane instanceof XdpPlane) details.push(`xdp: ${JSON.stringify(this.plane.xdpStatus())}`);
    const mode = retryOf(this.config).mode;
    if (mode !== 'off') {
      const fresh = this.plane.counters().then(
        (snap) => {
          this.lastRetry = snap.retry;
        },
        () => undefined,
      );
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([fresh, new Promise<void>((r) => (timer = setTimeout(r, HEALTHZ_COUNTERS_WAIT_MS)))]);
      clearTimeout(timer);
      const r = this.lastRetry;
      const active = (r?.active ?? []).some((n) => n > 0);
      const latest = Math.max(0, ...(r?.since ?? []));
      const since = latest > 0 ? new Date(latest).toISOString() : null;
      details.push(`retry: ${JSON.stringify({ mode, active, since })}`);
    }
    return { ok: h.ok, why: details.join('; ') };
  }

  /**
   * Re-reads the config file and applies it atomically. An invalid file keeps the running config
   * (logged, counted in quic_lb_config_reloads_total{outcome="failure"}); fields that need a restart
   * keep their running values. A call while a reload runs gets one more reload after it (shared
   * by every call meanwhile), so the last content of the file is what ends up applied.
   */
  reload(): Promise<ReloadResult> {
    if (!this.reloading) {
      this.reloading = this.doReload().finally(() => {
        this.reloading = undefined;
      });
      return this.reloading;
    }
    this.reloadAgain ??= this.reloading.then(() => {
      this.reloadAgain = undefined;
      return this.reload();
    });
    return this.reloadAgain;
  }

  private async doReload(): Promise<ReloadResult> {
    const file = this.opts.configFile;
    this.control.lastReloadTime = Date.now();
    if (!file) return this.reloadFailed(new Error('no config file to reload from'));
    let next: LbConfig;
    const warnings: string[] = [];
    try {
      const { hash, dirs } = resolvedContent(file);
      if (hash !== undefined) this.lastFileHash = hash;
      if (this.watchers.size > 0) this.syncWatchers(dirs);
      next = loadConfigFile(file, warnings);
    } catch (err) {
      return this.reloadFailed(err as Error);
    }
    for (const w of warnings) this.logger.warn(w);
    return this.applyConfig(next);
  }

  /**
   * Applies a validated config (what reload does after parsing): to every forwarding process or
   * to none (a failure keeps the running config everywhere and is counted). Calls are applied
   * one at a time, in call order: the last call's config is the one left running.
   */
  applyConfig(next: LbConfig): Promise<ReloadResult> {
    const run = this.applyTail.then(() => this.applyNow(next));
    this.applyTail = run.catch(() => undefined);
    return run;
  }

  private async applyNow(next: LbConfig): Promise<ReloadResult> {
    if (this.closed) return this.reloadFailed(new Error('load balancer closed'));
    const restartRequired = restartOnlyChanges(this.config, next);
    const merged: LbConfig = {
      ...next,
      listen: this.config.listen,
      metrics: this.config.metrics,
      workers: this.config.workers,
      socket: this.config.socket,
      returnPath: { ...next.returnPath, mode: this.config.returnPath.mode, listen: this.config.returnPath.listen },
    };
    // The data path is chosen at start (the XDP agent attaches then): the running one stays.
    if (this.config.datapath) merged.datapath = this.config.datapath;
    else delete merged.datapath;
    try {
      this.health.configure(merged);
      await this.plane.apply(merged, this.health.view());
    } catch (err) {
      // Probes follow the config that runs.
      this.health.configure(this.config);
      return this.reloadFailed(err as Error);
    }
    this.config = merged;
    this.quicLbInfo = quicLbInfoOf(merged);
    this.control.loadedTime = Date.now();
    this.logger.level = merged.log.level;
    this.control.reloadsOk++;
    this.control.lastReloadOk = true;
    this.control.restartRequired = restartRequired.length > 0;
    if (restartRequired.length > 0)
      this.logger.warn(
        { fields: restartRequired },
        'config reloaded; these changes need a restart and were not applied',
      );
    else
      this.logger.info(
        { backends: merged.backends.length, quicLbConfigs: merged.quicLb.map((c) => c.configId) },
        'config reloaded',
      );
    return { ok: true, restartRequired };
  }

  private reloadFailed(err: Error): ReloadResult {
    this.control.reloadsFailed++;
    this.control.lastReloadOk = false;
    const e = err as Partial<ConfigError>;
    this.logger.error(
      { code: e.code, field: e.field, reason: e.reason ?? err.message },
      'config reload failed; keeping the running config',
    );
    return { ok: false, error: err, restartRequired: [] };
  }

  /** The running (merged) config. */
  currentConfig(): LbConfig {
    return this.config;
  }

  /** Bound addresses: VIPs, return port, metrics/health endpoint. */
  addresses(): { vips: ParsedEndpoint[]; returnPort: ParsedEndpoint | undefined; metrics: ParsedEndpoint | undefined } {
    return { vips: this.plane.vipAddresses(), returnPort: this.plane.returnAddress(), metrics: this.httpAddress };
  }

  /** The forwarder when it runs in this process (not with cluster workers): the server mode's VIP sender. */
  localForwarder(): Forwarder | undefined {
    return this.plane instanceof LocalPlane ? this.plane.forwarder : undefined;
  }

  /** Health bookkeeping per backend (state, probe counts, the latest probe's outcome). */
  healthStates(): Map<string, BackendHealth> {
    return this.health.states();
  }

  /** Current health view (backend name -> state). */
  healthView(): Map<string, BackendState> {
    return this.health.view();
  }

  /**
   * Graceful stop: /healthz answers 503 at once (so BGP withdraws the VIP), forwarding goes on
   * for `drainMs`, then everything closes.
   */
  async drain(): Promise<void> {
    if (this.control.draining || this.closed) return;
    this.control.draining = true;
    this.logger.info({ drainMs: this.config.drainMs }, 'draining: health endpoint fails, still forwarding');
    await new Promise((r) => setTimeout(r, this.config.drainMs));
    await this.close();
  }

  /** Stops at once: sockets, workers, health checks, watch, HTTP. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [sig, fn] of this.signalHandlers) process.off(sig, fn);
    if (this.debounce) clearTimeout(this.debounce);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.health.close();
    await this.plane.close();
    if (this.httpServer) {
      this.httpServer.closeAllConnections();
      await new Promise<void>((r) => this.httpServer!.close(() => r()));
    }
    this.logger.info('stopped');
  }
}

function quicLbInfoOf(config: LbConfig): { configId: number; algorithm: string }[] {
  return config.quicLb.map((spec) => ({ configId: spec.configId, algorithm: configFromSpec(spec).algorithm }));
}

/**
 * SHA-256 over the config text and every key file it references (path and content, or a
 * marker when missing), plus the directories to watch: those of the config file and the key
 * files as named and as their symlinks resolve. `hash` is undefined when the config file
 * cannot be read.
 */
function resolvedContent(file: string): { hash: string | undefined; dirs: string[] } {
  const abs = path.resolve(file);
  const { text, keyFiles } = configSources(abs);
  const dirs = new Set<string>();
  for (const f of [abs, ...keyFiles]) {
    dirs.add(path.dirname(f));
    try {
      dirs.add(path.dirname(realpathSync(f)));
    } catch {
      // missing: its directory as named is watched
    }
  }
  if (text === undefined) return { hash: undefined, dirs: [...dirs] };
  const h = createHash('sha256').update(text);
  for (const f of keyFiles) {
    h.update(`\0${f}\0`);
    try {
      h.update(readFileSync(f));
    } catch {
      h.update('\0missing');
    }
  }
  return { hash: h.digest('hex'), dirs: [...dirs] };
}

/**
 * Starts a load balancer from a validated config or a config file path. Single process unless
 * `opts.cluster` (the CLI's `serve` sets it; workers need the built dist/). Throws ConfigError
 * for a bad file, or the socket error when a port cannot be bound.
 */
export async function startLoadBalancer(
  config: LbConfig | string,
  opts: LoadBalancerOptions = {},
): Promise<LoadBalancer> {
  if (typeof config === 'string') {
    const warnings: string[] = [];
    const cfg = loadConfigFile(config, warnings);
    const lb = await LoadBalancer.start(cfg, { ...opts, configFile: opts.configFile ?? config });
    for (const w of warnings) lb.logger.warn(w);
    return lb;
  }
  return LoadBalancer.start(config, opts);
}
