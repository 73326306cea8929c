// The server mode (issue 12, docs/anycast.md): one process that is both a QUIC server and a
// co-located stateless forwarder. Every server of the set binds the anycast VIP(s) of `listen`
// and its own unicast `address`; the VIP carries handshakes (and clients that ignore
// preferred_address), the unicast address everything after migration.
//
//   VIP socket (src/lb Forwarder) --decide()--> this server: BackendSocket.receiveFromVip (no hop)
//                                          \--> a peer: [PROXY v2, datagram] to its `address`
//   own address (BackendSocket) <-- peers' encapsulated datagrams, health probes, migrated clients
//   replies to VIP clients: BackendSocket -> Forwarder.sendFromVip (source = the VIP)
//
// The routing is src/lb's `decide()` over the same config on every server (same server IDs, same
// fallback key, same server set), so an unroutable datagram lands on the same server whichever
// server ECMP picked, as long as the servers agree on which peers are up (docs/anycast.md).
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { BackendSocket, type BackendPath, type Endpoint, type VipSender } from '../backend/index.js';
import {
  type AnnounceSpec,
  type LbConfig,
  type LoadBalancer,
  type ReloadResult,
  anycastOf,
  createLogger,
  startLoadBalancer,
} from '../lb/index.js';
import type { ParsedEndpoint } from '../wire/index.js';
import { Announcer, type AnnounceState, initialAnnounceState } from './announce.js';
import { AnycastError } from './errors.js';
import { registerAnycastMetrics } from './metrics.js';

export interface AnycastServerOptions {
  /** This server's name in `backends` (its `address` is its unicast address). */
  name: string;
  /**
   * The VIPs of `listen` this process binds (default: every one). A fleet binds them all on every
   * server; tests on one host give each server its own VIP literal from the same `listen` list,
   * since two processes cannot bind one address there (docs/anycast.md "One host").
   */
  vips?: Endpoint[];
  /** A further unicast address to advertise as preferred_address (bound too); default: `address`. */
  preferred?: Endpoint;
  /** Overrides `anycast.forward` (`--no-forward`: every VIP datagram handled here). */
  forward?: boolean;
  /** Overrides `anycast.announce.maxConnections` (its resume level then defaults to 80 % of it). */
  maxConnections?: number;
  /** /metrics and /healthz endpoint (default `metrics.listen`); null: none. */
  metrics?: Endpoint | null;
  logger?: Logger;
}

/** What `/healthz` says: 200 `ok` while announced, 503 naming the reason otherwise. */
export function healthzOf(state: Pick<AnnounceState, 'announced' | 'reason'>): { ok: boolean; why: string } {
  return state.announced ? { ok: true, why: 'ok' } : { ok: false, why: `withdrawn: ${state.reason ?? 'unknown'}` };
}

/**
 * A running server-mode socket. To a QUIC stack it is a `DemoSocket`-shaped datagram socket:
 * `on('message', (msg, rinfo, path))` and `send(msg, address, port, path)`, over VIP datagrams
 * decided for this server, peer-forwarded ones and direct (migrated) traffic. Build with
 * `startAnycastServer`.
 */
export class AnycastServer {
  private activeConnections: () => number = () => 0;
  private closed = false;

  private constructor(
    readonly name: string,
    private config: LbConfig,
    private readonly opts: AnycastServerOptions,
    readonly socket: BackendSocket,
    readonly lb: LoadBalancer,
    readonly announcer: Announcer,
  ) {}

  /** See `startAnycastServer`. */
  static async start(config: LbConfig, opts: AnycastServerOptions): Promise<AnycastServer> {
    const effective = effectiveConfig(config, opts);
    const self = effective.backends.find((b) => b.name === opts.name);
    if (!self)
      throw new AnycastError(
        'ERR_ANYCAST_UNKNOWN_SERVER',
        'name',
        `no backend '${opts.name}' in the config (have: ${config.backends.map((b) => b.name).join(', ')})`,
      );
    const logger = opts.logger ?? createLogger(config.log.level);
    // The forwarder exists only once the LB runs; the socket needs a sender before that.
    const holder: { lb?: LoadBalancer } = {};
    const sender: VipSender = {
      vipAddresses: () => holder.lb?.localForwarder()?.vipAddresses() ?? [],
      vipIndexOf: (vip) => holder.lb?.localForwarder()?.vipIndexOf(vip) ?? -1,
      sendFromVip: (msg, address, port, index) =>
        holder.lb?.localForwarder()?.sendFromVip(msg, address, port, index) ?? false,
    };
    const keys = config.returnPath.hmacKeys.map((k) => Buffer.from(k, 'hex'));
    const own = { address: self.address.address, port: self.address.port };
    const socket = new BackendSocket({
      listen: own,
      unicast: opts.preferred && !sameEndpoint(opts.preferred, own) ? [opts.preferred] : [],
      returnPath: { mode: 'vip', sender },
      hmacKeys: keys.length > 0 ? keys : undefined,
      signForward: config.returnPath.signForward,
      allowLbAddresses: peerAddresses(config),
    });
    await socket.bind();
    let announcer: Announcer | undefined;
    let server: AnycastServer | undefined;
    try {
      const lb = await startLoadBalancer(effective, {
        logger,
        local: { name: opts.name, deliver: (msg, rinfo, vip) => socket.receiveFromVip(msg, rinfo, vip) },
        sourceAddress: self.address.address,
        healthy: () => healthzOf(announcer?.state ?? initialAnnounceState()),
        registerMetrics: (registry: Registry) =>
          registerAnycastMetrics(registry, {
            state: () => announcer?.state ?? initialAnnounceState(),
            withdrawals: () => announcer?.withdrawals,
            lastSample: () => announcer?.lastSample,
            activeConnections: () => server?.activeConnections() ?? 0,
            peerReceived: () => socket.stats.lbDatagrams,
          }),
      });
      holder.lb = lb;
      announcer = new Announcer({
        thresholds: anycastOf(effective).announce,
        activeConnections: () => server?.activeConnections() ?? 0,
        // Self-check: this server's latest probe of itself (from and to its own address, the
        // path its peers' probes take) was answered, "up" or "draining"; no probe yet = not ok.
        // A server whose health type is none is not probed: always ok.
        selfCheck: () => {
          const h = lb.healthStates().get(opts.name);
          if (h?.lastProbe !== undefined) return h.lastProbe !== 'failed';
          return lb.currentConfig().backends.find((b) => b.name === opts.name)?.health.type === 'none';
        },
      });
      server = new AnycastServer(opts.name, effective, opts, socket, lb, announcer);
      // Withdrawn for any reason: probes answer "draining", so every server (this one too) takes
      // it out of the fallback for new flows; datagrams whose CID names it still arrive.
      announcer.on('change', (state: AnnounceState) => {
        socket.drain(!state.announced);
        logger.info({ announced: state.announced, reason: state.reason }, 'anycast announcement');
      });
      socket.drain(!announcer.state.announced);
      announcer.start();
      return server;
    } catch (err) {
      announcer?.stop();
      await holder.lb?.close();
      await socket.close();
      throw err;
    }
  }

  /** Listens for datagrams (the QUIC stack's socket interface). */
  on(
    event: 'message',
    listener: (msg: Buffer, rinfo: { address: string; port: number }, path: BackendPath) => void,
  ): this {
    this.socket.on(event, listener);
    return this;
  }

  /** Sends on `path` (VIP paths leave from the VIP socket, direct ones from the unicast socket). Never throws. */
  send(msg: Uint8Array, address: string, port: number, path?: BackendPath): void {
    this.socket.send(msg, address, port, path);
  }

  /** Where the active-connection count comes from (the QUIC stack). */
  setActiveConnections(count: () => number): void {
    this.activeConnections = count;
  }

  /** The announcement now. */
  get announcement(): AnnounceState {
    return this.announcer.state;
  }

  /** Withdraws (reason `draining`) until `drain(false)`; existing connections go on. */
  drain(on = true): void {
    this.announcer.drain(on);
  }

  /**
   * Applies a new config (SIGHUP): peers, server IDs, keys, fallback, thresholds, `forward`.
   * `listen`, the own address and `metrics` need a restart. A config this server cannot run
   * (not `direct`, its name gone, bad keys) keeps the running one: `{ ok: false }`.
   */
  async reload(config: LbConfig): Promise<ReloadResult> {
    let effective: LbConfig;
    try {
      effective = effectiveConfig(config, this.opts);
      const self = effective.backends.find((b) => b.name === this.name);
      if (!self)
        throw new AnycastError('ERR_ANYCAST_UNKNOWN_SERVER', 'name', `backend '${this.name}' is gone from the config`);
      const keys = config.returnPath.hmacKeys.map((k) => Buffer.from(k, 'hex'));
      // Validate before changing anything.
      const allowed = peerAddresses(config);
      const r = await this.lb.applyConfig(effective);
      if (!r.ok) return r;
      this.socket.setAllowedLbAddresses(allowed);
      if (keys.length > 0) this.socket.setKeys(keys);
    } catch (err) {
      return { ok: false, error: err as Error, restartRequired: [] };
    }
    this.config = effective;
    this.announcer.setThresholds(anycastOf(effective).announce);
    return { ok: true, restartRequired: [] };
  }

  /** The running (effective) config. */
  currentConfig(): LbConfig {
    return this.config;
  }

  /** Bound addresses: the VIPs, the unicast ones (own address first), the metrics endpoint. */
  addresses(): { vips: ParsedEndpoint[]; unicast: Endpoint[]; metrics: ParsedEndpoint | undefined } {
    const a = this.lb.addresses();
    return { vips: a.vips, unicast: this.socket.addresses(), metrics: a.metrics };
  }

  /** Stops at once: announcement, forwarder, health checks, HTTP, sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.announcer.stop();
    await this.lb.close();
    await this.socket.close();
  }
}

/**
 * Starts the server mode for server `opts.name` of `config`. Throws AnycastError
 * (ERR_ANYCAST_RETURN_MODE, ERR_ANYCAST_UNKNOWN_SERVER, ERR_ANYCAST_VIP), BackendError, or the
 * bind error of a socket.
 */
export function startAnycastServer(config: LbConfig, opts: AnycastServerOptions): Promise<AnycastServer> {
  return AnycastServer.start(config, opts);
}

/**
 * The config the forwarder runs: `returnPath.mode` must be 'direct' (replies leave from the VIP
 * on the server itself; nothing listens on a return port); the option overrides applied; `listen`
 * narrowed to `opts.vips`.
 */
function effectiveConfig(config: LbConfig, opts: AnycastServerOptions): LbConfig {
  if (config.returnPath.mode !== 'direct')
    throw new AnycastError(
      'ERR_ANYCAST_RETURN_MODE',
      '/returnPath/mode',
      'the server mode needs returnPath.mode: direct (each server answers VIP clients from the VIP itself)',
    );
  const base = anycastOf(config);
  const announce: AnnounceSpec =
    opts.maxConnections === undefined
      ? base.announce
      : {
          ...base.announce,
          maxConnections: opts.maxConnections,
          resumeConnections: Math.floor(0.8 * opts.maxConnections),
        };
  let listen = config.listen;
  if (opts.vips) {
    listen = opts.vips.map((v) => {
      const e = config.listen.find((l) => sameEndpoint(l, v));
      if (!e)
        throw new AnycastError(
          'ERR_ANYCAST_VIP',
          'vips',
          `${v.address}:${v.port} is not in listen (${config.listen.map((l) => `${l.address}:${l.port}`).join(', ')})`,
        );
      return e;
    });
  }
  const metrics =
    opts.metrics === undefined ? config.metrics : opts.metrics === null ? {} : { listen: toParsed(opts.metrics) };
  return {
    ...config,
    listen,
    metrics,
    workers: 1,
    anycast: { forward: opts.forward ?? base.forward, announce },
  };
}

/** Source addresses peers forward and probe from: the servers' unicast addresses (each server binds its own). */
function peerAddresses(config: LbConfig): string[] {
  return [...new Set(config.backends.map((b) => b.address.address))];
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

function toParsed(e: Endpoint): ParsedEndpoint {
  return { address: e.address, port: e.port, family: e.address.includes(':') ? 6 : 4 };
}
