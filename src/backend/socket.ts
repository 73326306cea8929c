// The socket a backend QUIC stack runs on behind the quic-lb load balancer: one logical
// datagram socket over
//   - LB-encapsulated datagrams (PROXY v2 header + the client's QUIC datagram), presented with
//     the real client address, replies going back through the LB's return port with a header
//     (via-lb) or straight from a socket bound to the VIP (direct / DSR);
//   - plain QUIC datagrams to the backend's own unicast address(es), i.e. clients that moved to
//     the preferred_address, answered from the socket they arrived on;
//   - the LB's health probe (answered "up", or "draining" once drain() was called).
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIPv6 } from 'node:net';
import {
  answerHealthProbe,
  createProxyAuth,
  formatProxyAddress,
  parseIPv4Into,
  parseIPv6Into,
  parseProxyHeader,
  proxyHeaderLength,
  ProxyDirection,
  ProxyHeader,
  PROXY_V2_SIGNATURE,
  signProxyHeader,
  writeProxyHeader,
  type ProxyAuth,
} from '../quic/index.js';
import { BackendError } from './errors.js';

/** An IP literal and a UDP port. */
export interface Endpoint {
  address: string;
  port: number;
}

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
  /** The LB socket that delivered the datagrams (replies go back to it unless a return port is set). */
  readonly lbAddress: string;
  readonly lbPort: number;
  /** VIP as octets, written as the source address of return headers. */
  readonly vipBytes: Uint8Array;
  /** Octets of the PROXY v2 header of replies on this path. */
  readonly headerLength: number;
}

interface DirectPath extends BackendPath {
  readonly kind: 'direct';
  readonly socket: dgram.Socket;
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
   *   this host, e.g. on `lo`; the LB never sees the replies).
   */
  returnPath?: { mode: 'via-lb'; address?: string; port?: number } | { mode: 'direct'; vip: Endpoint };
  /** Shared HMAC key (>= 16 octets, the LB's `returnPath.hmacKey`): return headers are signed with it. */
  hmacKey?: Uint8Array;
  /**
   * The LB signs forwarded headers too (`returnPath.signForward`): require a valid auth TLV on
   * every encapsulated datagram. Needs `hmacKey`.
   */
  signForward?: boolean;
  /**
   * Load balancer source addresses allowed to deliver encapsulated datagrams (default: any).
   * Without `hmacKey`, set this: otherwise anyone reaching the port can claim any client address.
   */
  allowLbAddresses?: string[];
  /**
   * Remember each client's last path so `send` works without the `path` argument (one string
   * key per datagram). QUIC stacks that hand the path back to `send` leave this off.
   */
  trackPaths?: boolean;
}

/** Counters (plain numbers, read them at scrape time). */
export interface BackendSocketStats {
  lbDatagrams: number;
  directDatagrams: number;
  healthProbesAnswered: number;
  /** Encapsulated datagrams dropped: malformed header, failed auth, sender not allowed. */
  dropped: number;
  sentViaLb: number;
  sentDirect: number;
}

const MAX_LB_PATHS = 64;

/** `a.b.c.d:port` or `[v6]:port`. */
const hostPort = (address: string, port: number): string => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
const SIG0 = PROXY_V2_SIGNATURE[0];

/**
 * One logical socket for a backend QUIC stack. Events: 'message' (msg, rinfo, path) with the
 * real client address; 'error'. `send(msg, address, port, path?)` answers on the right path.
 */
export class BackendSocket extends EventEmitter {
  readonly stats: BackendSocketStats = { lbDatagrams: 0, directDatagrams: 0, healthProbesAnswered: 0, dropped: 0, sentViaLb: 0, sentDirect: 0 };
  private readonly listenSocket: dgram.Socket;
  private readonly directPaths: DirectPath[] = [];
  private readonly lbPaths: LbPath[] = [];
  private readonly header = new ProxyHeader();
  private readonly authIn?: ProxyAuth;
  private readonly authOut?: ProxyAuth;
  private vipSocket?: dgram.Socket;
  private readonly lastPath = new Map<string, BackendPath>();
  private draining = false;
  private readonly addrScratch = new Uint8Array(16);

  constructor(private readonly opts: BackendSocketOptions) {
    super();
    if (opts.signForward && !opts.hmacKey) throw new BackendError('ERR_BACKEND_HMAC_KEY', 'hmacKey', 'signForward needs hmacKey');
    if (opts.hmacKey) {
      this.authOut = createProxyAuth(opts.hmacKey);
      if (opts.signForward) this.authIn = createProxyAuth(opts.hmacKey, { expect: ProxyDirection.TO_BACKEND });
    }
    const mode: unknown = opts.returnPath?.mode ?? 'via-lb';
    if (mode !== 'via-lb' && mode !== 'direct') {
      throw new BackendError('ERR_BACKEND_RETURN_MODE', 'returnPath.mode', `unknown return mode ${String(mode)}`);
    }
    const rp = opts.returnPath;
    if (rp?.mode === 'via-lb' && (rp.address === undefined) !== (rp.port === undefined)) {
      throw new BackendError('ERR_BACKEND_ADDRESS', 'returnPath.port', 'give both address and port of the return port, or neither');
    }
    this.listenSocket = this.createSocket(opts.listen);
  }

  private createSocket(ep: Endpoint): dgram.Socket {
    const s = dgram.createSocket({ type: isIPv6(ep.address) ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    s.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    return s;
  }

  /** Binds every socket; resolves once all listen. */
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
    const main = this.addDirectPath(this.listenSocket);
    this.listenSocket.on('message', (msg, rinfo) => this.onListenMessage(msg, rinfo, main));
    for (const ep of this.opts.unicast ?? []) {
      const s = this.createSocket(ep);
      await bindOne(s, ep);
      const p = this.addDirectPath(s);
      s.on('message', (msg, rinfo) => this.deliverDirect(msg, rinfo, p));
    }
    if (this.opts.returnPath?.mode === 'direct') {
      const vip = this.opts.returnPath.vip;
      this.vipSocket = this.createSocket(vip);
      await bindOne(this.vipSocket, vip);
      // Datagrams sent straight to the VIP on this host are answered from the VIP too.
      const a = this.vipSocket.address();
      const vipPath: DirectPath = { kind: 'direct', name: `vip:${hostPort(a.address, a.port)}`, local: { address: a.address, port: a.port }, socket: this.vipSocket };
      this.vipSocket.on('message', (msg, rinfo) => this.onListenMessage(msg, rinfo, vipPath));
    }
  }

  private addDirectPath(s: dgram.Socket): DirectPath {
    const a = s.address();
    const p: DirectPath = { kind: 'direct', name: `direct:${hostPort(a.address, a.port)}`, local: { address: a.address, port: a.port }, socket: s };
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
    const reply = answerHealthProbe(msg, this.draining);
    if (reply) {
      this.stats.healthProbesAnswered++;
      direct.socket.send(reply, rinfo.port, rinfo.address);
      return;
    }
    const allow = this.opts.allowLbAddresses;
    if (allow && !allow.includes(rinfo.address)) {
      this.stats.dropped++;
      return;
    }
    const h = this.header;
    const hl = parseProxyHeader(msg, h, this.authIn);
    if (hl < 0 || h.family === 0) {
      this.stats.dropped++;
      return;
    }
    this.stats.lbDatagrams++;
    const path = this.lbPathFor(h, rinfo);
    const client = formatProxyAddress(h, 'src');
    if (this.opts.trackPaths) this.lastPath.set(`${client}|${h.srcPort}`, path);
    this.emit('message', msg.subarray(hl), { address: client, port: h.srcPort }, path);
  }

  private deliverDirect(msg: Buffer, rinfo: dgram.RemoteInfo, path: DirectPath): void {
    this.stats.directDatagrams++;
    if (this.opts.trackPaths) this.lastPath.set(`${rinfo.address}|${rinfo.port}`, path);
    this.emit('message', msg, { address: rinfo.address, port: rinfo.port }, path);
  }

  /** The LB path for the VIP in `h` (one object per VIP; linear scan, no allocation when known). */
  private lbPathFor(h: ProxyHeader, lb: dgram.RemoteInfo): LbPath {
    const n = h.family === 4 ? 4 : 16;
    for (const p of this.lbPaths) {
      if (p.local.port !== h.dstPort || p.vipBytes.length !== n || p.lbPort !== lb.port || p.lbAddress !== lb.address) continue;
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
      headerLength: proxyHeaderLength(n === 4 ? 4 : 6, this.authOut !== undefined),
    };
    if (this.lbPaths.length >= MAX_LB_PATHS) this.lbPaths.shift();
    this.lbPaths.push(p);
    return p;
  }

  /**
   * Sends `msg` to the client at address:port. `path` (the one the client's datagram arrived
   * on) picks the way out: through the LB's return port, from the VIP (direct mode), or from
   * the unicast socket. Without `path`, the path of the client's last datagram is used (one
   * map lookup; needs `trackPaths`), falling back to the listen socket.
   */
  send(msg: Uint8Array, address: string, port: number, path?: BackendPath): void {
    const p = path ?? this.lastPath.get(`${address}|${port}`) ?? this.directPaths[0];
    if (!p) return;
    if (p.kind === 'direct') {
      this.stats.sentDirect++;
      (p as DirectPath).socket.send(msg, port, address);
      return;
    }
    const lb = p as LbPath;
    const rp = this.opts.returnPath;
    if (rp?.mode === 'direct') {
      this.stats.sentDirect++;
      this.vipSocket?.send(msg, port, address);
      return;
    }
    const dst = this.addrScratch;
    const n = lb.vipBytes.length;
    const ok = n === 4 ? parseIPv4Into(address, dst, 0) : parseIPv6Into(address, dst, 0);
    if (!ok) return;
    // A new header per datagram: dgram may queue the send and keeps the buffers until then.
    const hdr = Buffer.allocUnsafe(lb.headerLength);
    writeProxyHeader(hdr, 0, lb.vipBytes, lb.local.port, dst.subarray(0, n), port, this.authOut !== undefined);
    if (this.authOut) signProxyHeader(hdr, msg, this.authOut, ProxyDirection.TO_CLIENT);
    this.stats.sentViaLb++;
    if (rp?.port !== undefined && rp.address !== undefined) this.listenSocket.send([hdr, msg], rp.port, rp.address);
    else this.listenSocket.send([hdr, msg], lb.lbPort, lb.lbAddress);
  }

  /** Closes every socket. */
  async close(): Promise<void> {
    const closeOne = (s: dgram.Socket): Promise<void> => new Promise((resolve) => s.close(() => resolve()));
    const all = [this.listenSocket, ...this.directPaths.map((p) => p.socket), ...(this.vipSocket ? [this.vipSocket] : [])];
    await Promise.all([...new Set(all)].map((s) => closeOne(s).catch(() => undefined)));
  }
}
