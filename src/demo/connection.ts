// One server-side QUIC v1 connection (RFC 9000, RFC 9001, RFC 9002 reduced to what a demo
// needs): packet protection, three packet-number spaces, CRYPTO/STREAM reassembly, ACKs,
// loss detection by packet threshold, time threshold and probe timeout, a fixed congestion
// window, flow control, connection IDs minted by the host, path validation and migration.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  decodeTransportParameters,
  encodeTransportParameters,
  readVarint,
  varintSizeAt,
  type PreferredAddress,
  type TransportParameters,
} from '../quic/index.js';
import { initialKeys, PacketKeys, AEAD_TAG_LEN } from './crypto.js';
import { cryptoError, F, frameRetireConnectionId, frameWithVarint, HANDSHAKE_FRAMES, TransportError } from './frames.js';
import { KEY_PHASE_BIT, openPacket, PN_LEN, sealPacket } from './packet.js';
import { RangeSet, Reassembler, Writer, vlen } from './buffers.js';
import { splitHandshakeMessages, TlsAlert, TlsServerHandshake, type ClientHelloInfo } from './tls.js';
import type { ServerIdentity } from './cert.js';

/** Encryption levels / packet-number spaces (RFC 9000 §12.3). */
export const Level = { INITIAL: 0, HANDSHAKE: 1, APPLICATION: 2 } as const;
export type Level = (typeof Level)[keyof typeof Level];
const LEVEL_NAMES = ['initial', 'handshake', '1rtt'];
const ALL_LEVELS: readonly Level[] = [Level.INITIAL, Level.HANDSHAKE, Level.APPLICATION];

/** Datagram size the server sends (RFC 9000 §14: every QUIC path carries 1200). */
export const MAX_DATAGRAM_SIZE = 1200;
/**
 * Octets the server may send to an address it has not validated, per octet received from it.
 * RFC 9000 §8.1 allows up to 3; this server uses 1, so a spoofed Initial is never amplified
 * (its whole first flight fits in one 1200-octet datagram, and a lost flight is resent when the
 * client's anti-deadlock probe, RFC 9002 §6.2.2.1, brings more budget).
 */
export const UNVALIDATED_SEND_FACTOR = 1;
/** Fixed congestion window in packets: enough for loopback, bounded burst under loss. */
const CWND_PACKETS = 48;
/** RFC 9002 §6.1.1 packet threshold. */
const PACKET_THRESHOLD = 3;
/** RFC 9002 §6.2.1 initial RTT is 333 ms; loopback peers answer within milliseconds. */
const INITIAL_RTT_MS = 50;
const MIN_PTO_MS = 20;
const MAX_PATHS = 4;
/** CIDs the server keeps issued at most, whatever the client's limit (RFC 9000 §5.1.1). */
const MAX_ISSUED_CIDS = 8;
const PATH_CHALLENGE_TRIES = 5;
/** Connection-level credit for the client's data, topped up when half is used. */
const RECV_WINDOW = 1 << 20;
/** Request streams the client may open, raised by this much when half are used. */
const STREAMS_WINDOW = 100;
/** Per-stream credit for client data (requests, HTTP/3 control and QPACK streams); not raised. */
const INITIAL_MAX_STREAM_DATA = 1 << 16;
/** HTTP/3 needs three client unidirectional streams: control, QPACK encoder and decoder. */
const INITIAL_MAX_STREAMS_UNI = 3;

/** The socket's handle for the local side of a path (compared by identity). */
export interface PathVia {
  readonly name: string;
}

/** A network path as the server sees it: the client's address plus the local side. */
export interface NetPath {
  address: string;
  port: number;
  via: PathVia;
}

interface PathState extends NetPath {
  /** Path validation (RFC 9000 §8.2) completed: a PATH_RESPONSE echoed our challenge. */
  validated: boolean;
  /**
   * The peer address is validated (RFC 9000 §8): no anti-amplification limit. True once the path
   * is validated, and from the start for a new local address the client reaches from an address
   * already validated (the move to the preferred address keeps the client's address).
   */
  addressValidated: boolean;
  challenge?: Buffer;
  /** The challenge is to go out (again) in the next packet on this path (the current path). */
  challengeDue: boolean;
  challengeSentAt: number;
  challengeTries: number;
  bytesReceived: number;
  bytesSent: number;
}

const samePath = (a: NetPath, b: NetPath): boolean => a.port === b.port && a.via === b.via && a.address === b.address;

/** A CID the server issued to this connection. */
export interface IssuedCid {
  seq: number;
  cid: Buffer;
  token: Buffer;
  retired: boolean;
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly identity: ServerIdentity;
  now(): number;
  sendDatagram(conn: Connection, datagram: Buffer, path: NetPath): void;
  /** Mints a new CID (and its stateless reset token) and routes it to `conn`. */
  mintCid(conn: Connection): { cid: Buffer; token: Buffer };
  /** Stops routing `cid` to `conn`. */
  releaseCid(conn: Connection, cid: Buffer): void;
  event(name: string, fields: Record<string, unknown>): void;
  /** The first packet of the connection decrypted. */
  accepted(conn: Connection): void;
  /** Called once the connection is gone (closed, drained or idle). */
  removed(conn: Connection): void;
  /** The handshake completed (the application opens its streams, e.g. the HTTP/3 control stream). */
  onEstablished(conn: Connection): void;
  /** An HTTP/3 request stream finished arriving; answer with conn.sendStream(). */
  onRequestStream(conn: Connection, streamId: number, data: Buffer): void;
}

export interface ConnectionOptions {
  idleTimeoutMs: number;
  preferredAddress?: { ipv4?: { address: string; port: number }; ipv6?: { address: string; port: number } };
  /** Issue NEW_CONNECTION_ID CIDs (false for plaintext QUIC-LB configs, draft-21 §5.2). */
  issueNewConnectionIds: boolean;
  disableActiveMigration: boolean;
  alpn: readonly string[];
}

type SentFrame =
  | { k: 'crypto'; level: Level; offset: number; len: number }
  | { k: 'stream'; s: SendStream; offset: number; len: number; fin: boolean }
  | { k: 'handshake_done' }
  | { k: 'new_cid'; entry: IssuedCid; retirePriorTo: number }
  | { k: 'control'; bytes: Buffer };

interface SentPacket {
  pn: number;
  time: number;
  frames: SentFrame[];
  ackEliciting: boolean;
}

class Space {
  rx?: PacketKeys;
  tx?: PacketKeys;
  discarded = false;
  nextPn = 0;
  sent = new Map<number, SentPacket>();
  largestAcked = -1;
  received = new RangeSet(32);
  largestReceivedTime = 0;
  ackPending = false;
  crypto = new Reassembler(1 << 16);
  cryptoOut: Buffer = Buffer.alloc(0);
  cryptoSent = 0;
  cryptoRetransmit: Array<[number, number]> = [];
  /** Handshake-message bytes received but not yet a complete message. */
  cryptoPartial?: Buffer;
  /** 1-RTT key update (RFC 9001 §6): current phase, previous and next receive keys. */
  keyPhase = 0;
  keyPhaseStartPn = 0;
  prevRx?: PacketKeys;
  nextRx?: PacketKeys;
}

/** Data the server sends on one stream. */
export class SendStream {
  data: Buffer = Buffer.alloc(0);
  fin = false;
  sent = 0;
  finSent = false;
  retransmit: Array<[number, number, boolean]> = [];
  acked = new RangeSet();
  finAcked = false;
  done = false;
  constructor(
    readonly id: number,
    public maxData: number,
  ) {}
  get pending(): boolean {
    return this.retransmit.length > 0 || this.sent < this.data.length || (this.fin && !this.finSent);
  }
}

let nextConnectionNumber = 1;

export class Connection {
  readonly number = nextConnectionNumber++;
  readonly spaces = [new Space(), new Space(), new Space()];
  readonly tls: TlsServerHandshake;
  /** CIDs issued by the server, by sequence number. */
  readonly issued: IssuedCid[] = [];
  /** CIDs issued by the client (for the server to use as DCID), by sequence number. */
  private readonly peerCids = new Map<number, { cid: Buffer; token?: Buffer }>();
  private dcid: Buffer;
  private dcidSeq = 0;
  private readonly paths: PathState[] = [];
  private path: PathState;
  private state: 'handshake' | 'established' | 'closing' | 'draining' | 'closed' = 'handshake';
  private handshakeDonePending = false;
  private readonly pendingNewCids: Array<{ entry: IssuedCid; retirePriorTo: number }> = [];
  private readonly pendingControl: Buffer[] = [];
  private readonly sendStreams = new Map<number, SendStream>();
  private readonly recvStreams = new Map<number, Reassembler>();
  private readonly recvRequestData = new Map<number, Buffer[]>();
  private readonly requestsDelivered = new Set<number>();
  /** Receive-side flow control: octets the client sent (highest offsets), credit given. */
  private recvData = 0;
  private recvMaxData = RECV_WINDOW;
  private maxStreamsBidi = STREAMS_WINDOW;
  private peerParams: TransportParameters = {};
  private peerMaxData = 0;
  private dataSent = 0;
  private retirePriorTo = 0;
  private srtt = INITIAL_RTT_MS;
  private rttvar = INITIAL_RTT_MS / 2;
  private ptoCount = 0;
  private lastAckElicitingSent = 0;
  private lastActivity: number;
  private closeAt = 0;
  private closeFrame?: Buffer;
  private largestAppPnReceived = -1;
  private lastPeerUsedSeq = 0;
  /** Set once a packet decrypted (until then the server keeps no state for it). */
  private accepted = false;
  private transportParameterError?: string;
  readonly createdAt: number;
  bytesServed = 0;
  clientHello?: ClientHelloInfo;

  constructor(
    private readonly host: ConnectionHost,
    private readonly opts: ConnectionOptions,
    /** The client's first Destination Connection ID (Initial keys, original_destination_connection_id). */
    readonly originalDcid: Buffer,
    clientScid: Buffer,
    path: NetPath,
  ) {
    this.dcid = clientScid;
    this.peerCids.set(0, { cid: clientScid });
    this.path = this.addPath(path);
    this.createdAt = this.lastActivity = host.now();
    const init = initialKeys(originalDcid);
    this.spaces[Level.INITIAL].rx = init.rx;
    this.spaces[Level.INITIAL].tx = init.tx;
    this.tls = new TlsServerHandshake(host.identity, opts.alpn);
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get established(): boolean {
    return this.state === 'established';
  }

  get currentPath(): NetPath {
    return this.path;
  }

  get sourceCid(): Buffer {
    return this.issued[0].cid;
  }

  private addPath(p: NetPath): PathState {
    const existing = this.paths.find((q) => samePath(q, p));
    if (existing) return existing;
    const known = this.paths.some((q) => q.addressValidated && q.address === p.address && q.port === p.port);
    const state: PathState = { address: p.address, port: p.port, via: p.via, validated: false, addressValidated: known, challengeDue: false, challengeSentAt: 0, challengeTries: 0, bytesReceived: 0, bytesSent: 0 };
    this.paths.push(state);
    if (this.paths.length > MAX_PATHS) {
      const victim = this.paths.findIndex((q) => q !== this.path && q !== state);
      if (victim >= 0) this.paths.splice(victim, 1);
    }
    return state;
  }

  private issueCid(): IssuedCid {
    const { cid, token } = this.host.mintCid(this);
    const entry: IssuedCid = { seq: this.issued.length, cid, token, retired: false };
    this.issued.push(entry);
    return entry;
  }

  private get activeIssued(): number {
    return this.issued.filter((e) => !e.retired).length;
  }

  // ------------------------------------------------------------------ receive

  /**
   * Processes one packet (`pkt` ends where the packet ends). `pnOffset`: offset of the protected
   * packet number; `datagramSize`: octets to count against anti-amplification (0 for the second
   * and later packets of a datagram); `dcidLength`: length of the DCID the packet carried. Bad
   * packets are dropped silently.
   */
  onPacket(level: Level, pkt: Buffer, pnOffset: number, path: NetPath, datagramSize: number, dcidLength: number): void {
    if (this.state === 'closed') return;
    const space = this.spaces[level];
    if (!space.rx || space.discarded) return;
    let candidate: PacketKeys | undefined;
    const opened = openPacket(
      space.rx,
      pkt,
      pnOffset,
      space.received.largest,
      level === Level.APPLICATION
        ? (b, n) => {
            if (((b & KEY_PHASE_BIT) !== 0 ? 1 : 0) === space.keyPhase) return space.rx;
            // RFC 9001 §6.3: the other phase is the previous keys for older packets, else the next ones.
            if (space.prevRx && n < space.keyPhaseStartPn) return space.prevRx;
            space.nextRx ??= space.rx!.next();
            candidate = space.nextRx;
            return candidate;
          }
        : undefined,
    );
    if (!opened) return;
    const { pn, payload, first } = opened;
    if (candidate) {
      // The peer started a key update (RFC 9001 §6.2): follow it in both directions.
      space.prevRx = space.rx;
      space.rx = candidate;
      space.tx = space.tx!.next();
      space.nextRx = undefined;
      space.keyPhase ^= 1;
      space.keyPhaseStartPn = pn;
      this.host.event('key-update', { conn: this.number, phase: space.keyPhase, pn });
    }
    const long = (first & 0x80) !== 0;
    if (!this.accepted) {
      // Only now mint the handshake SCID (seq 0): garbage Initials cost no nonce and no state.
      this.accepted = true;
      this.issueCid();
      this.host.accepted(this);
    }
    if ((first & (long ? 0x0c : 0x18)) !== 0) {
      this.close(TransportError.PROTOCOL_VIOLATION, 'reserved bits set');
      return;
    }
    // RFC 9000 §8.1: every datagram attributed to the connection counts toward the
    // anti-amplification budget, duplicates too (a client's retransmitted Initial unblocks the
    // server's retransmission).
    const pathState = this.addPath(path);
    pathState.bytesReceived += datagramSize;
    if (space.received.has(pn)) return; // duplicate
    this.lastActivity = this.host.now();

    if (level === Level.HANDSHAKE && !this.spaces[Level.INITIAL].discarded) {
      // RFC 9001 §4.9.1: the server discards Initial keys on its first Handshake packet;
      // receiving it also validates the client's address (RFC 9000 §8.1).
      this.discardSpace(Level.INITIAL);
      this.path.validated = true;
      this.path.addressValidated = true;
    }

    const info = { ackEliciting: false, probingOnly: true };
    const ok = this.processFrames(level, payload, pathState, info);
    if (!ok) return;
    space.received.add(pn, pn + 1);
    if (pn === space.received.largest) space.largestReceivedTime = this.host.now();
    if (info.ackEliciting) space.ackPending = true;

    if (level === Level.APPLICATION) {
      const newest = pn > this.largestAppPnReceived;
      if (newest) this.largestAppPnReceived = pn;
      if (pathState !== this.path && !info.probingOnly && newest && this.state === 'established') {
        this.migrateTo(pathState, pkt.subarray(1, 1 + dcidLength));
      }
    }
  }

  private processFrames(level: Level, p: Buffer, path: PathState, info: { ackEliciting: boolean; probingOnly: boolean }): boolean {
    let o = 0;
    const vi = (): number => {
      const v = readVarint(p, o);
      if (v < 0) throw new FrameError();
      o += varintSizeAt(p, o);
      return v;
    };
    const bytes = (n: number): Buffer => {
      if (o + n > p.length || n < 0) throw new FrameError();
      const b = p.subarray(o, o + n);
      o += n;
      return b;
    };
    try {
      while (o < p.length) {
        const type = vi();
        if (type !== F.PADDING && type !== F.ACK && type !== F.ACK_ECN && type !== F.CONNECTION_CLOSE && type !== F.CONNECTION_CLOSE_APP) info.ackEliciting = true;
        if (type !== F.PADDING && type !== F.PATH_CHALLENGE && type !== F.PATH_RESPONSE && type !== F.NEW_CONNECTION_ID) info.probingOnly = false;
        if (level !== Level.APPLICATION && !HANDSHAKE_FRAMES.has(type)) {
          this.close(TransportError.PROTOCOL_VIOLATION, `frame 0x${type.toString(16)} not allowed at ${LEVEL_NAMES[level]}`);
          return false;
        }
        switch (type) {
          case F.PADDING:
          case F.PING:
            break;
          case F.ACK:
          case F.ACK_ECN: {
            const largest = vi();
            vi(); // ack delay
            const count = vi();
            let hi = largest;
            let lo = largest - vi();
            const ranges: Array<[number, number]> = [[lo, hi]];
            for (let i = 0; i < count; i++) {
              const gap = vi();
              const len = vi();
              hi = lo - gap - 2;
              lo = hi - len;
              if (lo < 0) throw new FrameError();
              ranges.push([lo, hi]);
            }
            if (type === F.ACK_ECN) {
              vi();
              vi();
              vi();
            }
            if (lo < 0) throw new FrameError();
            this.onAck(level, largest, ranges);
            break;
          }
          case F.RESET_STREAM:
            vi();
            vi();
            vi();
            break;
          case F.STOP_SENDING: {
            const id = vi();
            vi();
            const s = this.sendStreams.get(id);
            if (s) {
              s.done = true;
              s.retransmit.length = 0;
              s.sent = s.data.length;
              s.finSent = true;
            }
            break;
          }
          case F.CRYPTO: {
            const off = vi();
            const data = bytes(vi());
            const got = this.spaces[level].crypto.push(off, data);
            if (got === undefined) {
              // RFC 9000 §7.5: more out-of-order CRYPTO data than the server buffers.
              this.close(TransportError.CRYPTO_BUFFER_EXCEEDED, 'crypto buffer exceeded');
              return false;
            }
            if (got.length > 0 && !this.onCryptoData(level, got)) return false;
            break;
          }
          case F.NEW_TOKEN:
          case F.HANDSHAKE_DONE:
            this.close(TransportError.PROTOCOL_VIOLATION, 'client sent a server-only frame');
            return false;
          case F.MAX_DATA:
            this.peerMaxData = Math.max(this.peerMaxData, vi());
            break;
          case F.MAX_STREAM_DATA: {
            const s = this.sendStreams.get(vi());
            const max = vi();
            if (s) s.maxData = Math.max(s.maxData, max);
            break;
          }
          case F.MAX_STREAMS_BIDI:
          case F.MAX_STREAMS_UNI:
          case F.DATA_BLOCKED:
          case F.STREAMS_BLOCKED_BIDI:
          case F.STREAMS_BLOCKED_UNI:
            vi();
            break;
          case F.STREAM_DATA_BLOCKED:
            vi();
            vi();
            break;
          case F.NEW_CONNECTION_ID: {
            const seq = vi();
            const rpt = vi();
            const cid = Buffer.from(bytes(bytes(1)[0]));
            const token = Buffer.from(bytes(16));
            if (cid.length < 1 || cid.length > 20 || rpt > seq) throw new FrameError();
            this.onPeerNewCid(seq, rpt, cid, token);
            break;
          }
          case F.RETIRE_CONNECTION_ID:
            this.onRetireCid(vi());
            break;
          case F.PATH_CHALLENGE:
            this.respondToChallenge(path, Buffer.from(bytes(8)));
            break;
          case F.PATH_RESPONSE:
            this.onPathResponse(bytes(8));
            break;
          case F.CONNECTION_CLOSE:
          case F.CONNECTION_CLOSE_APP: {
            const code = vi();
            if (type === F.CONNECTION_CLOSE) vi();
            const reason = bytes(vi()).toString('utf8');
            this.onPeerClose(code, reason, type === F.CONNECTION_CLOSE_APP);
            return true;
          }
          default:
            if (type >= F.STREAM && type <= F.STREAM + 7) {
              const id = vi();
              const off = type & 0x04 ? vi() : 0;
              const len = type & 0x02 ? vi() : p.length - o;
              const data = bytes(len);
              this.onStreamFrame(id, off, data, (type & 0x01) !== 0);
              if (this.state === 'closing') return false;
              break;
            }
            this.close(TransportError.FRAME_ENCODING_ERROR, `unknown frame type 0x${type.toString(16)}`);
            return false;
        }
      }
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.close(TransportError.FRAME_ENCODING_ERROR, 'malformed frame');
      return false;
    }
    return true;
  }

  private onCryptoData(level: Level, data: Buffer): boolean {
    const space = this.spaces[level];
    // Keep unconsumed bytes (a message split across CRYPTO frames) in front of new data.
    const buf = space.cryptoPartial ? Buffer.concat([space.cryptoPartial, data]) : data;
    const { messages, consumed } = splitHandshakeMessages(buf);
    space.cryptoPartial = consumed < buf.length ? Buffer.from(buf.subarray(consumed)) : undefined;
    for (const msg of messages) {
      if (level === Level.INITIAL) {
        const r = this.tls.onClientHello(msg, (ch) => this.serverTransportParameters(ch));
        if (!r.ok) {
          if (this.transportParameterError) this.close(TransportError.TRANSPORT_PARAMETER_ERROR, this.transportParameterError, Level.INITIAL);
          else this.close(cryptoError(r.alert), r.reason, Level.INITIAL);
          return false;
        }
        this.clientHello = r.value.clientHello;
        space.cryptoOut = r.value.initial;
        const hs = this.spaces[Level.HANDSHAKE];
        hs.rx = new PacketKeys(r.value.handshakeSecrets.client);
        hs.tx = new PacketKeys(r.value.handshakeSecrets.server);
        hs.cryptoOut = r.value.handshake;
        const app = this.spaces[Level.APPLICATION];
        app.rx = new PacketKeys(r.value.applicationSecrets.client);
        app.tx = new PacketKeys(r.value.applicationSecrets.server);
      } else if (level === Level.HANDSHAKE) {
        const r = this.tls.onClientFinished(msg);
        if (!r.ok) {
          this.close(cryptoError(r.alert), r.reason, Level.HANDSHAKE);
          return false;
        }
        this.onHandshakeComplete();
      } else {
        // Post-handshake messages (NewSessionTicket, KeyUpdate) are not expected from a client.
        this.close(TransportError.PROTOCOL_VIOLATION, 'unexpected post-handshake message');
        return false;
      }
    }
    return true;
  }

  private serverTransportParameters(ch: ClientHelloInfo): Buffer | number {
    try {
      this.peerParams = decodeTransportParameters(ch.transportParameters, { sender: 'client' });
    } catch (err) {
      this.transportParameterError = err instanceof Error ? err.message : String(err);
      return TlsAlert.ILLEGAL_PARAMETER;
    }
    this.peerMaxData = this.peerParams.initialMaxData ?? 0;
    const params: TransportParameters = {
      originalDestinationConnectionId: this.originalDcid,
      initialSourceConnectionId: this.issued[0].cid,
      statelessResetToken: this.issued[0].token,
      maxIdleTimeout: this.opts.idleTimeoutMs,
      maxUdpPayloadSize: MAX_DATAGRAM_SIZE,
      initialMaxData: RECV_WINDOW,
      initialMaxStreamDataBidiLocal: INITIAL_MAX_STREAM_DATA,
      initialMaxStreamDataBidiRemote: INITIAL_MAX_STREAM_DATA,
      initialMaxStreamDataUni: INITIAL_MAX_STREAM_DATA,
      initialMaxStreamsBidi: STREAMS_WINDOW,
      initialMaxStreamsUni: INITIAL_MAX_STREAMS_UNI,
      activeConnectionIdLimit: MAX_ISSUED_CIDS,
      disableActiveMigration: this.opts.disableActiveMigration || undefined,
    };
    const pa = this.opts.preferredAddress;
    if (pa && (pa.ipv4 || pa.ipv6)) {
      const entry = this.issueCid(); // seq 1 (RFC 9000 §5.1.1)
      const preferred: PreferredAddress = { ipv4: pa.ipv4, ipv6: pa.ipv6, connectionId: entry.cid, statelessResetToken: entry.token };
      params.preferredAddress = preferred;
      this.host.event('cid-issued', { conn: this.number, seq: entry.seq, cid: entry.cid.toString('hex'), purpose: 'preferred_address' });
    }
    return encodeTransportParameters(params);
  }

  private onHandshakeComplete(): void {
    this.state = 'established';
    this.discardSpace(Level.HANDSHAKE);
    this.handshakeDonePending = true; // RFC 9001 §4.1.2: the server confirms with HANDSHAKE_DONE
    this.host.event('handshake-complete', {
      conn: this.number,
      alpn: this.clientHello?.alpn.includes('h3') ? 'h3' : this.clientHello?.alpn[0],
      sni: this.clientHello?.serverName,
      ms: this.host.now() - this.createdAt,
    });
    if (this.opts.issueNewConnectionIds) this.topUpCids(0);
    this.host.onEstablished(this);
  }

  /** Issues NEW_CONNECTION_ID CIDs until the peer's limit (at most MAX_ISSUED_CIDS). */
  private topUpCids(retirePriorTo: number): void {
    const limit = Math.min(this.peerParams.activeConnectionIdLimit ?? 2, MAX_ISSUED_CIDS);
    while (this.activeIssued < limit) {
      const entry = this.issueCid();
      this.pendingNewCids.push({ entry, retirePriorTo });
      this.host.event('cid-issued', { conn: this.number, seq: entry.seq, cid: entry.cid.toString('hex'), purpose: 'new_connection_id', retirePriorTo });
    }
  }

  /**
   * Re-issues every CID under the host's current generator (after a QUIC-LB config change) and
   * asks the client to retire the old ones with Retire Prior To (draft-21 §3.1, RFC 9000 §5.1.2).
   */
  reissueCids(): void {
    if (this.state !== 'established') return;
    const rpt = this.issued.length;
    this.retirePriorTo = rpt;
    const limit = Math.min(this.peerParams.activeConnectionIdLimit ?? 2, MAX_ISSUED_CIDS);
    // Old CIDs stay routable until the client retires them; new ones replace them all.
    for (let i = 0; i < limit; i++) {
      const entry = this.issueCid();
      this.pendingNewCids.push({ entry, retirePriorTo: rpt });
      this.host.event('cid-issued', { conn: this.number, seq: entry.seq, cid: entry.cid.toString('hex'), purpose: 'rotation', retirePriorTo: rpt });
    }
    this.flush();
  }

  private onRetireCid(seq: number): void {
    const entry = this.issued[seq];
    if (!entry) {
      this.close(TransportError.PROTOCOL_VIOLATION, 'retired a CID never issued');
      return;
    }
    if (entry.retired) return;
    entry.retired = true;
    this.host.releaseCid(this, entry.cid);
    this.host.event('cid-retired', { conn: this.number, seq, cid: entry.cid.toString('hex') });
    if (this.opts.issueNewConnectionIds && this.state === 'established') this.topUpCids(this.retirePriorTo);
  }

  private onPeerNewCid(seq: number, rpt: number, cid: Buffer, token: Buffer): void {
    if (!this.peerCids.has(seq)) this.peerCids.set(seq, { cid, token });
    for (const [s] of this.peerCids) {
      if (s < rpt) {
        this.peerCids.delete(s);
        this.queueControl(frameRetireConnectionId(s));
        if (s === this.dcidSeq) this.switchDcid();
      }
    }
  }

  /** Moves to an unused client CID (new path, or the current one was retired). */
  private switchDcid(): boolean {
    for (const [s, e] of [...this.peerCids].sort((a, b) => a[0] - b[0])) {
      if (s > this.dcidSeq) {
        const old = this.dcidSeq;
        this.dcid = e.cid;
        this.dcidSeq = s;
        if (this.peerCids.has(old)) {
          this.peerCids.delete(old);
          this.queueControl(frameRetireConnectionId(old));
        }
        return true;
      }
    }
    return false;
  }

  private respondToChallenge(path: PathState, data: Buffer): void {
    const w = new Writer(MAX_DATAGRAM_SIZE);
    w.u8(F.PATH_RESPONSE).bytes(data);
    // Validate the new path in the same datagram (RFC 9000 §8.2, §9.6.2).
    if (!path.validated) {
      if (!path.challenge) path.challenge = randomBytes(8);
      path.challengeSentAt = this.host.now();
      path.challengeTries++;
      w.u8(F.PATH_CHALLENGE).bytes(path.challenge);
    }
    this.sendProbe(path, w.view());
  }

  private onPathResponse(data: Buffer): void {
    for (const p of this.paths) {
      if (p.challenge && timingSafeEqual(p.challenge, data)) {
        p.validated = true;
        p.addressValidated = true;
        p.challenge = undefined;
        this.host.event('path-validated', { conn: this.number, address: p.address, port: p.port, via: p.via.name });
        return;
      }
    }
  }

  private migrateTo(p: PathState, dcid: Buffer): void {
    const from = this.path;
    this.path = p;
    // A client that moved to a new CID expects a new one from us too (RFC 9000 §9.5).
    const usedSeq = this.issued.find((e) => e.cid.equals(dcid))?.seq ?? -1;
    const rotated = usedSeq !== 0 && usedSeq !== this.lastPeerUsedSeq;
    this.lastPeerUsedSeq = usedSeq;
    if (rotated) this.switchDcid();
    this.host.event('migrated', {
      conn: this.number,
      from: `${from.address}:${from.port}`,
      fromVia: from.via.name,
      to: `${p.address}:${p.port}`,
      via: p.via.name,
      cidSeq: usedSeq,
    });
    if (!p.validated && !p.challenge) {
      // RFC 9000 §9.3: validate the new peer address. The challenge rides in the next packet on
      // the path, ahead of stream data, so the anti-amplification budget never starves it.
      p.challenge = randomBytes(8);
      p.challengeDue = true;
      p.challengeTries = 1;
    }
  }


  private onStreamFrame(id: number, off: number, data: Buffer, fin: boolean): void {
    if ((id & 0x01) === 1 && (id & 0x02) === 0) {
      this.close(TransportError.STREAM_STATE_ERROR, 'STREAM on a server-initiated bidirectional stream');
      return;
    }
    if ((id & 0x03) === 0x03) {
      this.close(TransportError.STREAM_STATE_ERROR, 'STREAM on a server send-only stream');
      return;
    }
    const index = Math.floor(id / 4);
    if ((id & 0x02) === 0 ? index >= this.maxStreamsBidi : index >= INITIAL_MAX_STREAMS_UNI) {
      this.close(TransportError.STREAM_LIMIT_ERROR, `stream ${id} beyond the advertised limit`);
      return;
    }
    let r = this.recvStreams.get(id);
    if (!r) {
      r = new Reassembler(INITIAL_MAX_STREAM_DATA);
      this.recvStreams.set(id, r);
    }
    const before = r.highest;
    const got = r.push(off, data, fin);
    this.recvData += Math.max(0, r.highest - before);
    if (got === undefined || r.highest > INITIAL_MAX_STREAM_DATA || this.recvData > this.recvMaxData) {
      this.close(TransportError.FLOW_CONTROL_ERROR, 'stream data beyond the advertised limit');
      return;
    }
    // Keep credit ahead of the client (RFC 9000 §4.2): more data and more request streams.
    if (this.recvData > this.recvMaxData - RECV_WINDOW / 2) {
      this.recvMaxData = this.recvData + RECV_WINDOW;
      this.queueControl(frameWithVarint(F.MAX_DATA, this.recvMaxData));
    }
    if ((id & 0x02) === 0 && r.finished && index + 1 > this.maxStreamsBidi - STREAMS_WINDOW / 2) {
      this.maxStreamsBidi += STREAMS_WINDOW;
      this.queueControl(frameWithVarint(F.MAX_STREAMS_BIDI, this.maxStreamsBidi));
    }
    if ((id & 0x02) !== 0) return; // client unidirectional streams (control, QPACK): read and drop
    if (this.requestsDelivered.has(id)) return; // a retransmitted copy of a request already answered
    const parts = this.recvRequestData.get(id) ?? [];
    if (got.length > 0) parts.push(got);
    this.recvRequestData.set(id, parts);
    if (r.finished) {
      // Delivered exactly once: the response may be produced asynchronously (static files).
      this.requestsDelivered.add(id);
      this.recvRequestData.delete(id);
      this.host.onRequestStream(this, id, Buffer.concat(parts));
    }
  }

  private onPeerClose(code: number, reason: string, app: boolean): void {
    if (this.state === 'draining' || this.state === 'closed') return;
    this.host.event('closed', { conn: this.number, by: 'peer', code, app, reason, bytesServed: this.bytesServed });
    this.state = 'draining';
    this.closeAt = this.host.now() + 3 * this.pto();
  }

  // ------------------------------------------------------------------ acknowledgements, loss

  private onAck(level: Level, largest: number, ranges: Array<[number, number]>): void {
    const space = this.spaces[level];
    if (largest >= space.nextPn) {
      this.close(TransportError.PROTOCOL_VIOLATION, 'ACK of an unsent packet');
      return;
    }
    const now = this.host.now();
    let newlyAcked = false;
    for (const [pn, pkt] of space.sent) {
      let acked = false;
      for (const [lo, hi] of ranges) if (pn >= lo && pn <= hi) acked = true;
      if (!acked) continue;
      space.sent.delete(pn);
      newlyAcked = true;
      if (pn === largest && pkt.ackEliciting) this.updateRtt(now - pkt.time);
      for (const f of pkt.frames) this.onFrameAcked(f);
    }
    if (largest > space.largestAcked) space.largestAcked = largest;
    if (newlyAcked) this.ptoCount = 0;
    this.detectLoss(level, now);
  }

  private updateRtt(sample: number): void {
    const s = Math.max(sample, 0.1);
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - s);
    this.srtt = 0.875 * this.srtt + 0.125 * s;
  }

  private pto(): number {
    return Math.max(this.srtt + Math.max(4 * this.rttvar, 1) + (this.peerParams.maxAckDelay ?? 25), MIN_PTO_MS);
  }

  private detectLoss(level: Level, now: number): void {
    const space = this.spaces[level];
    const lossDelay = Math.max(1.125 * this.srtt, 2);
    for (const [pn, pkt] of space.sent) {
      if (pn >= space.largestAcked) continue;
      if (pn <= space.largestAcked - PACKET_THRESHOLD || pkt.time <= now - lossDelay) {
        space.sent.delete(pn);
        this.onPacketLost(level, pkt);
      }
    }
  }

  private onPacketLost(level: Level, pkt: SentPacket): void {
    for (const f of pkt.frames) {
      switch (f.k) {
        case 'crypto':
          if (!this.spaces[level].discarded) this.spaces[level].cryptoRetransmit.push([f.offset, f.len]);
          break;
        case 'stream':
          if (!f.s.done) f.s.retransmit.push([f.offset, f.len, f.fin]);
          break;
        case 'handshake_done':
          this.handshakeDonePending = true;
          break;
        case 'new_cid':
          if (!f.entry.retired) this.pendingNewCids.push({ entry: f.entry, retirePriorTo: f.retirePriorTo });
          break;
        case 'control':
          this.pendingControl.push(f.bytes);
          break;
      }
    }
  }

  private onFrameAcked(f: SentFrame): void {
    if (f.k !== 'stream') return;
    const s = f.s;
    s.acked.add(f.offset, f.offset + f.len);
    if (f.fin) s.finAcked = true;
    if (!s.done && s.fin && s.finAcked && s.acked.covers(0, s.data.length)) {
      s.done = true;
      if ((s.id & 0x02) === 0) this.host.event('stream-served', { conn: this.number, stream: s.id, bytes: s.data.length, path: `${this.path.address}:${this.path.port}`, via: this.path.via.name });
    }
  }

  private discardSpace(level: Level): void {
    const space = this.spaces[level];
    space.discarded = true;
    space.sent.clear();
    space.cryptoRetransmit.length = 0;
    space.ackPending = false;
  }

  /** Timer: loss detection, probe timeout, path validation retries, idle and close timers. */
  onTimer(): void {
    const now = this.host.now();
    if (this.state === 'closing' || this.state === 'draining') {
      if (now >= this.closeAt) this.finish();
      return;
    }
    if (this.state === 'closed') return;
    if (now - this.lastActivity > this.opts.idleTimeoutMs) {
      this.host.event('closed', { conn: this.number, by: 'idle', bytesServed: this.bytesServed });
      this.finish();
      return;
    }
    for (const p of this.paths) {
      if (p.challenge && !p.validated && !p.challengeDue && now - p.challengeSentAt > 3 * this.pto()) {
        if (p.challengeTries >= PATH_CHALLENGE_TRIES) {
          p.challenge = undefined;
          // RFC 9000 §9.3.2: a failed validation of the current path falls back to the last
          // validated one.
          const fallback = p === this.path ? this.paths.find((q) => q !== p && q.validated) : undefined;
          if (fallback) this.path = fallback;
          this.host.event('path-failed', { conn: this.number, address: p.address, port: p.port, via: p.via.name, revertedTo: fallback?.via.name });
          continue;
        }
        p.challengeTries++;
        if (p === this.path) {
          p.challengeDue = true;
        } else {
          p.challengeSentAt = now;
          this.sendProbe(p, Buffer.concat([Buffer.of(F.PATH_CHALLENGE), p.challenge]));
        }
      }
    }
    let outstanding = false;
    for (let l = 0; l < 3; l++) {
      const space = this.spaces[l];
      if (space.discarded) continue;
      this.detectLoss(l as Level, now);
      for (const pkt of space.sent.values()) if (pkt.ackEliciting) outstanding = true;
    }
    if (outstanding && now - this.lastAckElicitingSent > this.pto() * 2 ** this.ptoCount) {
      // Probe timeout (RFC 9002 §6.2): treat every unacknowledged packet as lost and resend.
      this.ptoCount = Math.min(this.ptoCount + 1, 6);
      for (let l = 0; l < 3; l++) {
        const space = this.spaces[l];
        if (space.discarded) continue;
        for (const [pn, pkt] of space.sent) {
          if (!pkt.ackEliciting) continue;
          space.sent.delete(pn);
          this.onPacketLost(l as Level, pkt);
        }
      }
      this.lastAckElicitingSent = now;
    }
    this.flush();
  }

  // ------------------------------------------------------------------ streams (send side)

  /** Queues `data` on a server send stream (a response, or the HTTP/3 control stream). */
  sendStream(id: number, data: Buffer, fin: boolean): void {
    let s = this.sendStreams.get(id);
    if (!s) {
      const p = this.peerParams;
      const credit = (id & 0x02) !== 0 ? (p.initialMaxStreamDataUni ?? 0) : (p.initialMaxStreamDataBidiLocal ?? 0);
      s = new SendStream(id, credit);
      this.sendStreams.set(id, s);
    }
    s.data = s.data.length === 0 ? data : Buffer.concat([s.data, data]);
    s.fin = fin;
    if (fin && (id & 0x02) === 0) this.bytesServed += data.length;
    this.flush();
  }

  private queueControl(frame: Buffer): void {
    this.pendingControl.push(frame);
  }

  // ------------------------------------------------------------------ send

  private inFlight(): number {
    let n = 0;
    for (const s of this.spaces) for (const p of s.sent.values()) if (p.ackEliciting) n++;
    return n;
  }

  private sendProbe(path: PathState, frames: Buffer): void {
    const app = this.spaces[Level.APPLICATION];
    if (!app.tx) return;
    // RFC 9000 §8.2.1: expand datagrams carrying PATH_CHALLENGE / PATH_RESPONSE to 1200 octets,
    // within the anti-amplification limit of an unvalidated path.
    const limit = Math.min(MAX_DATAGRAM_SIZE, sendBudget(path));
    const overhead = 1 + this.dcid.length + PN_LEN + AEAD_TAG_LEN;
    if (limit < overhead + frames.length) return;
    const payload = Buffer.alloc(limit - overhead);
    frames.copy(payload);
    const pkt = this.protect(Level.APPLICATION, payload);
    this.record(Level.APPLICATION, { pn: app.nextPn - 1, time: this.host.now(), frames: [], ackEliciting: true }, false);
    path.bytesSent += pkt.length;
    this.host.sendDatagram(this, pkt, path);
  }

  /** Sends everything that is ready, as long as congestion window and path limits allow. */
  flush(): void {
    if (this.state === 'closed' || this.state === 'draining') return;
    if (this.state === 'closing') return;
    for (let guard = 0; guard < 256; guard++) {
      const path = this.path;
      let budget = Math.min(MAX_DATAGRAM_SIZE, sendBudget(path));
      // Smallest useful packet: a short header, a PATH_CHALLENGE or an ACK, the AEAD tag.
      if (budget < this.headerLength(Level.APPLICATION) + AEAD_TAG_LEN + 12) return;
      const startBudget = budget;
      const cwndOpen = this.inFlight() < CWND_PACKETS;
      const parts: Array<{ level: Level; payload: Buffer; frames: SentFrame[]; ackEliciting: boolean; challenge: boolean }> = [];
      for (const l of ALL_LEVELS) {
        const space = this.spaces[l];
        if (!space.tx || space.discarded) continue;
        const overhead = this.headerLength(l) + AEAD_TAG_LEN;
        if (budget - overhead < 8) break;
        const built = this.buildPayload(l, budget - overhead, cwndOpen);
        if (!built) continue;
        parts.push({ level: l, ...built });
        budget -= overhead + built.payload.length;
      }
      if (parts.length === 0) return;
      // RFC 9000 §14.1: a datagram carrying an Initial is padded to 1200 octets (the padding
      // goes into the last packet so every coalesced packet stays intact).
      const hasInitial = parts.some((p) => p.level === Level.INITIAL);
      const sizes = parts.map((p) => this.headerLength(p.level) + p.payload.length + AEAD_TAG_LEN);
      let total = sizes.reduce((a, b) => a + b, 0);
      // RFC 9000 §8.2.1: so is one carrying PATH_CHALLENGE, as far as the path's limit allows.
      const padTo = hasInitial ? MAX_DATAGRAM_SIZE : parts.some((p) => p.challenge) ? startBudget : 0;
      if (total < padTo) {
        const last = parts[parts.length - 1];
        last.payload = Buffer.concat([last.payload, Buffer.alloc(padTo - total)]);
        total = padTo;
      }
      const packets: Buffer[] = [];
      const now = this.host.now();
      for (const part of parts) {
        // Short packets need 4 octets of payload beyond the PN for the header-protection sample.
        if (part.payload.length < 4) part.payload = Buffer.concat([part.payload, Buffer.alloc(4 - part.payload.length)]);
        packets.push(this.protect(part.level, part.payload));
        const pn = this.spaces[part.level].nextPn - 1;
        this.record(part.level, { pn, time: now, frames: part.frames, ackEliciting: part.ackEliciting }, part.ackEliciting);
      }
      const datagram = packets.length === 1 ? packets[0] : Buffer.concat(packets);
      path.bytesSent += datagram.length;
      this.host.sendDatagram(this, datagram, path);
    }
  }

  private record(level: Level, pkt: SentPacket, ackEliciting: boolean): void {
    if (!ackEliciting && pkt.frames.length === 0) {
      if (pkt.ackEliciting) this.lastAckElicitingSent = pkt.time;
      return;
    }
    this.spaces[level].sent.set(pkt.pn, pkt);
    if (ackEliciting) this.lastAckElicitingSent = pkt.time;
  }

  private headerLength(level: Level): number {
    if (level === Level.APPLICATION) return 1 + this.dcid.length + PN_LEN;
    const scid = this.issued[0].cid;
    // first octet, version, DCIL+DCID, SCIL+SCID, [token length 0], 2-octet Length, PN
    return 1 + 4 + 1 + this.dcid.length + 1 + scid.length + (level === Level.INITIAL ? 1 : 0) + 2 + PN_LEN;
  }

  /** Builds the frames of one packet at `level` within `room` octets, or undefined if none. */
  private buildPayload(
    level: Level,
    room: number,
    cwndOpen: boolean,
  ): { payload: Buffer; frames: SentFrame[]; ackEliciting: boolean; challenge: boolean } | undefined {
    const space = this.spaces[level];
    const w = new Writer(room);
    const frames: SentFrame[] = [];
    let ackEliciting = false;
    let challenge = false;
    if (space.ackPending) {
      this.writeAck(w, space);
      space.ackPending = false;
    }
    const p = this.path;
    if (level === Level.APPLICATION && p.challengeDue && p.challenge && w.room >= 9) {
      w.u8(F.PATH_CHALLENGE).bytes(p.challenge);
      p.challengeDue = false;
      p.challengeSentAt = this.host.now();
      challenge = true;
      ackEliciting = true;
    }
    if (cwndOpen) {
      // CRYPTO: retransmissions first, then new data.
      while (w.room > 16 && (space.cryptoRetransmit.length > 0 || space.cryptoSent < space.cryptoOut.length)) {
        let off: number;
        let len: number;
        const rt = space.cryptoRetransmit[0];
        if (rt) {
          off = rt[0];
          len = Math.min(rt[1], w.room - 1 - vlen(rt[0]) - 2);
          if (len < rt[1]) rt.splice(0, 2, rt[0] + len, rt[1] - len);
          else space.cryptoRetransmit.shift();
        } else {
          off = space.cryptoSent;
          len = Math.min(space.cryptoOut.length - off, w.room - 1 - vlen(off) - 2);
          space.cryptoSent += len;
        }
        if (len <= 0) break;
        w.u8(F.CRYPTO).varint(off).varint(len).bytes(space.cryptoOut.subarray(off, off + len));
        frames.push({ k: 'crypto', level, offset: off, len });
        ackEliciting = true;
      }
      if (level === Level.APPLICATION) {
        if (this.handshakeDonePending && w.room > 1) {
          w.u8(F.HANDSHAKE_DONE);
          frames.push({ k: 'handshake_done' });
          this.handshakeDonePending = false;
          ackEliciting = true;
        }
        while (this.pendingNewCids.length > 0 && w.room > 64) {
          const n = this.pendingNewCids.shift()!;
          if (n.entry.retired) continue;
          w.u8(F.NEW_CONNECTION_ID).varint(n.entry.seq).varint(n.retirePriorTo).u8(n.entry.cid.length).bytes(n.entry.cid).bytes(n.entry.token);
          frames.push({ k: 'new_cid', entry: n.entry, retirePriorTo: n.retirePriorTo });
          ackEliciting = true;
        }
        while (this.pendingControl.length > 0 && w.room > this.pendingControl[0].length) {
          const b = this.pendingControl.shift()!;
          w.bytes(b);
          frames.push({ k: 'control', bytes: b });
          ackEliciting = true;
        }
        for (const s of this.sendStreams.values()) {
          while (s.pending && w.room > 24) {
            const wrote = this.writeStreamFrame(w, s, frames);
            if (!wrote) break;
            ackEliciting = true;
          }
          if (w.room <= 24) break;
        }
      }
    }
    if (w.pos === 0) return undefined;
    return { payload: Buffer.from(w.view()), frames, ackEliciting, challenge };
  }

  private writeStreamFrame(w: Writer, s: SendStream, frames: SentFrame[]): boolean {
    let off: number;
    let len: number;
    let fin = false;
    const rt = s.retransmit[0];
    const fixed = 1 + vlen(s.id) + 8 + 2; // type, id, offset (up to 8), length (2)
    if (rt) {
      off = rt[0];
      len = Math.min(rt[1], w.room - fixed);
      if (len < rt[1]) {
        rt[0] += len;
        rt[1] -= len;
      } else {
        s.retransmit.shift();
        fin = rt[2];
      }
    } else {
      off = s.sent;
      const streamCredit = s.maxData - off;
      const connCredit = this.peerMaxData - this.dataSent;
      len = Math.min(s.data.length - off, w.room - fixed, streamCredit, connCredit);
      if (len < 0) len = 0;
      fin = s.fin && off + len === s.data.length;
      if (len === 0 && !fin) return false;
      s.sent += len;
      this.dataSent += len;
      if (fin) {
        s.finSent = true;
        if ((s.id & 0x02) === 0) this.host.event('stream-sent', { conn: this.number, stream: s.id, bytes: s.data.length, path: `${this.path.address}:${this.path.port}`, via: this.path.via.name });
      }
    }
    if (len < 0) return false;
    w.u8(F.STREAM | 0x04 | 0x02 | (fin ? 0x01 : 0)).varint(s.id).varint(off).varint(len).bytes(s.data.subarray(off, off + len));
    frames.push({ k: 'stream', s, offset: off, len, fin });
    return true;
  }

  private writeAck(w: Writer, space: Space): void {
    const r = space.received.ranges;
    if (r.length === 0) return;
    const last = r[r.length - 1];
    const largest = last[1] - 1;
    // ACK Delay in microseconds scaled by the default ack_delay_exponent 3 (RFC 9000 §18.2).
    const delay = Math.max(0, Math.floor(((this.host.now() - space.largestReceivedTime) * 1000) / 8));
    w.u8(F.ACK).varint(largest).varint(delay).varint(r.length - 1).varint(last[1] - 1 - last[0]);
    for (let i = r.length - 2; i >= 0; i--) {
      const gap = r[i + 1][0] - r[i][1] - 1; // unacknowledged packets between ranges, minus one
      w.varint(gap).varint(r[i][1] - 1 - r[i][0]);
    }
  }

  /** Header + packet protection for one packet carrying `payload`. */
  private protect(level: Level, payload: Buffer): Buffer {
    const space = this.spaces[level];
    const keys = space.tx!;
    const pn = space.nextPn++;
    const hl = this.headerLength(level);
    const h = Buffer.alloc(hl);
    let o = 0;
    if (level === Level.APPLICATION) {
      h[o++] = 0x40 | (space.keyPhase !== 0 ? KEY_PHASE_BIT : 0) | (PN_LEN - 1);
      o += this.dcid.copy(h, o);
    } else {
      const type = level === Level.INITIAL ? 0x00 : 0x02;
      h[o++] = 0xc0 | (type << 4) | (PN_LEN - 1);
      h.writeUInt32BE(1, o);
      o += 4;
      h[o++] = this.dcid.length;
      o += this.dcid.copy(h, o);
      const scid = this.issued[0].cid;
      h[o++] = scid.length;
      o += scid.copy(h, o);
      if (level === Level.INITIAL) h[o++] = 0; // token length
      h.writeUInt16BE(0x4000 | (PN_LEN + payload.length + AEAD_TAG_LEN), o);
      o += 2;
    }
    return sealPacket(keys, h, o, pn, payload);
  }

  // ------------------------------------------------------------------ close

  /** Closes with a transport error: CONNECTION_CLOSE at the highest level available. */
  close(code: number, reason: string, level?: Level): void {
    if (this.state === 'closing' || this.state === 'draining' || this.state === 'closed') return;
    const lvl = level ?? (this.spaces[Level.APPLICATION].tx && this.state === 'established' ? Level.APPLICATION : this.spaces[Level.HANDSHAKE].tx && !this.spaces[Level.HANDSHAKE].discarded ? Level.HANDSHAKE : Level.INITIAL);
    const r = Buffer.from(reason.slice(0, 100), 'utf8');
    const w = new Writer(64 + r.length);
    w.u8(F.CONNECTION_CLOSE).varint(code).varint(0).varint(r.length).bytes(r);
    this.closeFrame = Buffer.from(w.view());
    if (code !== TransportError.NO_ERROR) this.host.event('error', { conn: this.number, code, reason });
    this.host.event('closed', { conn: this.number, by: 'server', code, reason, bytesServed: this.bytesServed });
    this.state = 'closing';
    this.closeAt = this.host.now() + 3 * this.pto();
    this.sendClose(lvl);
  }

  /** Application close (HTTP/3 H3_NO_ERROR etc.). */
  closeApplication(code: number, reason: string): void {
    if (this.state !== 'established') return;
    const r = Buffer.from(reason, 'utf8');
    const w = new Writer(64 + r.length);
    w.u8(F.CONNECTION_CLOSE_APP).varint(code).varint(r.length).bytes(r);
    this.closeFrame = Buffer.from(w.view());
    this.host.event('closed', { conn: this.number, by: 'server', code, app: true, reason, bytesServed: this.bytesServed });
    this.state = 'closing';
    this.closeAt = this.host.now() + 3 * this.pto();
    this.sendClose(Level.APPLICATION);
  }

  private sendClose(level: Level): void {
    const space = this.spaces[level];
    if (!space.tx || !this.closeFrame) return;
    let payload = this.closeFrame;
    if (level === Level.INITIAL) {
      const total = this.headerLength(level) + payload.length + AEAD_TAG_LEN;
      if (total < MAX_DATAGRAM_SIZE) payload = Buffer.concat([payload, Buffer.alloc(MAX_DATAGRAM_SIZE - total)]);
    }
    const pkt = this.protect(level, payload);
    this.host.sendDatagram(this, pkt, this.path);
  }

  private finish(): void {
    this.state = 'closed';
    this.host.removed(this);
  }
}

class FrameError extends Error {}

/** Octets `path` may still carry: unlimited once its address is validated, else the anti-amplification budget (RFC 9000 §8.1). */
function sendBudget(path: PathState): number {
  return path.addressValidated ? Infinity : UNVALIDATED_SEND_FACTOR * path.bytesReceived - path.bytesSent;
}
