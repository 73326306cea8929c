// Sink backends. Each sink is one UDP socket standing for one backend. A connection belongs to
// the backend that received its first packet (its Initial: the backend that "handed out" the
// connection IDs); every later packet of that connection that lands on another sink is counted
// as misdelivered — unless its owner has been retired (left the pool: the connection is gone
// with it, and wherever the router sends its packets is not a misrouting): those are orphaned.
// Ownership lives in a shared Int8Array so the generator can mint CIDs for the
// owner and several threads can read it.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { HISTOGRAM_BUCKETS, bucketOf } from '../lib/histogram.js';
import { ProxyHeader, encodeProxyHeader, formatProxyAddress, parseProxyHeader } from '../../src/wire/index.js';
import { KIND_CHURN, KIND_SHORT, nowUs, readTrailer, type Trailer } from '../lib/trailer.js';

export const NO_OWNER = -1;

export interface SinkStats {
  trial: number;
  /** Packets of the current trial received, per sink. */
  received: number[];
  /** Packets that reached a sink other than their connection's owner (while the owner is in the pool). */
  wrong: number;
  /** Packets of connections whose owner was retired (`retire()`) that reached another sink. */
  orphaned: number;
  /** Packets from an earlier trial (stragglers), ignored. */
  stale: number;
  /** Datagrams without a bench trailer. */
  foreign: number;
  /** Datagrams whose QUIC part did not arrive with the length the generator sent. */
  corrupt: number;
  /** Datagrams that arrived behind a PROXY v2 header. */
  proxied: number;
  /** Datagrams reflected back (echo mode). */
  echoed: number;
  /** One-way latency histogram (µs) over all sinks. */
  hist: number[];
  /** Session mode: packets that did not come straight from a client (`clientHosts`): they crossed the tier. */
  viaTier: number;
}

/**
 * Session mode (bench/sessions): a sink sets bit `seq` of connection `conn`'s row in `up` for
 * every short-header frame that reaches the connection's owner, reflects only those (a backend
 * that does not hold the connection would not answer it), and counts frames whose sender is not
 * one of `clientHosts` (they came through the forwarding tier). Latency: frames below `latencyFrames` only.
 */
export interface SinkSessionBits {
  up: SharedArrayBuffer;
  rowBytes: number;
  clientHosts: string[];
  /** Only frames numbered below this go into the latency histogram (those before the scenario's events). */
  latencyFrames: number;
}

export class SinkSet {
  readonly sockets: Socket[] = [];
  private trial = 0;
  private readonly received: number[];
  private wrong = 0;
  private orphaned = 0;
  private readonly retired: Uint8Array;
  private stale = 0;
  private foreign = 0;
  private corrupt = 0;
  private proxied = 0;
  private echo = false;
  private echoed = 0;
  private readonly hist = new Uint32Array(HISTOGRAM_BUCKETS);
  private readonly proxy = new ProxyHeader();
  private readonly t: Trailer = { trial: 0, conn: 0, seq: 0, kind: 0, length: 0, sendTimeUs: 0 };
  private session: { up: Uint8Array; rowBytes: number; clientHosts: Set<string>; latencyFrames: number } | undefined;
  private viaTier = 0;

  /** Turns session mode on (see {@link SinkSessionBits}); the caller clears the bitmap between runs. */
  sessionMode(bits: SinkSessionBits): void {
    this.session = {
      up: new Uint8Array(bits.up),
      rowBytes: bits.rowBytes,
      clientHosts: new Set(bits.clientHosts),
      latencyFrames: bits.latencyFrames,
    };
  }

  constructor(
    readonly addresses: string[],
    readonly owner: Int8Array,
    private readonly recvBufferBytes = 8 << 20,
  ) {
    this.received = addresses.map(() => 0);
    this.retired = new Uint8Array(addresses.length);
  }

  /**
   * Sink `sink` left the pool. Call it before the router learns of the change: from then on a
   * packet of one of its connections that reaches another sink is orphaned, not misdelivered.
   * Cleared by `reset()`.
   */
  retire(sink: number): void {
    this.retired[sink] = 1;
  }

  /** Binds every sink (port 0 unless `ports` is given); returns the ports. */
  async start(ports?: number[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < this.addresses.length; i++) {
      const s = createSocket({ type: 'udp4', recvBufferSize: this.recvBufferBytes });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(ports?.[i] ?? 0, this.addresses[i], () => resolve());
      });
      const idx = i;
      s.on('message', (msg, rinfo) => this.onMessage(idx, msg, rinfo));
      s.on('error', () => {}); // an echo to a peer that went away
      this.sockets.push(s);
      out.push(s.address().port);
    }
    return out;
  }

  private onMessage(sink: number, msg: Buffer, rinfo: RemoteInfo): void {
    const t = this.t;
    if (!readTrailer(msg, t)) {
      this.foreign++;
      return;
    }
    if (t.trial !== this.trial) {
      this.stale++;
      return;
    }
    // Strip the LB encapsulation when present (PROXY v2; quic-lb serve and the Redis router).
    let hdr = parseProxyHeader(msg, this.proxy);
    if (hdr > 0) this.proxied++;
    else hdr = 0;
    if (msg.length - hdr !== t.length) this.corrupt++;
    this.received[sink]++;
    if (t.kind === KIND_CHURN) return;
    const o = this.owner[t.conn];
    let owned = true;
    if (o === NO_OWNER) this.owner[t.conn] = sink;
    else if (o !== sink) {
      owned = false;
      if (this.retired[o] === 1) this.orphaned++;
      else this.wrong++;
    }
    const s = this.session;
    if (!s || t.seq < s.latencyFrames) this.hist[bucketOf(nowUs() - t.sendTimeUs)]++;
    if (s && t.kind === KIND_SHORT) {
      if (!s.clientHosts.has(rinfo.address)) this.viaTier++;
      if (!owned) return;
      if (t.seq < s.rowBytes * 8) s.up[t.conn * s.rowBytes + (t.seq >>> 3)] |= 1 << (t.seq & 7);
    }
    if (this.echo) this.reflect(sink, msg, hdr, rinfo);
  }

  /**
   * Echo mode: send the datagram back to where it came from. Behind a PROXY v2 header (quic-lb
   * serve, the Redis router) the reply carries the mirrored header — src = the VIP the client
   * used, dst = the client — which is what an LB return path expects; otherwise (nginx, bare
   * relay) the datagram goes back as is and the proxy maps it to its session.
   */
  private reflect(sink: number, msg: Buffer, hdr: number, rinfo: RemoteInfo): void {
    const s = this.sockets[sink];
    if (hdr > 0 && this.proxy.family !== 0) {
      const back = encodeProxyHeader({
        srcAddr: formatProxyAddress(this.proxy, 'dst'),
        srcPort: this.proxy.dstPort,
        dstAddr: formatProxyAddress(this.proxy, 'src'),
        dstPort: this.proxy.srcPort,
      });
      s.send([back, msg.subarray(hdr)], rinfo.port, rinfo.address);
    } else {
      s.send(msg, rinfo.port, rinfo.address);
    }
    this.echoed++;
  }

  /** Starts counting for `trial` (earlier trials' packets become stale); `echo` reflects every packet. */
  reset(trial: number, echo = false): void {
    this.trial = trial & 0xffff;
    this.echo = echo;
    this.received.fill(0);
    this.retired.fill(0);
    this.wrong =
      this.orphaned =
      this.stale =
      this.foreign =
      this.corrupt =
      this.proxied =
      this.echoed =
      this.viaTier =
        0;
    this.hist.fill(0);
  }

  stats(): SinkStats {
    return {
      trial: this.trial,
      received: [...this.received],
      wrong: this.wrong,
      orphaned: this.orphaned,
      stale: this.stale,
      foreign: this.foreign,
      corrupt: this.corrupt,
      proxied: this.proxied,
      echoed: this.echoed,
      hist: Array.from(this.hist),
      viaTier: this.viaTier,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.length = 0;
  }
}
