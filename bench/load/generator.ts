// The load generator: many QUIC "clients", one UDP socket (one source port) per connection.
// Per connection: one 1200-byte v1 Initial with a random client DCID (the handshake), then
// 1-RTT short-header packets whose DCID was minted with the QUIC-LB library for the backend that
// owns the connection (the sink that received its Initial). Everything is built from a seeded
// PRNG before timing; the timed loop only stamps sequence number and send time into the trailer.
import { createSocket, type Socket } from 'node:dgram';
import { createConfig, encodeConnectionId, type QuicLbConfig } from '../../src/cid/index.js';
import { Prng } from '../lib/prng.js';
import { buildInitial, buildShort } from '../lib/packets.js';
import { HISTOGRAM_BUCKETS, bucketOf } from '../lib/histogram.js';
import {
  KIND_CHURN,
  KIND_SHORT,
  nowUs,
  readTrailer,
  stampTrailer,
  TRAILER_LENGTH,
  type Trailer,
} from '../lib/trailer.js';

export interface Target {
  host: string;
  port: number;
}

/** The QUIC-LB config the "backends" mint CIDs with, and each sink's server ID. */
export interface CidScheme {
  configId: number;
  serverIdLength: number;
  nonceLength: number;
  /** 32 hex digits; absent for plaintext. */
  key?: string;
  /** serverIds[sinkIndex] */
  serverIds: number[];
}

export interface GeneratorOptions {
  conns: number;
  sourceAddresses: string[];
  packetSize: number;
  seed: number;
  /** CID schemes by name; `mint` picks one. */
  schemes: Record<string, CidScheme>;
  /** Share of connections that get a spare socket (for rebinding / migration events; an event's share must not exceed it). */
  spareShare: number;
}

export type RunEvent =
  /** NAT rebinding: the connection's packets leave from a new source port, same CID. */
  | { atMs: number; type: 'rebind'; share: number }
  /** Migration: new source port and a new CID from the same backend. */
  | { atMs: number; type: 'migrate'; share: number }
  /** Path change (ECMP): the same 4-tuple now reaches router instance `instance`. */
  | { atMs: number; type: 'switch'; share: number; instance: number }
  /** The backend `sink` left the pool: its connections die (their clients stop sending). */
  | { atMs: number; type: 'retire-owner'; sink: number }
  /** NAT rebinding of one connection (session benchmark): new source port, same CID; its frame number is recorded. */
  | { atMs: number; type: 'rebind-conn'; conn: number }
  /** Records every connection's next frame number (session benchmark: where the tier restart fell). */
  | { atMs: number; type: 'mark' };

export interface RunOptions {
  trial: number;
  /** Offered packets per second. */
  rate: number;
  durationMs: number;
  targets: Target[];
  events?: RunEvent[];
  /** Number this run's frames from 0 in every connection (the session benchmark's per-frame bitmaps). */
  resetSeq?: boolean;
}

/**
 * Session mode (bench/sessions): the generator sets bit `seq` of connection `conn`'s row in `down`
 * for every echo it receives (row length `rowBytes`), and counts echoes that did not come
 * straight from a backend (`sinkHosts`): those crossed the forwarding tier.
 */
export interface SessionBits {
  down: SharedArrayBuffer;
  rowBytes: number;
  sinkHosts: string[];
  /** Only echoes of frames numbered below this go into the round-trip histogram. */
  latencyFrames: number;
}

/** What the generator knows of each session after a session-mode run. */
export interface SessionGenReport {
  /** Frames each connection sent (its next frame number). */
  sent: number[];
  /** Frame number at which each connection rebound its NAT (-1: it did not). */
  rebindSeq: number[];
  /** Each connection's next frame number at the `mark` event (-1: no mark). */
  markSeq: number[];
  /** Echoes received in this run, and those of them that came through the tier. */
  echoes: number;
  echoesViaTier: number;
}

export interface RunResult {
  sent: number;
  elapsedMs: number;
  sendErrors: number;
}

/** Deterministic selection of `share` of the connections, the same for every router. */
export function selected(conn: number, share: number, salt = 0): boolean {
  return (Math.imul(conn ^ salt, 0x9e3779b1) >>> 0) / 0x1_0000_0000 < share;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function serverIdBytes(id: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1, v = id; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return out;
}

interface Conn {
  socket: Socket;
  spare: Socket | undefined;
  initial: Buffer;
  short: Buffer | undefined;
  migrated: Buffer | undefined;
  /** Target instance when sending unconnected (after a path switch), else -1. */
  unconnectedTo: number;
  seq: number;
}

export class Generator {
  private readonly conns: Conn[] = [];
  private readonly rng: Prng;
  private readonly configs = new Map<string, QuicLbConfig>();
  private sendErrors = 0;
  /** Trial whose echoes are counted, their number and round-trip histogram. */
  private echoTrial = -1;
  private echoes = 0;
  private readonly rttHist = new Uint32Array(HISTOGRAM_BUCKETS);
  private readonly echoTrailer: Trailer = { trial: 0, conn: 0, seq: 0, kind: 0, length: 0, sendTimeUs: 0 };

  private session: { down: Uint8Array; rowBytes: number; sinkHosts: Set<string>; latencyFrames: number } | undefined;
  private echoesViaTier = 0;
  private rebindSeq = new Int32Array(0);
  private markSeq = new Int32Array(0);

  private onEcho(msg: Buffer, from: string): void {
    const t = this.echoTrailer;
    if (!readTrailer(msg, t) || t.trial !== this.echoTrial) return;
    this.echoes++;
    const s = this.session;
    if (!s || t.seq < s.latencyFrames) this.rttHist[bucketOf(nowUs() - t.sendTimeUs)]++;
    if (s && t.kind === KIND_SHORT && t.seq < s.rowBytes * 8 && t.conn < this.conns.length) {
      s.down[t.conn * s.rowBytes + (t.seq >>> 3)] |= 1 << (t.seq & 7);
      if (!s.sinkHosts.has(from)) this.echoesViaTier++;
    }
  }

  /** Turns session mode on (see {@link SessionBits}); the caller clears the bitmap between runs. */
  sessionMode(bits: SessionBits): void {
    this.session = {
      down: new Uint8Array(bits.down),
      rowBytes: bits.rowBytes,
      sinkHosts: new Set(bits.sinkHosts),
      latencyFrames: bits.latencyFrames,
    };
  }

  sessionReport(): SessionGenReport {
    return {
      sent: this.conns.map((c) => c.seq),
      rebindSeq: Array.from(this.rebindSeq),
      markSeq: Array.from(this.markSeq),
      echoes: this.echoes,
      echoesViaTier: this.echoesViaTier,
    };
  }

  /**
   * Connects each owned connection's sockets straight to its owner's address (`sinks[owner]`):
   * the client that took the server's preferred_address (RFC 9000 §9.6) after the handshake.
   */
  async connectOwners(sinks: Target[]): Promise<void> {
    for (let i = 0; i < this.conns.length; i++) {
      const o = this.owner[i];
      if (o < 0) continue;
      const c = this.conns[i];
      c.unconnectedTo = -1;
      for (const s of c.spare ? [c.socket, c.spare] : [c.socket])
        await new Promise<void>((resolve) => {
          disconnect(s);
          s.connect(sinks[o].port, sinks[o].host, () => resolve());
        });
    }
  }

  constructor(
    private readonly opts: GeneratorOptions,
    private readonly owner: Int8Array,
  ) {
    this.rng = new Prng(opts.seed);
    for (const [name, c] of Object.entries(opts.schemes)) {
      this.configs.set(
        name,
        createConfig({
          configId: c.configId,
          serverIdLength: c.serverIdLength,
          nonceLength: c.nonceLength,
          ...(c.key ? { key: hexBytes(c.key) } : {}),
        }),
      );
    }
  }

  /** Next explicit source port per address (see openSocket). */
  private readonly nextPort = new Map<string, number>();

  /**
   * A socket on `address`. Connection sockets get an explicit port: Linux keeps an explicitly
   * bound port across connect()/disconnect(), while an auto-bound one is released on
   * disconnect — which would silently turn a path switch into a NAT rebinding. `port0` sockets
   * (connection churn) let the kernel choose.
   */
  private async openSocket(address: string, port0 = false): Promise<Socket> {
    for (let attempt = 0; ; attempt++) {
      const port = port0 ? 0 : (this.nextPort.get(address) ?? FIRST_SOURCE_PORT);
      if (!port0) this.nextPort.set(address, port + 1);
      const s = createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
      const err = await new Promise<Error | undefined>((resolve) => {
        s.once('error', resolve);
        s.bind(port, address, () => {
          s.off('error', resolve);
          resolve(undefined);
        });
      });
      if (!err) {
        s.on('error', () => this.sendErrors++);
        if (!port0) s.on('message', (m, r) => this.onEcho(m, r.address));
        return s;
      }
      s.close();
      // Port taken by someone else's wildcard bind: take the next one.
      if (port0 || attempt > 1000 || port >= 65535) throw err;
    }
  }

  /** Opens the sockets and builds every connection's Initial. */
  async init(): Promise<void> {
    const { conns, sourceAddresses, packetSize } = this.opts;
    for (let c = 0; c < conns; c++) {
      const addr = sourceAddresses[c % sourceAddresses.length];
      const socket = await this.openSocket(addr);
      const spare = selected(c, this.opts.spareShare, 0x5eed) ? await this.openSocket(addr) : undefined;
      const initial = buildInitial(this.rng, packetSize, 0, c, this.rng.int(8, 20));
      this.conns.push({ socket, spare, initial, short: undefined, migrated: undefined, unconnectedTo: -1, seq: 0 });
    }
  }

  /** Connects every connection's sockets to `target` (router instance 0). */
  async connect(target: Target): Promise<void> {
    const connectOne = (s: Socket): Promise<void> =>
      new Promise((resolve) => {
        disconnect(s);
        s.connect(target.port, target.host, () => resolve());
      });
    for (const c of this.conns) {
      c.unconnectedTo = -1;
      await connectOne(c.socket);
      if (c.spare) await connectOne(c.spare);
    }
  }

  /** The handshake: one Initial per connection, paced at `rate`. Sinks record the owners. */
  async handshake(trial: number, rate: number): Promise<RunResult> {
    for (const c of this.conns) setTrial(c.initial, trial);
    const all = Int32Array.from(this.conns.keys());
    return this.pace(all, rate, Infinity, [], [], (c) => this.conns[c].initial, true);
  }

  /**
   * Mints each connection's CIDs with `scheme` for the backend that owns it (the sink that got
   * its Initial, as a real backend would put its own server ID in the CIDs it issues); returns
   * how many connections have an owner. Connections whose Initial was lost stay silent.
   */
  mint(scheme: string): number {
    const { packetSize } = this.opts;
    const cid = this.opts.schemes[scheme];
    const config = this.configs.get(scheme);
    if (!cid || !config) throw new Error(`unknown CID scheme ${scheme}`);
    const nonce = new Uint8Array(config.nonceLength);
    const ids = cid.serverIds.map((id) => serverIdBytes(id, cid.serverIdLength));
    let owned = 0;
    for (let i = 0; i < this.conns.length; i++) {
      const c = this.conns[i];
      const o = this.owner[i];
      if (o < 0) {
        c.short = c.migrated = undefined;
        continue;
      }
      owned++;
      this.rng.fill(nonce);
      c.short = buildShort(this.rng, packetSize, 0, i, encodeConnectionId(config, ids[o], nonce));
      if (c.spare) {
        this.rng.fill(nonce);
        c.migrated = buildShort(this.rng, packetSize, 0, i, encodeConnectionId(config, ids[o], nonce));
      }
    }
    return owned;
  }

  /** Short-header traffic round-robin over the owned connections at `rate` for `durationMs`. */
  async run(o: RunOptions): Promise<RunResult> {
    const list: number[] = [];
    for (let i = 0; i < this.conns.length; i++) {
      const c = this.conns[i];
      if (!c.short) continue;
      setTrial(c.short, o.trial);
      if (c.migrated) setTrial(c.migrated, o.trial);
      list.push(i);
    }
    const useMigrated = new Uint8Array(this.conns.length);
    this.echoTrial = o.trial & 0xffff;
    this.echoes = 0;
    this.echoesViaTier = 0;
    this.rttHist.fill(0);
    this.rebindSeq = new Int32Array(this.conns.length).fill(-1);
    this.markSeq = new Int32Array(this.conns.length).fill(-1);
    if (o.resetSeq) for (const c of this.conns) c.seq = 0;
    return this.pace(
      Int32Array.from(list),
      o.rate,
      o.durationMs,
      o.events ?? [],
      o.targets,
      (c) => (useMigrated[c] ? this.conns[c].migrated! : this.conns[c].short!),
      false,
      useMigrated,
    );
  }

  private pace(
    list: Int32Array,
    rate: number,
    durationMs: number,
    events: RunEvent[],
    targets: Target[],
    packetOf: (conn: number) => Buffer,
    once: boolean,
    useMigrated?: Uint8Array,
  ): Promise<RunResult> {
    return new Promise((resolve) => {
      const pending = [...events].sort((a, b) => a.atMs - b.atMs);
      const alive = new Uint8Array(this.conns.length).fill(1);
      const total = once ? list.length : Infinity;
      const errors0 = this.sendErrors;
      const start = nowUs();
      let sent = 0;
      let next = 0;
      const tick = (): void => {
        const elapsedMs = (nowUs() - start) / 1000;
        while (pending.length && pending[0].atMs <= elapsedMs) this.apply(pending.shift()!, alive, useMigrated);
        if (elapsedMs >= durationMs || sent >= total || list.length === 0) {
          resolve({ sent, elapsedMs, sendErrors: this.sendErrors - errors0 });
          return;
        }
        let due = Math.min(Math.floor((elapsedMs * rate) / 1000) - sent, 512, total - sent);
        while (due-- > 0) {
          let c = list[next];
          next = next + 1 === list.length ? 0 : next + 1;
          if (!alive[c]) {
            // Skip dead connections without burning the budget forever.
            let guard = list.length;
            while (!alive[c] && guard-- > 0) {
              c = list[next];
              next = next + 1 === list.length ? 0 : next + 1;
            }
            if (!alive[c]) break;
          }
          const conn = this.conns[c];
          const buf = packetOf(c);
          stampTrailer(buf, conn.seq++, nowUs());
          if (conn.unconnectedTo >= 0) {
            const t = targets[conn.unconnectedTo];
            conn.socket.send(buf, t.port, t.host);
          } else {
            conn.socket.send(buf);
          }
          sent++;
        }
        if (Math.floor((((nowUs() - start) / 1000) * rate) / 1000) - sent > 0) setImmediate(tick);
        else setTimeout(tick, 1);
      };
      tick();
    });
  }

  private apply(e: RunEvent, alive: Uint8Array, useMigrated?: Uint8Array): void {
    if (e.type === 'rebind-conn') {
      const c = this.conns[e.conn];
      if (c?.spare) {
        [c.socket, c.spare] = [c.spare, c.socket];
        this.rebindSeq[e.conn] = c.seq;
      }
      return;
    }
    if (e.type === 'mark') {
      for (let i = 0; i < this.conns.length; i++) this.markSeq[i] = this.conns[i].seq;
      return;
    }
    for (let i = 0; i < this.conns.length; i++) {
      const c = this.conns[i];
      switch (e.type) {
        case 'rebind':
        case 'migrate':
          if (c.spare && selected(i, e.share, 0x5eed)) {
            [c.socket, c.spare] = [c.spare, c.socket];
            if (e.type === 'migrate' && useMigrated && c.migrated) useMigrated[i] = 1;
          }
          break;
        case 'switch':
          if (selected(i, e.share, 0x5a1c)) {
            // Explicitly bound ports survive disconnect(): same 4-tuple, new destination.
            disconnect(c.socket);
            if (c.spare) disconnect(c.spare);
            c.unconnectedTo = e.instance;
          }
          break;
        case 'retire-owner':
          if (this.owner[i] === e.sink) alive[i] = 0;
          break;
      }
    }
  }

  /** Echoes received since the last run started (call after the stragglers had time to arrive). */
  echoStats(): { echoes: number; rttHist: number[] } {
    return { echoes: this.echoes, rttHist: Array.from(this.rttHist) };
  }

  /**
   * Connection churn for the memory curve: `count` new 4-tuples (fresh sockets, `batch` open at a
   * time), each sending one Initial to `target`. Returns the number of Initials sent.
   */
  async churn(trial: number, target: Target, count: number, batch: number, rate: number): Promise<number> {
    let sent = 0;
    const addrs = this.opts.sourceAddresses;
    const tmpl = buildInitial(this.rng, this.opts.packetSize, trial, 0, 8);
    tmpl.writeUInt16BE(KIND_CHURN, tmpl.length - TRAILER_LENGTH + 12);
    const dcidOffset = 6;
    const start = nowUs();
    for (let base = 0; base < count; base += batch) {
      const n = Math.min(batch, count - base);
      const socks: Socket[] = [];
      for (let i = 0; i < n; i++) socks.push(await this.openSocket(addrs[(base + i) % addrs.length], true));
      for (let i = 0; i < n; i++) {
        // Pace: wait until the schedule allows the next Initial.
        while (((nowUs() - start) / 1e6) * rate < sent) await new Promise((r) => setTimeout(r, 1));
        this.rng.fill(tmpl, dcidOffset, dcidOffset + 8);
        stampTrailer(tmpl, sent, nowUs());
        socks[i].send(tmpl, target.port, target.host);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 20));
      await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
    }
    return sent;
  }

  async close(): Promise<void> {
    const all: Socket[] = [];
    for (const c of this.conns) {
      all.push(c.socket);
      if (c.spare) all.push(c.spare);
    }
    await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.conns.length = 0;
  }
}

/** Connection sockets bind explicit ports from here up (on the bench's own 127.0.3.x addresses). */
const FIRST_SOURCE_PORT = 40000;

function disconnect(s: Socket): void {
  try {
    s.disconnect();
  } catch {
    // was not connected
  }
}

function setTrial(buf: Buffer, trial: number): void {
  buf.writeUInt16BE(trial & 0xffff, buf.length - TRAILER_LENGTH + 2);
}
