// The data plane: VIP sockets in, one connected UDP socket per backend out, and the return path.
// Thin by design (docs/design.md §2): per datagram it fills the reused 4-tuple, calls decide(), bumps
// plain counters and sends [PROXY v2 header, untouched datagram]. No per-packet logging, string
// keys, exceptions or callbacks on send.
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import {
  AddressSet,
  PROXY_ERR_AUTH,
  PROXY_ERR_STALE,
  ProxyCommand,
  ProxyDirection,
  ProxyHeader,
  ProxyHeaderTemplate,
  createProxyAuth,
  formatProxyAddress,
  parseIPv4Into,
  parseIPv6Into,
  parseProxyHeader,
  signProxyHeader,
  type ProxyAuth,
} from '../wire/index.js';
import { type LbConfig, isUnspecifiedAddress } from './config.js';
import type { Counters } from './counters.js';
import { type ParsedEndpoint, formatEndpoint } from '../wire/index.js';
import { AnycastPath, ReturnReject, SendError } from './reasons.js';
import { RETRY_TICK_MS, RetryOffload } from './retry-offload.js';
import {
  FourTuple,
  type HealthView,
  type RouterState,
  buildRouterState,
  countDecision,
  decide,
  withHealth,
} from './router.js';

/**
 * Header ring per (VIP, upstream): a slot is rewritten HEADER_RING sends later, so the ring is
 * used only while fewer than HEADER_RING datagrams can be in the socket's send queue (then the
 * datagram that used the slot has left it: the queue is FIFO); otherwise headers are copied.
 */
const HEADER_RING = 256;

/** A bound VIP socket and its reused 4-tuple. */
interface Vip {
  readonly endpoint: ParsedEndpoint;
  readonly socket: dgram.Socket;
  readonly tuple: FourTuple;
  /** Actual bound port (differs from endpoint.port when that is 0). */
  port: number;
}

/**
 * One connected socket per backend forwarding address. node:dgram hands a datagram to the
 * kernel at once unless the socket's buffer is full (EAGAIN); then libuv queues the request,
 * holding references to our buffers. That queue is bounded (`socket.maxQueuedDatagrams`,
 * `socket.maxQueuedOctets`) without asking libuv per datagram: `queued`/`octets` are upper
 * bounds of the queue (last measured values plus everything handed over since), and the queue is
 * measured only when a bound would pass a limit or reach HEADER_RING. With an empty queue that
 * is one measurement every HEADER_RING datagrams (test/lb/queue-check-bench.ts).
 */
class Upstream {
  readonly socket: dgram.Socket;
  templates: ProxyHeaderTemplate[] = [];
  /** Upper bounds of the send queue: datagrams and octets (header + datagram). */
  queued = 0;
  octets = 0;
  /** Backend index in the current state (for return-path attribution). */
  backend = -1;
  ready: Promise<void>;

  constructor(
    readonly address: ParsedEndpoint,
    bufferSizes: { recv: number; send: number },
    onReply: (msg: Buffer, rinfo: dgram.RemoteInfo, up: Upstream) => void,
    onError: (err: Error) => void,
    source: string | undefined,
  ) {
    this.socket = dgram.createSocket({ type: address.family === 4 ? 'udp4' : 'udp6' });
    // A backend may also answer to the address its datagrams come from; a connected socket
    // only accepts datagrams from that backend (the kernel checks the source).
    this.socket.on('message', (msg, rinfo) => onReply(msg, rinfo, this));
    this.ready = new Promise((resolve, reject) => {
      // Until connected, an error fails `ready` (bind: EMFILE, EADDRINUSE; connect: ENETUNREACH)
      // and is not a send error; it stays a listener so a second error cannot go unhandled.
      const early = (err: Error): void => reject(err);
      this.socket.on('error', early);
      // exclusive: in a cluster worker, a port-0 bind must not go through the primary's
      // shared handles (every worker needs its own connected socket per backend).
      const from = source ?? (address.family === 4 ? '0.0.0.0' : '::');
      this.socket.bind({ port: 0, address: from, exclusive: true }, () => {
        // node:dgram reports a failed connect to this callback, not as an 'error' event.
        this.socket.connect(address.port, address.address, (err?: Error) => {
          if (err) return reject(err);
          try {
            setBufferSizes(this.socket, bufferSizes); // throws ERR_SOCKET_BUFFER_SIZE
          } catch (e) {
            return reject(e as Error);
          }
          this.socket.off('error', early);
          this.socket.on('error', onError);
          resolve();
        });
      });
    });
  }

  /** Replaces the bounds by the queue's actual size. False when the socket cannot say (closed). */
  measure(): boolean {
    try {
      this.queued = this.socket.getSendQueueCount();
      this.octets = this.socket.getSendQueueSize();
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

function setBufferSizes(s: dgram.Socket, sizes: { recv: number; send: number }): void {
  // SO_RCVBUF/SO_SNDBUF: the kernel caps them at net.core.rmem_max / wmem_max.
  if (sizes.recv > 0) s.setRecvBufferSize(sizes.recv);
  if (sizes.send > 0) s.setSendBufferSize(sizes.send);
}

/**
 * Server mode (src/anycast): this process is the backend named `name`. VIP datagrams `decide()`
 * gives to it are handed to `deliver` (no PROXY header, no socket, no network hop) and no
 * upstream socket is opened for it; with `anycast.forward: false` every VIP datagram is.
 */
export interface LocalDelivery {
  /** The backend (`backends[].name`) this process is. */
  readonly name: string;
  /** Takes one VIP datagram; `vip` indexes `vipAddresses()`. A throw is caught and counted `dropped`. */
  deliver(msg: Buffer, rinfo: dgram.RemoteInfo, vip: number): void;
}

/** Options of `Forwarder.start`. */
export interface ForwarderOptions {
  config: LbConfig;
  counters: Counters;
  logger: Logger;
  health?: HealthView;
  /** Server mode: the local backend and where its datagrams go. */
  local?: LocalDelivery;
  /**
   * Source address of the upstream sockets (default: the wildcard, the kernel picks). The server
   * mode binds its own unicast address, the one its peers' allow lists hold.
   */
  upstreamSource?: string;
}

/**
 * A compiled routing plan: the router state and the upstream of every backend index
 * (undefined for the local backend of the server mode).
 */
interface Plan {
  readonly state: RouterState;
  readonly upstreams: readonly (Upstream | undefined)[];
}

/**
 * A config made ready by `Forwarder.prepare()` and not installed yet: its upstream sockets are
 * bound and connected. Holds the forwarder's apply lock until `commit()` or `discard()`.
 */
export interface PreparedConfig {
  readonly config: LbConfig;
  /** @internal */
  readonly upstreams: readonly (Upstream | undefined)[];
  /** @internal forwarding address -> upstream (new and reused ones) */
  readonly wanted: ReadonlyMap<string, Upstream>;
  /** @internal */
  readonly release: () => void;
  /** @internal true once committed or discarded */
  done: boolean;
}

/**
 * The forwarding process's sockets. `apply()` swaps in a new config and `setHealth()` a new
 * health view, atomically (one object reference), without touching the VIP sockets. Config
 * changes are applied one at a time (a lock held from `prepare()` to `commit()`/`discard()`),
 * so a plan never points at an upstream socket another change closed.
 */
export class Forwarder {
  private plan!: Plan;
  private health: HealthView;
  private config: LbConfig;
  private readonly vips: Vip[] = [];
  private returnSocket: dgram.Socket | undefined;
  private returnPort = 0;
  private readonly upstreamByAddress = new Map<string, Upstream>();
  private auth: ProxyAuth | undefined;
  private signForward = false;
  /** Send queue limits of every upstream (socket.maxQueuedDatagrams / maxQueuedOctets). */
  private maxQueued: number;
  private maxQueuedOctets: number;
  /** Tail of the apply lock: resolves when the last holder released it. */
  private lockTail: Promise<void> = Promise.resolve();
  // Return-path scratch
  private readonly rh = new ProxyHeader();
  /** Backend addresses the return port accepts from (`returnPath.allow`). */
  private allowed = new AddressSet([], 'returnPath.allow');
  private lastErrorLog = 0;
  private closed = false;
  /** Server mode: every VIP datagram goes to `local` (`anycast.forward: false`). */
  private localOnly = false;
  /** Server mode: the local backend's index in the running config, else -1. */
  private localIndex = -1;
  /** Destination octets checked by `sendFromVip`. */
  private readonly sendScratch = new Uint8Array(16);
  /** The Retry offload (docs/retry.md); `retry` is it while `retry.mode` is not off, else undefined. */
  private readonly offload: RetryOffload;
  private retry: RetryOffload | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly counters: Counters,
    private readonly logger: Logger,
    config: LbConfig,
    health: HealthView,
    private readonly local: LocalDelivery | undefined,
    private readonly upstreamSource: string | undefined,
  ) {
    this.config = config;
    this.health = health;
    this.maxQueued = config.socket.maxQueuedDatagrams;
    this.maxQueuedOctets = config.socket.maxQueuedOctets;
    this.offload = new RetryOffload(counters.retry, logger, (m, a, p, v) => this.sendToClient(m, a, p, v));
  }

  /** Binds the VIP sockets (and the return port) and compiles the first plan. */
  static async start(opts: ForwarderOptions): Promise<Forwarder> {
    const f = new Forwarder(
      opts.counters,
      opts.logger,
      opts.config,
      opts.health ?? new Map(),
      opts.local,
      opts.upstreamSource,
    );
    const sizes = { recv: opts.config.socket.recvBufferSize, send: opts.config.socket.sendBufferSize };
    const reusePort = opts.config.socket.reusePort;
    try {
      f.commit(await f.prepare(opts.config));
      for (const ep of opts.config.listen) {
        const socket = listenSocket(ep.family, reusePort);
        socket.on('error', (err) => f.onSocketError(err));
        const tuple = new FourTuple();
        tuple.family = ep.family;
        if (ep.family === 4) parseIPv4Into(ep.address, tuple.vip, 0);
        else parseIPv6Into(ep.address, tuple.vip, 0);
        const vip: Vip = { endpoint: ep, socket, tuple, port: ep.port };
        await bind(socket, ep.port, ep.address, reusePort, () => {
          // Runs in the 'listening' event, before any 'message' can be emitted.
          vip.port = socket.address().port;
          tuple.vipPort = vip.port;
          const index = f.vips.length;
          f.vips.push(vip);
          f.offload.addVip(tuple);
          for (const up of f.upstreamByAddress.values()) up.templates.push(f.template(vip));
          socket.on('message', (msg, rinfo) => f.onPacket(msg, rinfo, index));
        });
        setBufferSizes(socket, sizes);
      }
      const rp = opts.config.returnPath;
      if (rp.mode === 'via-lb' && rp.listen) {
        const s = listenSocket(rp.listen.family, reusePort);
        s.on('message', (msg, rinfo) => f.onReturn(msg, rinfo, undefined));
        s.on('error', (err) => f.onSocketError(err));
        f.returnSocket = s;
        await bind(s, rp.listen.port, rp.listen.address, reusePort);
        f.returnPort = s.address().port;
        setBufferSizes(s, sizes);
      }
    } catch (err) {
      f.close();
      throw err;
    }
    opts.logger.info(
      {
        vips: f.vips.map((v) => formatEndpoint({ ...v.endpoint, port: v.port })),
        returnPort: f.returnSocket ? f.returnPort : undefined,
        recvBufferSize: f.vips[0]?.socket.getRecvBufferSize(),
      },
      'forwarding',
    );
    return f;
  }

  /** The bound VIP endpoints (ports resolved when 0 was configured). */
  vipAddresses(): ParsedEndpoint[] {
    return this.vips.map((v) => ({ ...v.endpoint, port: v.port }));
  }

  /** The config the packet path runs with (the last one committed). */
  runningConfig(): LbConfig {
    return this.config;
  }

  /** The bound return port, if any. */
  returnAddress(): ParsedEndpoint | undefined {
    const l = this.config.returnPath.listen;
    return this.returnSocket && l ? { ...l, port: this.returnPort } : undefined;
  }

  /**
   * Per backend index of the running config: the local address and port of the connected socket
   * to it (undefined when it has none: an unusable address, or the socket is closed). The XDP
   * data path sends from there (src/lb/xdp-maps.ts), so the backend's replies reach that socket.
   */
  upstreamSources(): (ParsedEndpoint | undefined)[] {
    return this.plan.upstreams.map((up) => {
      if (!up) return undefined;
      try {
        const a = up.socket.address();
        return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 6 : 4 };
      } catch {
        return undefined;
      }
    });
  }

  /**
   * Installs a new validated config (hot reload) and, if given, the health view that goes with
   * it: both take effect in the one swap (the running plan is not rebuilt with a view meant for
   * the new backend list). VIP and return sockets are kept as they are. Calls are applied one
   * at a time, in call order. Rejects (running config kept) when an upstream socket cannot be
   * bound or connected.
   */
  async apply(config: LbConfig, health?: HealthView): Promise<void> {
    this.commit(await this.prepare(config), health);
  }

  /**
   * Phase one of a config change: waits for the apply lock, then binds and connects the upstream
   * sockets of backends not yet served. Nothing the packet path reads changes. The lock stays
   * held until `commit()` or `discard()` of the result. Rejects (lock released, new sockets
   * closed) when a socket cannot be bound or connected.
   */
  async prepare(config: LbConfig): Promise<PreparedConfig> {
    const release = await this.lock();
    try {
      if (this.closed) throw new Error('forwarder closed');
      const sizes = { recv: config.socket.recvBufferSize, send: config.socket.sendBufferSize };
      const wanted = new Map<string, Upstream>();
      const upstreams: (Upstream | undefined)[] = [];
      for (const b of config.backends) {
        if (b.name === this.local?.name) {
          upstreams.push(undefined);
          continue;
        }
        const key = formatEndpoint(b.address);
        let up = wanted.get(key) ?? this.upstreamByAddress.get(key);
        if (!up) {
          up = new Upstream(
            b.address,
            sizes,
            (m, r, u) => this.onReturn(m, r, u),
            (err) => this.onSocketError(err),
            this.upstreamSource,
          );
        }
        wanted.set(key, up);
        upstreams.push(up);
      }
      try {
        await Promise.all([...wanted.values()].map((u) => u.ready));
      } catch (err) {
        for (const [key, up] of wanted) if (this.upstreamByAddress.get(key) !== up) up.close();
        throw err;
      }
      return { config, upstreams, wanted, release, done: false };
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Phase two: installs a prepared config (and `health`, if given) in one swap, closes the
   * upstreams it no longer uses and releases the apply lock. Synchronous; never throws. A
   * second call, or a call after `discard()`, does nothing.
   */
  commit(p: PreparedConfig, health?: HealthView): void {
    if (p.done) return;
    p.done = true;
    try {
      if (this.closed) {
        this.closeUnused(p);
        return;
      }
      if (health) this.health = health;
      const { config, upstreams, wanted } = p;
      const keys = config.returnPath.hmacKeys.map((k) => Buffer.from(k, 'hex'));
      this.auth = keys.length > 0 ? createProxyAuth(keys, { expect: ProxyDirection.TO_CLIENT }) : undefined;
      this.signForward = this.auth !== undefined && config.returnPath.signForward;
      for (const up of wanted.values()) up.templates = this.vips.map((v) => this.template(v));
      upstreams.forEach((u, i) => {
        if (u) u.backend = i; // backend addresses are unique (config validation)
      });
      this.localOnly = this.local !== undefined && config.anycast?.forward === false;
      this.localIndex = upstreams.indexOf(undefined);
      // Allowed return sources (validated IP literals: the config refused anything else).
      this.allowed = new AddressSet(config.returnPath.allow, 'returnPath.allow');
      this.config = config;
      // The swap: one assignment, between two datagrams.
      this.plan = { state: buildRouterState(config, this.health, this.counters), upstreams };
      this.configureRetry(config);
      for (const [key, up] of this.upstreamByAddress) if (!wanted.has(key)) up.close();
      this.upstreamByAddress.clear();
      for (const [k, u] of wanted) this.upstreamByAddress.set(k, u);
    } finally {
      p.release();
    }
  }

  /**
   * Installs the `retry` section of a committed config: the packet path consults the offload
   * only while its mode is not off, and the load-triggered mode gets its quiet check every
   * RETRY_TICK_MS. Never throws (a config validateConfig accepted always builds).
   */
  private configureRetry(config: LbConfig): void {
    let on = false;
    try {
      on = this.offload.configure(config);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'retry offload not configured; running without it');
    }
    this.retry = on ? this.offload : undefined;
    const wantTick = on && config.retry?.mode === 'load';
    if (wantTick && this.retryTimer === undefined) {
      this.retryTimer = setInterval(() => this.offload.tick(), RETRY_TICK_MS);
      this.retryTimer.unref();
    } else if (!wantTick && this.retryTimer !== undefined) {
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
    }
  }

  /** Drops a prepared config: closes the sockets it opened, releases the apply lock. Idempotent. */
  discard(p: PreparedConfig): void {
    if (p.done) return;
    p.done = true;
    this.closeUnused(p);
    p.release();
  }

  private closeUnused(p: PreparedConfig): void {
    for (const [key, up] of p.wanted) if (this.upstreamByAddress.get(key) !== up) up.close();
  }

  /** Waits for the apply lock; resolves with its release function. */
  private lock(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const prev = this.lockTail;
    this.lockTail = prev.then(() => held);
    return prev.then(() => release);
  }

  /** Installs a new health view: rebuilds the fallback table, nothing else. */
  setHealth(view: HealthView): void {
    this.health = view;
    this.plan = { state: withHealth(this.plan.state, view), upstreams: this.plan.upstreams };
  }

  private template(v: Vip): ProxyHeaderTemplate {
    return new ProxyHeaderTemplate({
      fixedAddr: v.endpoint.address,
      fixedPort: v.port,
      fixedSide: 'dst',
      withAuth: this.signForward,
      ringSize: HEADER_RING,
    });
  }

  /** The per-datagram path. */
  private onPacket(msg: Buffer, rinfo: dgram.RemoteInfo, vipIndex: number): void {
    if (this.localOnly) {
      this.deliverLocal(msg, rinfo, vipIndex);
      return;
    }
    const vip = this.vips[vipIndex];
    const t = vip.tuple;
    // The peer of a VIP socket has the VIP's family (v6 sockets are ipv6Only).
    if (t.family === 4) parseIPv4Into(rinfo.address, t.client, 0);
    else parseIPv6Into(rinfo.address, t.client, 0);
    t.clientPort = rinfo.port;
    const plan = this.plan;
    const d = decide(msg, t, plan.state);
    const b = d.backend;
    const r = this.retry;
    if (r !== undefined && b >= 0 && r.intercept(msg, plan.state.header, d, t, rinfo.address, vipIndex)) {
      // Answered with a Retry or dropped by the offload (its own counters say which): not forwarded.
      d.backend = -1;
    } else if (b >= 0) {
      const up = plan.upstreams[b];
      if (up === undefined) {
        // Server mode, decided for this process (only the local backend has no upstream).
        if (!this.deliverLocal(msg, rinfo, vipIndex)) d.backend = -1;
      } else {
        const failed = this.forward(up, msg, rinfo, vipIndex);
        if (failed >= 0) {
          // Counted as decided, not as forwarded to the backend (its stats count what was sent).
          d.backend = -1;
          this.counters.sendErrors[failed]++;
          plan.state.backends[b].stats.packetsDropped++;
        } else if (this.local) this.counters.anycast[AnycastPath.PEER]++;
      }
    } else if (this.local) this.counters.anycast[AnycastPath.DROPPED]++;
    countDecision(plan.state, d, msg.length);
  }

  /**
   * Server mode: hands a VIP datagram to the local QUIC stack and counts it `local`, or
   * `dropped` when the handler throws (caught: nothing leaves a socket handler). False then.
   */
  private deliverLocal(msg: Buffer, rinfo: dgram.RemoteInfo, vipIndex: number): boolean {
    const c = this.counters.anycast;
    try {
      (this.local as LocalDelivery).deliver(msg, rinfo, vipIndex);
    } catch {
      c[AnycastPath.DROPPED]++;
      return false;
    }
    c[AnycastPath.LOCAL]++;
    return true;
  }

  /**
   * Sends `msg` to a client from VIP socket `vipIndex` (source = that VIP and port): the server
   * mode's replies to clients that reached it on the VIP. The same destination checks as the
   * return path (port 1..65535, `sendableDestination`); a refusal or a send that throws is
   * counted in `send_errors_total` and returns false. Counted as return-path traffic of the
   * local backend otherwise. Never throws, never allocates.
   */
  sendFromVip(msg: Uint8Array, address: string, port: number, vipIndex: number): boolean {
    if (!this.sendToClient(msg, address, port, vipIndex)) return false;
    const c = this.counters;
    c.returnPackets++;
    c.returnBytes += msg.length;
    const s = this.localIndex >= 0 ? this.plan.state.backends[this.localIndex]?.stats : undefined;
    if (s) {
      s.packetsOut++;
      s.bytesOut += msg.length;
    }
    return true;
  }

  /**
   * Sends `msg` from VIP socket `vipIndex` to a client after the return path's destination checks
   * (port 1..65535, `sendableDestination`); a refusal or a throw is counted in
   * `send_errors_total` and gives false. Counts nothing else. Never throws, never allocates.
   */
  private sendToClient(msg: Uint8Array, address: string, port: number, vipIndex: number): boolean {
    const c = this.counters;
    const vip = this.vips[vipIndex];
    if (vip === undefined || this.closed) {
      c.sendErrors[SendError.THROWN]++;
      return false;
    }
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) {
      c.sendErrors[SendError.BAD_PORT]++;
      return false;
    }
    const family = vip.tuple.family;
    const dst = this.sendScratch;
    const parsed =
      typeof address === 'string' && (family === 4 ? parseIPv4Into(address, dst, 0) : parseIPv6Into(address, dst, 0));
    if (!parsed || !sendableDestination(dst, family)) {
      c.sendErrors[SendError.BAD_ADDRESS]++;
      return false;
    }
    try {
      vip.socket.send(msg, port, address);
    } catch {
      c.sendErrors[SendError.THROWN]++;
      return false;
    }
    return true;
  }

  /**
   * The VIP socket replies to a client that addressed `vip` leave from: the one bound to it, else
   * (one-host tests give each server its own VIP literal; in a fleet every server binds the same
   * VIP) the first one of its family with its port, else of its family; -1 when none.
   */
  vipIndexOf(vip: { address: string; port: number }): number {
    const family = vip.address.includes(':') ? 6 : 4;
    let samePort = -1;
    let sameFamily = -1;
    for (let i = 0; i < this.vips.length; i++) {
      const v = this.vips[i];
      if (v.tuple.family !== family) continue;
      if (v.endpoint.address === vip.address && v.port === vip.port) return i;
      if (samePort < 0 && v.port === vip.port) samePort = i;
      if (sameFamily < 0) sameFamily = i;
    }
    return samePort >= 0 ? samePort : sameFamily;
  }

  /**
   * Hands [PROXY v2 header, datagram] to the upstream socket. Returns -1 when handed over, else
   * the `SendError` why not (queue full, or what should not happen: an address node:dgram
   * reported that does not parse, a send that throws). Never throws.
   */
  private forward(up: Upstream, msg: Buffer, rinfo: dgram.RemoteInfo, vipIndex: number): number {
    const tpl = up.templates[vipIndex];
    const octets = tpl.length + msg.length;
    if (up.queued >= HEADER_RING || up.queued + 1 > this.maxQueued || up.octets + octets > this.maxQueuedOctets) {
      if (!up.measure()) return SendError.THROWN;
      if (up.queued + 1 > this.maxQueued || up.octets + octets > this.maxQueuedOctets) return SendError.QUEUE_FULL;
    }
    let header: Buffer | undefined;
    if (up.queued >= HEADER_RING || this.signForward) {
      header = Buffer.allocUnsafe(tpl.length);
      if (tpl.write(header, 0, rinfo.address, rinfo.port) < 0) header = undefined;
      else if (this.signForward) signProxyHeader(header, msg, this.auth as ProxyAuth, ProxyDirection.TO_BACKEND);
    } else header = tpl.next(rinfo.address, rinfo.port);
    if (header === undefined) return SendError.BAD_ADDRESS;
    try {
      up.socket.send([header, msg]);
    } catch {
      return SendError.THROWN;
    }
    up.queued++;
    up.octets += octets;
    return -1;
  }

  /**
   * Return path: a backend's [PROXY v2 header (src = VIP, dst = client), QUIC datagram] goes out
   * of the VIP socket named by the header to the client. Accepted only from an allowed backend
   * address (or on that backend's connected socket) and, with keys, with a valid auth TLV; sent
   * only to a destination node:dgram and the network accept (`sendableDestination`): nothing a
   * backend or a forged header names can make the send throw.
   */
  private onReturn(msg: Buffer, rinfo: dgram.RemoteInfo, via: Upstream | undefined): void {
    const c = this.counters;
    if (via === undefined && !this.allowed.has(rinfo.address)) {
      c.returnRejects[ReturnReject.SOURCE]++;
      return;
    }
    const h = this.rh;
    const hl = parseProxyHeader(msg, h, this.auth);
    if (hl < 0 || h.command !== ProxyCommand.PROXY) {
      c.returnRejects[hl === PROXY_ERR_AUTH || hl === PROXY_ERR_STALE ? ReturnReject.HMAC : ReturnReject.HEADER]++;
      return;
    }
    if (h.keyIndex >= 0) c.returnAuth[h.keyIndex]++;
    const vip = this.vipFor(h);
    if (vip === undefined) {
      c.returnRejects[ReturnReject.VIP]++;
      return;
    }
    if (h.dstPort === 0) {
      c.sendErrors[SendError.BAD_PORT]++;
      return;
    }
    if (!sendableDestination(h.dstAddr, vip.tuple.family)) {
      c.sendErrors[SendError.BAD_ADDRESS]++;
      return;
    }
    try {
      vip.socket.send(msg.subarray(hl), h.dstPort, formatProxyAddress(h, 'dst'));
    } catch {
      c.sendErrors[SendError.THROWN]++;
      return;
    }
    const bytes = msg.length - hl;
    c.returnPackets++;
    c.returnBytes += bytes;
    const b = via !== undefined ? via.backend : this.backendOf(rinfo);
    if (b >= 0) {
      const s = this.plan.state.backends[b]?.stats;
      if (s) {
        s.packetsOut++;
        s.bytesOut += bytes;
      }
    }
  }

  private vipFor(h: ProxyHeader): Vip | undefined {
    for (const v of this.vips) {
      if (
        v.tuple.family === h.family &&
        v.port === h.srcPort &&
        sameBytes(v.tuple.vip, h.srcAddr, h.family === 4 ? 4 : 16)
      )
        return v;
    }
    return undefined;
  }

  private backendOf(rinfo: dgram.RemoteInfo): number {
    // Return port: attribute by exact forwarding address, else by address only. Small lists.
    const backends = this.config.backends;
    let byAddress = -1;
    for (let i = 0; i < backends.length; i++) {
      const a = backends[i].address;
      if (a.address === rinfo.address) {
        if (a.port === rinfo.port) return i;
        if (byAddress < 0) byAddress = i;
      }
    }
    return byAddress;
  }

  private onSocketError(err: Error): void {
    const c = this.counters.sendErrors;
    c[SendError.SOCKET]++;
    const now = Date.now();
    if (now - this.lastErrorLog > 10_000) {
      this.lastErrorLog = now;
      this.logger.warn(
        { err: err.message, socketErrors: c[SendError.SOCKET] },
        'socket errors (logged at most every 10 s)',
      );
    }
  }

  /** Closes every socket. A prepared config not committed yet is closed by its commit/discard. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) clearInterval(this.retryTimer);
    for (const v of this.vips) {
      try {
        v.socket.close();
      } catch {
        // not bound
      }
    }
    try {
      this.returnSocket?.close();
    } catch {
      // not bound
    }
    for (const u of this.upstreamByAddress.values()) u.close();
    this.upstreamByAddress.clear();
  }
}

/**
 * Whether a VIP socket of `family` may send to `addr` (4 or 16 octets). Refused: unspecified
 * addresses (Linux delivers 0.0.0.0 to the host itself), multicast and the reserved/broadcast
 * range 224.0.0.0/3 (RFC 5771, RFC 1112 §4, RFC 919), IPv6 multicast ff00::/8 (RFC 4291
 * §2.7), and IPv4-mapped addresses (a v6 VIP socket is v6-only: RFC 3493 §5.3).
 */
export function sendableDestination(addr: Uint8Array, family: 4 | 6): boolean {
  if (isUnspecifiedAddress(addr, family)) return false;
  if (family === 4) return addr[0] < 224;
  if (addr[0] === 0xff) return false;
  return !(addr[10] === 0xff && addr[11] === 0xff && isZero(addr, 0, 10));
}

/**
 * A VIP or return socket. With `reusePort` (`socket.reusePort`) it is bound with SO_REUSEPORT:
 * every socket of the same user bound to the same address and port joins one group and the
 * kernel spreads datagrams over the group by a hash of the 4-tuple (Linux socket(7)); as each LB
 * decides alone (draft-21 §3), any member forwards any datagram to the same backend.
 */
function listenSocket(family: 4 | 6, reusePort: boolean): dgram.Socket {
  return dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6, reusePort });
}

/**
 * Binds `socket`; rejects with the bind error. EADDRINUSE gets a message that says what to do
 * (its `code` is kept: the CLI prints it and exits 2).
 */
function bind(
  socket: dgram.Socket,
  port: number,
  address: string,
  reusePort: boolean,
  onListening?: () => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      if (err.code !== 'EADDRINUSE') return reject(err);
      const where = formatEndpoint({ address, port });
      const hint = reusePort
        ? 'the socket holding it was bound without SO_REUSEPORT or by another user'
        : 'another process holds it; for a restart with no gap give every LB on it socket.reusePort: true';
      reject(
        Object.assign(new Error(`cannot bind ${where}: address in use (${hint})`, { cause: err }), { code: err.code }),
      );
    };
    socket.once('error', onError);
    socket.bind({ port, address }, () => {
      socket.off('error', onError);
      onListening?.();
      resolve();
    });
  });
}

function sameBytes(a: Uint8Array, b: Uint8Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}
