// The socket a backend QUIC stack runs on behind the quic-lb load balancer: one logical
// datagram socket over
//   - LB-encapsulated datagrams (PROXY v2 header + the client's QUIC datagram), presented with
//     the real client address, replies going back through the LB's return port with a header
//     (via-lb) or straight from a socket bound to the VIP (direct / DSR);
//   - plain QUIC datagrams to the backend's own unicast address(es), i.e. clients that moved to
//     the preferred_address, answered from the socket they arrived on;
//   - the LB's health probe (answered "up", or "draining" once drain() was called);
//   - server mode (src/anycast): VIP datagrams a co-located forwarder decided are this server's
//     (`receiveFromVip`), answered from the forwarder's VIP socket (returnPath mode 'vip').
//
// Every handler faces an attacker: encapsulated datagrams and probes are taken only from the
// configured LB addresses (and/or verified by HMAC), every send is checked and guarded so that
// nothing throws out of a 'message' handler, and every per-source structure is bounded.
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIPv6 } from 'node:net';
import {
  AddressSet,
  type QuicWireError,
  answerHealthProbe,
  createProxyAuth,
  formatProxyAddress,
  isHealthProbeRequest,
  parseIPv4Into,
  parseIPv6Into,
  parseProxyHeader,
  proxyHeaderLength,
  PROXY_AUTH_MIN_KEY_LENGTH,
  PROXY_ERR_AUTH,
  PROXY_ERR_STALE,
  ProxyDirection,
  ProxyHeader,
  PROXY_V2_SIGNATURE,
  signProxyHeader,
  writeProxyHeader,
  type Endpoint,
  type ProxyAuth,
} from '../wire/index.js';
import { BackendError } from './errors.js';

/**
 * The local side of a path, as handed to `on('message')` listeners and taken back by `send`.
 * Compare by identity: the adapter creates one object per socket / per (LB, VIP) pair.
 */
export interface BackendPath {
  /** 'lb' (encapsulated via a load balancer) or 'direct' (the backend's own address). */
  readonly kind: 'lb' | 'direct';
  /** For logs: `lb:<vip>` or `direct:<local address>:<port>`. */
  readonly name: string;
  /** The address the client sent to: the VIP for 'lb', the local unicast address for 'direct'. */
  readonly local: Endpoint;
}

interface LbPath extends BackendPath {
  readonly kind: 'lb';
  /** Mode 'vip': the sender's VIP socket replies leave from; -2 until looked up, -1 none. */
  vipIndex: number;
  /** The LB socket that delivered the datagrams (replies go back to it unless a return port is set). */
  readonly lbAddress: string;
  readonly lbPort: number;
  /** VIP as octets, written as the source address of return headers. */
  readonly vipBytes: Uint8Array;
  /** Address family of the VIP and so of the client (the header's family). */
  readonly family: 4 | 6;
}

interface DirectPath extends BackendPath {
  readonly kind: 'direct';
  readonly socket: dgram.Socket;
  /** Family of `socket` (udp4 / udp6): what its send() takes. */
  readonly family: 4 | 6;
}

/**
 * Server mode (src/anycast): the VIP sockets belong to a co-located forwarder (src/lb
 * `Forwarder` is one); replies to clients that reached this server on the VIP leave through it,
 * so their source is the VIP, without a second socket bound to the VIP.
 */
export interface VipSender {
  /** The bound VIP endpoints, by index. */
  vipAddresses(): Endpoint[];
  /** The VIP socket (an index) replies to a client that addressed `vip` leave from; -1 for none. */
  vipIndexOf(vip: Endpoint): number;
  /** Sends from VIP socket `index`; false when refused or failed (the sender counts why). Never throws. */
  sendFromVip(msg: Uint8Array, address: string, port: number, index: number): boolean;
}

export interface BackendSocketOptions {
  /**
   * The backend's forwarding address (the `address` of this backend in the LB config): receives
   * LB-encapsulated datagrams, health probes and, when it is also the preferred address, direct
   * QUIC traffic. Port 0 picks a free port (read it from `addresses()` after `bind()`).
   */
  listen: Endpoint;
  /** More unicast addresses for direct traffic only (e.g. an IPv6 preferred address). */
  unicast?: Endpoint[];
  /**
   * How replies to LB-delivered clients leave (default `{ mode: 'via-lb' }`):
   * - `{ mode: 'via-lb' }`: back to the LB socket that delivered the client's datagram, with a
   *   PROXY v2 header src = VIP, dst = client; the LB sends the payload from the VIP. With
   *   `address`/`port`: to that return port instead (`returnPath.listen` in the LB config);
   * - `{ mode: 'direct', vip }`: from a socket bound to the VIP (the VIP must be configured on
   *   this host, e.g. on `lo`; the LB never sees the replies);
   * - `{ mode: 'vip', sender }`: server mode: from the co-located forwarder's VIP socket for the
   *   VIP the client addressed (`VipSender`); datagrams that forwarder decided are local come in
   *   through `receiveFromVip`.
   */
  returnPath?:
    | { mode: 'via-lb'; address?: string; port?: number }
    | { mode: 'direct'; vip: Endpoint }
    | { mode: 'vip'; sender: VipSender };
  /**
   * Shared HMAC keys (each >= 16 octets; the LB's `returnPath.hmacKeys`): the first signs return
   * headers, every one verifies forwarded headers (with `signForward`), so keys rotate without
   * loss: add the new key second, then first, then drop the old one (`setKeys`).
   */
  hmacKeys?: Uint8Array[];
  /** Shorthand for `hmacKeys: [hmacKey]` (give one or the other). */
  hmacKey?: Uint8Array;
  /**
   * The LB signs forwarded headers too (`returnPath.signForward`): require a valid auth TLV on
   * every encapsulated datagram. Needs `hmacKeys`.
   */
  signForward?: boolean;
  /**
   * IP literals of the load balancers' source addresses: only they may deliver encapsulated
   * datagrams and health probes (others are dropped and counted as `dropped.source`). Compared
   * as octets, so an IPv4 LB matches on a dual-stack `[::]` socket (`::ffff:a.b.c.d`). Required
   * unless `hmacKeys` + `signForward` authenticate the LB, or `insecureAnyLb` is set.
   */
  allowLbAddresses?: string[];
  /**
   * Accept encapsulated datagrams from any source without HMAC: anyone reaching the port can
   * then make this backend send to any address (a reflector). Tests and demos only; `bind()`
   * emits a 'warning'.
   */
  insecureAnyLb?: boolean;
  /**
   * Remember each client's last path so `send` works without the `path` argument (one string
   * key per datagram). QUIC stacks that hand the path back to `send` leave this off.
   */
  trackPaths?: boolean;
  /** Bound of the `trackPaths` map (default 65536): the oldest entry is evicted (`stats.trackedPathsEvicted`). */
  maxTrackedPaths?: number;
  /**
   * Health probes answered per second, at most, when no `allowLbAddresses` vouches for their
   * source (LBs authenticated by HMAC only, or `insecureAnyLb`: probes carry no MAC). Default
   * 100; beyond it probes are dropped (`dropped.probe_rate`).
   */
  probeReplyRate?: number;
  /** Clock of the probe rate limit, ms (tests). */
  now?: () => number;
}

/** Datagrams dropped on arrival, by reason. */
export interface BackendDropCounters {
  /** PROXY header or probe from a source outside `allowLbAddresses`. */
  source: number;
  /** Malformed PROXY header (or a LOCAL one that is not a probe). */
  header: number;
  /** `signForward`: auth TLV missing, wrong MAC under every key, or outside the time window. */
  auth: number;
  /** Probe from a source no allow list vouches for, above `probeReplyRate`. */
  probe_rate: number;
}

/** Sends refused or failed, by reason; the datagram was not sent. */
export interface BackendSendErrorCounters {
  /** Port not an integer in 1..65535 (node:dgram would throw ERR_SOCKET_BAD_PORT). */
  bad_port: number;
  /** Not an IP literal of the sending socket's (or the VIP's) family, or unspecified (0.0.0.0, ::). */
  bad_address: number;
  /** node:dgram threw or reported an error for the send. */
  socket: number;
}

/** Counters (plain numbers, read them at scrape time). */
export interface BackendSocketStats {
  /** Encapsulated datagrams accepted (in server mode: from peers). */
  lbDatagrams: number;
  directDatagrams: number;
  /** Server mode: VIP datagrams the co-located forwarder handed over (`receiveFromVip`). */
  vipDatagrams: number;
  healthProbesAnswered: number;
  dropped: BackendDropCounters;
  sentViaLb: number;
  sentDirect: number;
  /** Server mode: replies sent from the forwarder's VIP socket. */
  sentVip: number;
  sendErrors: BackendSendErrorCounters;
  /** Entries evicted from the `trackPaths` map at its bound. */
  trackedPathsEvicted: number;
  /** 'error' events of the sockets (also re-emitted as 'error' when someone listens). */
  socketErrors: number;
  /** 'message' listeners that threw (the error is dropped: nothing leaves a socket handler). */
  listenerErrors: number;
}

/** Paths through LBs kept, one per (VIP, LB socket); the oldest is dropped beyond it. */
const MAX_LB_PATHS = 64;
const DEFAULT_MAX_TRACKED_PATHS = 65_536;
const DEFAULT_PROBE_REPLY_RATE = 100;

/** `a.b.c.d:port` or `[v6]:port`. */
const hostPort = (address: string, port: number): string =>
  address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
const SIG0 = PROXY_V2_SIGNATURE[0];

const SEND_OK = 0;
const SEND_BAD_PORT = 1;
const SEND_BAD_ADDRESS = 2;

/**
 * Whether node:dgram can send to (address, port) from a socket of `family`, checked the way it
 * would refuse (synchronously, by throwing) and a little stricter: the port an integer 1..65535,
 * the address an IP literal of that family (an IPv6 socket takes IPv4 as `::ffff:a.b.c.d`), not
 * unspecified. The address octets are left in `scratch`. Never throws, never allocates.
 */
function destinationProblem(address: string, port: number, family: 4 | 6, scratch: Uint8Array): number {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff) return SEND_BAD_PORT;
  if (typeof address !== 'string') return SEND_BAD_ADDRESS;
  if (family === 4) {
    if (!parseIPv4Into(address, scratch, 0)) return SEND_BAD_ADDRESS;
    return (scratch[0] | scratch[1] | scratch[2] | scratch[3]) === 0 ? SEND_BAD_ADDRESS : SEND_OK;
  }
  if (!parseIPv6Into(address, scratch, 0)) return SEND_BAD_ADDRESS;
  let any = 0;
  for (let i = 0; i < 16; i++) if (i < 10 || i > 11) any |= scratch[i]; // also ::ffff:0.0.0.0
  return any === 0 ? SEND_BAD_ADDRESS : SEND_OK;
}

/** The keys of `opts` (`hmacKeys`, or `[hmacKey]`), checked. Throws BackendError ERR_BACKEND_HMAC_KEY. */
function keysOf(keys: readonly Uint8Array[] | undefined, field: string): Uint8Array[] {
  if (!Array.isArray(keys) || keys.length === 0)
    throw new BackendError('ERR_BACKEND_HMAC_KEY', field, 'expected a non-empty list of keys');
  keys.forEach((k, i) => {
    if (!(k instanceof Uint8Array) || k.length < PROXY_AUTH_MIN_KEY_LENGTH) {
      throw new BackendError(
        'ERR_BACKEND_HMAC_KEY',
        `${field}[${i}]`,
        `must be at least ${PROXY_AUTH_MIN_KEY_LENGTH} octets`,
      );
    }
  });
  return [...keys];
}

/**
 * Throws BackendError for a return path that could never work: an unknown mode
 * (ERR_BACKEND_RETURN_MODE), a return port with only one of address / port, or one the listen
 * socket (of `listenFamily`) cannot send to (ERR_BACKEND_ADDRESS): refused here rather than
 * counted on every reply.
 */
function checkReturnPath(rp: BackendSocketOptions['returnPath'], listenFamily: 4 | 6): void {
  const mode: unknown = rp?.mode ?? 'via-lb';
  if (mode !== 'via-lb' && mode !== 'direct' && mode !== 'vip') {
    throw new BackendError('ERR_BACKEND_RETURN_MODE', 'returnPath.mode', `unknown return mode ${String(mode)}`);
  }
  if (rp?.mode === 'vip' && typeof rp.sender?.sendFromVip !== 'function')
    throw new BackendError('ERR_BACKEND_RETURN_MODE', 'returnPath.sender', "mode 'vip' needs a VipSender");
  if (rp?.mode !== 'via-lb') return;
  if ((rp.address === undefined) !== (rp.port === undefined)) {
    throw new BackendError(
      'ERR_BACKEND_ADDRESS',
      'returnPath.port',
      'give both address and port of the return port, or neither',
    );
  }
  if (
    rp.address !== undefined &&
    destinationProblem(rp.address, rp.port as number, listenFamily, new Uint8Array(16)) !== SEND_OK
  ) {
    throw new BackendError(
      'ERR_BACKEND_ADDRESS',
      'returnPath.address',
      `expected an IP literal of the listen address's family (IPv4 as ::ffff:a.b.c.d on an IPv6 socket) and a port 1..65535, got ${String(rp.address)}:${String(rp.port)}`,
    );
  }
}

function positiveInteger(v: number | undefined, dflt: number, field: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1)
    throw new BackendError('ERR_BACKEND_RANGE', field, `expected a positive integer, got ${String(v)}`);
  return v;
}

/**
 * One logical socket for a backend QUIC stack. Events: 'message' (msg, rinfo, path) with the
 * real client address; 'warning' (message: string) at bind() when `insecureAnyLb` is in
 * effect; 'error' (socket errors, only re-emitted when someone listens). `send(msg, address,
 * port, path?)` answers on the right path and never throws for a bad destination (counted).
 *
 * Throws BackendError at construction: ERR_BACKEND_LB_UNAUTHENTICATED (neither
 * `allowLbAddresses`, nor `hmacKeys` + `signForward`, nor `insecureAnyLb`),
 * ERR_BACKEND_HMAC_KEY, ERR_BACKEND_ADDRESS, ERR_BACKEND_RETURN_MODE, ERR_BACKEND_RANGE.
 */
export class BackendSocket extends EventEmitter {
  readonly stats: BackendSocketStats = {
    lbDatagrams: 0,
    directDatagrams: 0,
    vipDatagrams: 0,
    healthProbesAnswered: 0,
    dropped: { source: 0, header: 0, auth: 0, probe_rate: 0 },
    sentViaLb: 0,
    sentDirect: 0,
    sentVip: 0,
    sendErrors: { bad_port: 0, bad_address: 0, socket: 0 },
    trackedPathsEvicted: 0,
    socketErrors: 0,
    listenerErrors: 0,
  };
  private readonly listenSocket: dgram.Socket;
  private readonly listenFamily: 4 | 6;
  private readonly directPaths: DirectPath[] = [];
  private readonly lbPaths: LbPath[] = [];
  /** Server mode: the path of each VIP of the sender, by its index (made on first use). */
  private readonly vipPaths: LbPath[] = [];
  private readonly header = new ProxyHeader();
  /** Signs return headers (the first key); undefined without keys. */
  private authOut?: ProxyAuth;
  /** Verify forwarded headers (every key) when signForward; empty otherwise. */
  private authIn: readonly ProxyAuth[] = [];
  /** LBs allowed by address; undefined = any source (HMAC-only or insecureAnyLb). */
  private lbSources?: AddressSet;
  private vipSocket?: dgram.Socket;
  private vipFamily: 4 | 6 = 4;
  private readonly lastPath = new Map<string, BackendPath>();
  private readonly maxTrackedPaths: number;
  private readonly probeReplyRate: number;
  private probeTokens: number;
  private probeRefillAt: number;
  private readonly now: () => number;
  private draining = false;
  /** Client address octets of a via-LB reply (header dst). */
  private readonly clientScratch = new Uint8Array(16);
  /** Destination octets checked before each send. */
  private readonly destScratch = new Uint8Array(16);
  /** Completion of every send (one function, no closure per datagram): counts async failures. */
  private readonly onSent = (err: Error | null): void => {
    if (err) this.stats.sendErrors.socket++;
  };

  constructor(private readonly opts: BackendSocketOptions) {
    super();
    if (opts.hmacKey !== undefined && opts.hmacKeys !== undefined)
      throw new BackendError('ERR_BACKEND_HMAC_KEY', 'hmacKey', 'give hmacKey or hmacKeys, not both');
    const keys = opts.hmacKeys ?? (opts.hmacKey !== undefined ? [opts.hmacKey] : undefined);
    if (opts.signForward && keys === undefined)
      throw new BackendError('ERR_BACKEND_HMAC_KEY', 'hmacKeys', 'signForward needs hmacKeys');
    if (keys !== undefined) this.setKeys(keys, opts.hmacKeys !== undefined ? 'hmacKeys' : 'hmacKey');
    const allow = opts.allowLbAddresses;
    if (allow !== undefined && allow.length > 0) this.lbSources = addressSet(allow, 'allowLbAddresses');
    if (this.lbSources === undefined && !opts.signForward && opts.insecureAnyLb !== true) {
      throw new BackendError(
        'ERR_BACKEND_LB_UNAUTHENTICATED',
        'allowLbAddresses',
        'nothing authenticates the load balancer: set allowLbAddresses (its source addresses), or hmacKeys with signForward, or insecureAnyLb: true (tests only)',
      );
    }
    this.listenFamily = isIPv6(opts.listen.address) ? 6 : 4;
    checkReturnPath(opts.returnPath, this.listenFamily);
    this.maxTrackedPaths = positiveInteger(opts.maxTrackedPaths, DEFAULT_MAX_TRACKED_PATHS, 'maxTrackedPaths');
    this.probeReplyRate = positiveInteger(opts.probeReplyRate, DEFAULT_PROBE_REPLY_RATE, 'probeReplyRate');
    this.now = opts.now ?? Date.now;
    this.probeTokens = this.probeReplyRate;
    this.probeRefillAt = this.now();
    this.listenSocket = this.createSocket(opts.listen);
  }

  /**
   * Replaces the HMAC keys at run time (key rotation): `keys[0]` signs return headers from now
   * on, every key verifies forwarded headers (with `signForward`). Throws BackendError
   * ERR_BACKEND_HMAC_KEY (empty list, a key under 16 octets) and then keeps the running keys.
   */
  setKeys(keys: readonly Uint8Array[], field = 'hmacKeys'): void {
    const checked = keysOf(keys, field);
    const out = createProxyAuth(checked[0]);
    const inbound = this.opts.signForward
      ? checked.map((k) => createProxyAuth(k, { expect: ProxyDirection.TO_BACKEND }))
      : [];
    this.authOut = out;
    this.authIn = inbound;
  }

  /**
   * Replaces `allowLbAddresses` at run time (the server mode's peer set changed on reload).
   * Throws BackendError ERR_BACKEND_ADDRESS (not IP literals) or ERR_BACKEND_LB_UNAUTHENTICATED
   * (an empty list when nothing else authenticates the LBs) and then keeps the running list.
   */
  setAllowedLbAddresses(addresses: readonly string[]): void {
    const next = addresses.length > 0 ? addressSet(addresses, 'allowLbAddresses') : undefined;
    if (next === undefined && !this.opts.signForward && this.opts.insecureAnyLb !== true)
      throw new BackendError(
        'ERR_BACKEND_LB_UNAUTHENTICATED',
        'allowLbAddresses',
        'an empty list authenticates nothing',
      );
    this.lbSources = next;
  }

  /** Entries in the `trackPaths` map now (at most `maxTrackedPaths`). */
  get trackedPaths(): number {
    return this.lastPath.size;
  }

  private createSocket(ep: Endpoint): dgram.Socket {
    const s = dgram.createSocket({
      type: isIPv6(ep.address) ? 'udp6' : 'udp4',
      recvBufferSize: 4 << 20,
      sendBufferSize: 4 << 20,
    });
    // Always a listener: an unhandled 'error' would throw out of the event loop.
    s.on('error', (err) => {
      this.stats.socketErrors++;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    return s;
  }

  /** Binds every socket; resolves once all listen. Emits 'warning' when `insecureAnyLb` is in effect. */
  async bind(): Promise<void> {
    const bindOne = (s: dgram.Socket, ep: Endpoint): Promise<void> =>
      new Promise((resolve, reject) => {
        s.once('error', reject);
        s.bind(ep.port, ep.address, () => {
          s.off('error', reject);
          resolve();
        });
      });
    await bindOne(this.listenSocket, this.opts.listen);
    const main = this.addDirectPath(this.listenSocket, this.listenFamily);
    this.listenSocket.on('message', (msg, rinfo) => this.onListenMessage(msg, rinfo, main));
    for (const ep of this.opts.unicast ?? []) {
      const s = this.createSocket(ep);
      await bindOne(s, ep);
      const p = this.addDirectPath(s, isIPv6(ep.address) ? 6 : 4);
      s.on('message', (msg, rinfo) => this.deliverDirect(msg, rinfo, p));
    }
    if (this.opts.returnPath?.mode === 'direct') {
      const vip = this.opts.returnPath.vip;
      this.vipFamily = isIPv6(vip.address) ? 6 : 4;
      this.vipSocket = this.createSocket(vip);
      await bindOne(this.vipSocket, vip);
      // Datagrams sent straight to the VIP on this host are answered from the VIP too.
      const a = this.vipSocket.address();
      const vipPath: DirectPath = {
        kind: 'direct',
        name: `vip:${hostPort(a.address, a.port)}`,
        local: { address: a.address, port: a.port },
        socket: this.vipSocket,
        family: this.vipFamily,
      };
      this.vipSocket.on('message', (msg, rinfo) => this.onListenMessage(msg, rinfo, vipPath));
    }
    if (this.lbSources === undefined && this.authIn.length === 0) {
      this.emit(
        'warning',
        'insecureAnyLb: encapsulated datagrams are accepted from any source without authentication; anyone who reaches this port can make the backend send to any address. Set allowLbAddresses, or hmacKeys with signForward.',
      );
    }
  }

  private addDirectPath(s: dgram.Socket, family: 4 | 6): DirectPath {
    const a = s.address();
    const p: DirectPath = {
      kind: 'direct',
      name: `direct:${hostPort(a.address, a.port)}`,
      local: { address: a.address, port: a.port },
      socket: s,
      family,
    };
    this.directPaths.push(p);
    return p;
  }

  /** Bound unicast addresses (the listen socket first). */
  addresses(): Endpoint[] {
    return this.directPaths.map((p) => p.local);
  }

  /** Answer health probes "draining" from now on (the LB takes this backend out of the fallback table). */
  drain(draining = true): void {
    this.draining = draining;
  }

  private onListenMessage(msg: Buffer, rinfo: dgram.RemoteInfo, direct: DirectPath): void {
    // QUIC v1 packets always have the fixed bit 0x40 set, so a first octet of 0x0d (the PROXY
    // v2 signature) can only be a PROXY header or a health probe.
    if (msg.length === 0 || msg[0] !== SIG0) {
      this.deliverDirect(msg, rinfo, direct);
      return;
    }
    if (this.lbSources !== undefined && !this.lbSources.has(rinfo.address)) {
      this.stats.dropped.source++;
      return;
    }
    if (isHealthProbeRequest(msg)) {
      this.answerProbe(msg, rinfo, direct);
      return;
    }
    const h = this.header;
    const hl = this.parseHeader(msg);
    if (hl < 0 || h.family === 0) {
      if (hl === PROXY_ERR_AUTH || hl === PROXY_ERR_STALE) this.stats.dropped.auth++;
      else this.stats.dropped.header++;
      return;
    }
    this.stats.lbDatagrams++;
    const path = this.lbPathFor(h, rinfo);
    const client = formatProxyAddress(h, 'src');
    if (this.opts.trackPaths) this.track(`${client}|${h.srcPort}`, path);
    this.deliver(msg.subarray(hl), { address: client, port: h.srcPort }, path);
  }

  /** Parses the PROXY header of `msg` into `this.header`, trying every inbound key (signForward). */
  private parseHeader(msg: Buffer): number {
    const keys = this.authIn;
    if (keys.length === 0) return parseProxyHeader(msg, this.header);
    let r = PROXY_ERR_AUTH;
    for (let i = 0; i < keys.length && r === PROXY_ERR_AUTH; i++) r = parseProxyHeader(msg, this.header, keys[i]);
    return r;
  }

  /** Answers a probe request with a reply of the same 28 octets (never more than was sent). */
  private answerProbe(msg: Buffer, rinfo: dgram.RemoteInfo, direct: DirectPath): void {
    if (this.lbSources === undefined && !this.takeProbeToken()) {
      this.stats.dropped.probe_rate++;
      return;
    }
    const reply = answerHealthProbe(msg, this.draining);
    if (reply && this.sendTo(direct.socket, direct.family, reply, rinfo.port, rinfo.address))
      this.stats.healthProbesAnswered++;
  }

  /** Token bucket of probe replies to unvouched sources: `probeReplyRate` per second, bursts of as many. */
  private takeProbeToken(): boolean {
    const now = this.now();
    const rate = this.probeReplyRate;
    this.probeTokens = Math.min(rate, this.probeTokens + (Math.max(0, now - this.probeRefillAt) * rate) / 1000);
    this.probeRefillAt = now;
    if (this.probeTokens < 1) return false;
    this.probeTokens--;
    return true;
  }

  /**
   * Server mode: takes a VIP datagram the co-located forwarder decided is this server's (no
   * PROXY header: `rinfo` is the client, `vipIndex` the sender's VIP socket it arrived on) and
   * emits it on that VIP's path; replies on it leave from that VIP socket. Ignored (counted in
   * `dropped.header`) without returnPath mode 'vip'. Never throws (listeners excepted).
   */
  receiveFromVip(msg: Buffer, rinfo: { address: string; port: number }, vipIndex: number): void {
    const path = this.vipPaths[vipIndex] ?? this.makeVipPath(vipIndex);
    if (path === undefined) {
      this.stats.dropped.header++;
      return;
    }
    this.stats.vipDatagrams++;
    if (this.opts.trackPaths) this.track(`${rinfo.address}|${rinfo.port}`, path);
    this.deliver(msg, { address: rinfo.address, port: rinfo.port }, path);
  }

  private makeVipPath(vipIndex: number): LbPath | undefined {
    const rp = this.opts.returnPath;
    if (rp?.mode !== 'vip') return undefined;
    const vip = rp.sender.vipAddresses()[vipIndex];
    if (vip === undefined) return undefined;
    const family = isIPv6(vip.address) ? 6 : 4;
    const vipBytes = new Uint8Array(family === 4 ? 4 : 16);
    if (family === 4) parseIPv4Into(vip.address, vipBytes, 0);
    else parseIPv6Into(vip.address, vipBytes, 0);
    const p: LbPath = {
      kind: 'lb',
      name: `vip:${hostPort(vip.address, vip.port)}`,
      local: { address: vip.address, port: vip.port },
      lbAddress: '',
      lbPort: 0,
      vipBytes,
      family,
      vipIndex,
    };
    this.vipPaths[vipIndex] = p;
    return p;
  }

  private deliverDirect(msg: Buffer, rinfo: dgram.RemoteInfo, path: DirectPath): void {
    this.stats.directDatagrams++;
    if (this.opts.trackPaths) this.track(`${rinfo.address}|${rinfo.port}`, path);
    this.deliver(msg, { address: rinfo.address, port: rinfo.port }, path);
  }

  /**
   * Emits 'message'. A listener that throws is counted (`stats.listenerErrors`) and its error
   * dropped: nothing leaves a socket handler (an exception there would end the process).
   */
  private deliver(msg: Buffer, rinfo: { address: string; port: number }, path: BackendPath): void {
    try {
      this.emit('message', msg, rinfo, path);
    } catch {
      this.stats.listenerErrors++;
    }
  }

  /** Remembers `key`'s path; at `maxTrackedPaths` the oldest entry (first inserted) goes. */
  private track(key: string, path: BackendPath): void {
    const m = this.lastPath;
    if (m.size >= this.maxTrackedPaths && !m.has(key)) {
      const oldest = m.keys().next();
      if (!oldest.done) m.delete(oldest.value);
      this.stats.trackedPathsEvicted++;
    }
    m.set(key, path);
  }

  /** The LB path for the VIP in `h` (one object per VIP and LB socket; linear scan, no allocation when known). */
  private lbPathFor(h: ProxyHeader, lb: dgram.RemoteInfo): LbPath {
    const n = h.family === 4 ? 4 : 16;
    for (const p of this.lbPaths) {
      if (p.local.port !== h.dstPort || p.vipBytes.length !== n || p.lbPort !== lb.port || p.lbAddress !== lb.address)
        continue;
      let same = true;
      for (let i = 0; i < n; i++) if (p.vipBytes[i] !== h.dstAddr[i]) same = false;
      if (same) return p;
    }
    const vip = formatProxyAddress(h, 'dst');
    const p: LbPath = {
      kind: 'lb',
      name: `lb:${hostPort(vip, h.dstPort)}`,
      lbAddress: lb.address,
      lbPort: lb.port,
      local: { address: vip, port: h.dstPort },
      vipBytes: h.dstAddr.slice(0, n),
      family: n === 4 ? 4 : 6,
      vipIndex: -2,
    };
    if (this.lbPaths.length >= MAX_LB_PATHS) this.lbPaths.shift();
    this.lbPaths.push(p);
    return p;
  }

  /**
   * Sends `msg` to the client at address:port. `path` (the one the client's datagram arrived
   * on) picks the way out: through the LB's return port, from the VIP (direct mode), or from
   * the unicast socket. Without `path`, the path of the client's last datagram is used (one
   * map lookup; needs `trackPaths`), falling back to the listen socket. Never throws: a
   * destination node:dgram would refuse (port outside 1..65535, not an IP literal of the
   * path's family, unspecified) or a failing send is counted in `stats.sendErrors` and nothing
   * is sent.
   */
  send(msg: Uint8Array, address: string, port: number, path?: BackendPath): void {
    const p = path ?? this.lastPath.get(`${address}|${port}`) ?? this.directPaths[0];
    if (!p) return;
    if (p.kind === 'direct') {
      const d = p as DirectPath;
      if (this.sendTo(d.socket, d.family, msg, port, address)) this.stats.sentDirect++;
      return;
    }
    const lb = p as LbPath;
    const rp = this.opts.returnPath;
    if (rp?.mode === 'vip') {
      // The client addressed the VIP (here or at the peer that forwarded it): answer from it.
      if (lb.vipIndex === -2) lb.vipIndex = rp.sender.vipIndexOf(lb.local);
      if (lb.vipIndex < 0) this.stats.sendErrors.bad_address++;
      else if (rp.sender.sendFromVip(msg, address, port, lb.vipIndex)) this.stats.sentVip++;
      return;
    }
    if (rp?.mode === 'direct') {
      if (this.vipSocket && this.sendTo(this.vipSocket, this.vipFamily, msg, port, address)) this.stats.sentDirect++;
      return;
    }
    // The client goes into the header for the LB to send to: the same checks as a direct send.
    const dst = this.clientScratch;
    const bad = destinationProblem(address, port, lb.family, dst);
    if (bad !== SEND_OK) {
      this.countSendError(bad);
      return;
    }
    // A new header per datagram: dgram may queue the send and keeps the buffers until then.
    const withAuth = this.authOut !== undefined;
    const hdr = Buffer.allocUnsafe(proxyHeaderLength(lb.family, withAuth));
    writeProxyHeader(hdr, 0, lb.vipBytes, lb.local.port, dst.subarray(0, lb.vipBytes.length), port, withAuth);
    if (this.authOut) signProxyHeader(hdr, msg, this.authOut, ProxyDirection.TO_CLIENT);
    const toReturnPort = rp?.port !== undefined && rp.address !== undefined;
    const ok = toReturnPort
      ? this.sendTo(this.listenSocket, this.listenFamily, [hdr, msg], rp.port as number, rp.address as string)
      : this.sendTo(this.listenSocket, this.listenFamily, [hdr, msg], lb.lbPort, lb.lbAddress);
    if (ok) this.stats.sentViaLb++;
  }

  /** Checks the destination, then sends; false (counted) when refused or when dgram throws. */
  private sendTo(
    s: dgram.Socket,
    family: 4 | 6,
    data: Uint8Array | Uint8Array[],
    port: number,
    address: string,
  ): boolean {
    const bad = destinationProblem(address, port, family, this.destScratch);
    if (bad !== SEND_OK) {
      this.countSendError(bad);
      return false;
    }
    try {
      s.send(data, port, address, this.onSent);
    } catch {
      // e.g. ERR_SOCKET_DGRAM_NOT_RUNNING after close(): never out of a handler.
      this.stats.sendErrors.socket++;
      return false;
    }
    return true;
  }

  private countSendError(reason: number): void {
    if (reason === SEND_BAD_PORT) this.stats.sendErrors.bad_port++;
    else this.stats.sendErrors.bad_address++;
  }

  /** Closes every socket. */
  async close(): Promise<void> {
    const closeOne = (s: dgram.Socket): Promise<void> => new Promise((resolve) => s.close(() => resolve()));
    const all = [
      this.listenSocket,
      ...this.directPaths.map((p) => p.socket),
      ...(this.vipSocket ? [this.vipSocket] : []),
    ];
    await Promise.all([...new Set(all)].map((s) => closeOne(s).catch(() => undefined)));
  }
}

/** `new AddressSet(addresses)`, its error as the backend kit's ERR_BACKEND_ADDRESS. */
function addressSet(addresses: readonly string[], field: string): AddressSet {
  try {
    return new AddressSet(addresses, field);
  } catch (err) {
    const e = err as QuicWireError;
    throw new BackendError('ERR_BACKEND_ADDRESS', e.field ?? field, e.message);
  }
}
