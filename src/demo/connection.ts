// One server-side QUIC v1 connection (RFC 9000, 9001, 9002 reduced to what a demo needs): the
// state machine, packet decryption and the wiring of one object per concern, one file each:
// - `handshake.ts` TLS messages from CRYPTO data, keys, transport parameters (`ServerHandshake`);
// - `spaces.ts`   the three packet-number spaces (keys, packets sent and received, CRYPTO data);
// - `receive.ts`  the frames of a packet: a dispatch over one handler per frame type, calling
//                 back into this class through `FrameTarget`;
// - `send.ts`     packet building, coalescing, padding, protection (`Sender`);
// - `recovery.ts` RTT, loss detection, probe timeout, the fixed window (`LossRecovery`);
// - `paths.ts`    paths, validation, migration, the anti-amplification budget (`Paths`);
// - `cids.ts`     CIDs both ways: issue, retire, NEW_CONNECTION_ID (`ConnectionIds`);
// - `streams.ts`  stream data both ways and flow control (`Streams`).
import type { TransportParameters } from '../wire/index.js';
import { initialKeys } from './crypto.js';
import { F, TransportError } from './frames.js';
import { Writer } from './buffers.js';
import { ConnectionIds, type IssuedCid } from './cids.js';
import { MAX_DATAGRAM_SIZE, Paths, type NetPath, type PathState } from './paths.js';
import { FrameReader, processFrames, type FrameTarget, type PacketInfo } from './receive.js';
import { LossRecovery } from './recovery.js';
import { Sender } from './send.js';
import { Level, Space, type SentFrame } from './spaces.js';
import { isUni, Streams } from './streams.js';
import { ServerHandshake, serverTransportParameters, type PreferredAddressOption } from './handshake.js';
import type { HandshakeCids } from './handshake.js';
import type { ServerIdentity } from './cert.js';
import { maxDatagramFrameSize } from './webtransport.js';

/** RFC 9000 §17.2, §17.3.1: reserved bits of the unprotected first octet (long / short header). */
const LONG_RESERVED_BITS = 0x0c;
const SHORT_RESERVED_BITS = 0x18;
const LONG_HEADER_BIT = 0x80;
/** RFC 9000 §10.2: the closing and draining states last three PTOs. */
const CLOSE_PTOS = 3;
/** Reason phrases of CONNECTION_CLOSE are cut to this many characters. */
const MAX_REASON = 100;

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
  /** See StreamOwner.claimStream / onStreamData (streams.ts): WebTransport streams. */
  claimStream?(conn: Connection, streamId: number, data: Buffer): boolean;
  onStreamData?(conn: Connection, streamId: number, data: Buffer, fin: boolean): void;
  /** A QUIC DATAGRAM frame's payload (RFC 9221). */
  onQuicDatagram?(conn: Connection, data: Buffer): void;
}

export interface ConnectionOptions {
  idleTimeoutMs: number;
  preferredAddress?: PreferredAddressOption;
  /** Issue NEW_CONNECTION_ID CIDs (false for plaintext QUIC-LB configs, draft-21 §5.2). */
  issueNewConnectionIds: boolean;
  disableActiveMigration: boolean;
  alpn: readonly string[];
}

let nextConnectionNumber = 1;

export class Connection {
  readonly number = nextConnectionNumber++;
  readonly spaces = [new Space(), new Space(), new Space()];
  private readonly handshake: ServerHandshake;
  private readonly cids: ConnectionIds;
  private readonly paths: Paths;
  private readonly streams: Streams;
  private readonly recovery: LossRecovery;
  private readonly sender: Sender;
  private readonly reader = new FrameReader();
  private readonly frameTarget: FrameTarget;
  private state: 'handshake' | 'established' | 'closing' | 'draining' | 'closed' = 'handshake';
  private lastActivity: number;
  private closeAt = 0;
  private largestAppPnReceived = -1;
  /** Set once a packet decrypted (until then the server keeps no state for it). */
  private accepted = false;
  readonly createdAt: number;
  bytesServed = 0;
  /** RFC 9221 §3: the client's max_datagram_frame_size (0: DATAGRAM frames must not be sent). */
  private peerMaxDatagramFrameSize = 0;

  constructor(
    private readonly host: ConnectionHost,
    private readonly opts: ConnectionOptions,
    /** Initial keys and lookup DCID, original_destination_connection_id, retry_source_connection_id (admission.ts). */
    readonly handshakeCids: HandshakeCids,
    clientScid: Buffer,
    path: NetPath,
  ) {
    this.cids = new ConnectionIds(
      {
        mint: () => host.mintCid(this),
        release: (cid) => host.releaseCid(this, cid),
        queueControl: (frame) => this.sender.queueControl(frame),
        event: (name, fields) => this.event(name, fields),
      },
      clientScid,
    );
    this.paths = new Paths(path, handshakeCids.retrySourceCid !== undefined);
    this.streams = new Streams({
      queueControl: (frame) => this.sender.queueControl(frame),
      onRequest: (id, data) => host.onRequestStream(this, id, data),
      claimStream: (id, data) => host.claimStream?.(this, id, data) ?? false,
      onStreamData: (id, data, fin) => host.onStreamData?.(this, id, data, fin),
      onResponse: (event, s) => {
        const p = this.paths.current;
        this.event(event, { stream: s.id, bytes: s.end, path: `${p.address}:${p.port}`, via: p.via.name });
      },
    });
    this.recovery = new LossRecovery(this.spaces, {
      onFrameLost: (level, f) => this.onFrameLost(level, f),
      onFrameAcked: (f) => {
        if (f.k === 'stream') this.streams.onAcked(f);
      },
    });
    this.sender = new Sender(
      { now: () => host.now(), sendDatagram: (datagram, p) => host.sendDatagram(this, datagram, p) },
      this.spaces,
      this.paths,
      this.cids,
      this.streams,
      this.recovery,
    );
    this.frameTarget = this.receiveHandlers();
    this.createdAt = this.lastActivity = host.now();
    const init = initialKeys(handshakeCids.initialDcid);
    this.spaces[Level.INITIAL].rx = init.rx;
    this.spaces[Level.INITIAL].tx = init.tx;
    this.handshake = new ServerHandshake(host.identity, opts.alpn, this.spaces, {
      transportParameters: (client) => this.transportParameters(client),
      onHandshakeComplete: () => this.onHandshakeComplete(),
      close: (code, reason, level) => this.close(code, reason, level),
    });
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  get established(): boolean {
    return this.state === 'established';
  }

  get currentPath(): NetPath {
    return this.paths.current;
  }

  get sourceCid(): Buffer {
    return this.cids.issued[0].cid;
  }

  private event(name: string, fields: Record<string, unknown>): void {
    this.host.event(name, { conn: this.number, ...fields });
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
    const phase = space.keyPhase;
    const opened = space.open(pkt, pnOffset, level === Level.APPLICATION);
    if (!opened) return;
    const { pn, payload, first } = opened;
    // The peer started a key update (RFC 9001 §6.2) and the space followed it.
    if (space.keyPhase !== phase) this.event('key-update', { phase: space.keyPhase, pn });
    const long = (first & LONG_HEADER_BIT) !== 0;
    if (!this.accepted) {
      // Only now mint the handshake SCID (seq 0): garbage Initials cost no nonce and no state.
      this.accepted = true;
      this.cids.issue();
      this.host.accepted(this);
    }
    if ((first & (long ? LONG_RESERVED_BITS : SHORT_RESERVED_BITS)) !== 0) {
      this.close(TransportError.PROTOCOL_VIOLATION, 'reserved bits set');
      return;
    }
    // RFC 9000 §8.1: every datagram attributed to the connection counts toward the
    // anti-amplification budget, duplicates too (a client's retransmitted Initial unblocks the
    // server's retransmission).
    const pathState = this.paths.add(path);
    pathState.bytesReceived += datagramSize;
    if (space.received.has(pn)) return; // duplicate
    this.lastActivity = this.host.now();

    if (level === Level.HANDSHAKE && !this.spaces[Level.INITIAL].discarded) {
      // RFC 9001 §4.9.1: the server discards Initial keys on its first Handshake packet;
      // receiving it also validates the client's address (RFC 9000 §8.1).
      this.spaces[Level.INITIAL].discard();
      this.paths.validateCurrent();
    }

    const info: PacketInfo = { ackEliciting: false, probingOnly: true };
    if (!processFrames(this.frameTarget, this.reader, level, payload, pathState, info)) return;
    space.received.add(pn, pn + 1);
    if (pn === space.received.largest) space.largestReceivedTime = this.host.now();
    if (info.ackEliciting) space.ackPending = true;

    if (level === Level.APPLICATION) {
      const newest = pn > this.largestAppPnReceived;
      if (newest) this.largestAppPnReceived = pn;
      if (pathState !== this.paths.current && !info.probingOnly && newest && this.state === 'established') {
        this.migrateTo(pathState, pkt.subarray(1, 1 + dcidLength));
      }
    }
  }

  /** The frame handlers' view of this connection (receive.ts). */
  private receiveHandlers(): FrameTarget {
    return {
      close: (code, reason) => this.close(code, reason),
      onAck: (level, largest, ranges) => {
        if (!this.recovery.onAck(level, largest, ranges, this.host.now()))
          this.close(TransportError.PROTOCOL_VIOLATION, 'ACK of an unsent packet');
      },
      onCrypto: (level, offset, data) => this.onCrypto(level, offset, data),
      onStopSending: (id) => this.streams.onStopSending(id),
      onResetStream: (id) => this.streams.onReset(id),
      onMaxData: (max) => this.streams.onMaxData(max),
      onMaxStreamData: (id, max) => this.streams.onMaxStreamData(id, max),
      onNewConnectionId: (seq, rpt, cid, token) => this.cids.onPeerNewCid(seq, rpt, cid, token),
      onRetireConnectionId: (seq) => {
        if (!this.cids.onRetire(seq, this.opts.issueNewConnectionIds && this.state === 'established'))
          this.close(TransportError.PROTOCOL_VIOLATION, 'retired a CID never issued');
      },
      onPathChallenge: (path, data) => this.respondToChallenge(path, data),
      onPathResponse: (data) => {
        const p = this.paths.onResponse(data);
        if (p) this.event('path-validated', { address: p.address, port: p.port, via: p.via.name });
      },
      onConnectionClose: (code, reason, app) => this.onPeerClose(code, reason, app),
      onStream: (id, offset, data, fin) => {
        const err = this.streams.onStream(id, offset, data, fin);
        if (err) this.close(err.code, err.reason);
        // The host may have closed the connection too (a malformed HTTP/3 request).
        return this.state !== 'closing';
      },
      onDatagram: (data) => this.host.onQuicDatagram?.(this, data),
    };
  }

  /** CRYPTO data at `level`: false when the connection is closing. */
  private onCrypto(level: Level, offset: number, data: Buffer): boolean {
    const got = this.spaces[level].crypto.push(offset, data);
    if (got === undefined) {
      // RFC 9000 §7.5: more out-of-order CRYPTO data than the server buffers.
      this.close(TransportError.CRYPTO_BUFFER_EXCEEDED, 'crypto buffer exceeded');
      return false;
    }
    return got.length === 0 || this.handshake.onCryptoData(level, got);
  }

  /** Applies the client's transport parameters; returns the server's (RFC 9000 §18.2). */
  private transportParameters(peer: TransportParameters): TransportParameters {
    this.streams.peerMaxData = peer.initialMaxData ?? 0;
    this.streams.peerStreamCredit = {
      bidi: peer.initialMaxStreamDataBidiLocal ?? 0,
      uni: peer.initialMaxStreamDataUni ?? 0,
    };
    if (peer.maxAckDelay !== undefined) this.recovery.maxAckDelay = peer.maxAckDelay;
    this.peerMaxDatagramFrameSize = maxDatagramFrameSize(peer);
    if (peer.activeConnectionIdLimit !== undefined) this.cids.peerLimit = peer.activeConnectionIdLimit;
    const pa = this.opts.preferredAddress;
    let preferred: { address: PreferredAddressOption; cid: IssuedCid } | undefined;
    if (pa && (pa.ipv4 || pa.ipv6)) {
      const cid = this.cids.issue(); // seq 1 (RFC 9000 §5.1.1)
      preferred = { address: pa, cid };
      this.event('cid-issued', { seq: cid.seq, cid: cid.cid.toString('hex'), purpose: 'preferred_address' });
    }
    const { idleTimeoutMs, disableActiveMigration } = this.opts;
    return serverTransportParameters({
      handshakeCids: this.handshakeCids,
      handshakeCid: this.cids.issued[0],
      idleTimeoutMs,
      disableActiveMigration,
      preferred,
    });
  }

  private onHandshakeComplete(): void {
    this.state = 'established';
    this.spaces[Level.HANDSHAKE].discard();
    this.sender.handshakeDonePending = true; // RFC 9001 §4.1.2: the server confirms with HANDSHAKE_DONE
    const hello = this.handshake.clientHello;
    this.event('handshake-complete', {
      alpn: hello?.alpn.includes('h3') ? 'h3' : hello?.alpn[0],
      sni: hello?.serverName,
      ms: this.host.now() - this.createdAt,
    });
    if (this.opts.issueNewConnectionIds) this.cids.topUp();
    this.host.onEstablished(this);
  }

  /**
   * Re-issues every CID under the host's current generator (after a QUIC-LB config change) and
   * asks the client to retire the old ones with Retire Prior To (draft-21 §3.1, RFC 9000 §5.1.2).
   */
  reissueCids(): void {
    if (this.state !== 'established') return;
    this.cids.reissue();
    this.flush();
  }

  /** PATH_CHALLENGE: answer on the path it came from, challenging that path too if it is new. */
  private respondToChallenge(path: PathState, data: Buffer): void {
    const w = new Writer(MAX_DATAGRAM_SIZE);
    w.u8(F.PATH_RESPONSE).bytes(data);
    const challenge = this.paths.challengeWithResponse(path, this.host.now());
    if (challenge) w.u8(F.PATH_CHALLENGE).bytes(challenge);
    this.sender.sendProbe(path, w.view());
  }

  private migrateTo(p: PathState, dcid: Buffer): void {
    const from = this.paths.migrateTo(p);
    const cidSeq = this.cids.onPeerMigrated(dcid);
    this.event('migrated', {
      from: `${from.address}:${from.port}`,
      fromVia: from.via.name,
      to: `${p.address}:${p.port}`,
      via: p.via.name,
      cidSeq,
    });
  }

  private onPeerClose(code: number, reason: string, app: boolean): void {
    if (this.state === 'draining' || this.state === 'closed') return;
    this.event('closed', { by: 'peer', code, app, reason, bytesServed: this.bytesServed });
    this.state = 'draining';
    this.closeAt = this.host.now() + CLOSE_PTOS * this.recovery.pto();
  }

  /** A packet is lost: its frames that still matter go out again. */
  private onFrameLost(level: Level, f: SentFrame): void {
    switch (f.k) {
      case 'crypto':
        if (!this.spaces[level].discarded) this.spaces[level].cryptoRetransmit.push([f.offset, f.len]);
        break;
      case 'stream':
        this.streams.onLost(f);
        break;
      case 'handshake_done':
        this.sender.handshakeDonePending = true;
        break;
      case 'new_cid':
        this.cids.onNewCidLost(f);
        break;
      case 'control':
        this.sender.queueControl(f.bytes);
        break;
    }
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
      this.event('closed', { by: 'idle', bytesServed: this.bytesServed });
      this.finish();
      return;
    }
    this.paths.retryChallenges(
      now,
      3 * this.recovery.pto(),
      (p, challenge) => this.sender.sendProbe(p, Buffer.concat([Buffer.of(F.PATH_CHALLENGE), challenge])),
      (p, fallback) =>
        this.event('path-failed', {
          address: p.address,
          port: p.port,
          via: p.via.name,
          revertedTo: fallback?.via.name,
        }),
    );
    this.recovery.onTimer(now);
    this.flush();
  }

  // ------------------------------------------------------------------ send

  /** Queues `data` on a server send stream (a response, or the HTTP/3 control stream). */
  sendStream(id: number, data: Buffer, fin: boolean): void {
    this.streams.write(id, data, fin);
    if (fin && !isUni(id)) this.bytesServed += data.length; // responses
    this.flush();
  }

  /**
   * Sends `payload` in a DATAGRAM frame (RFC 9221 §4) once, unreliably. False (nothing sent) when
   * the client did not advertise max_datagram_frame_size (§3) or the frame would exceed it.
   */
  sendDatagramFrame(payload: Buffer): boolean {
    const w = new Writer(payload.length + 16);
    w.u8(F.DATAGRAM_LEN).varint(payload.length).bytes(payload);
    if (this.state !== 'established' || w.pos > this.peerMaxDatagramFrameSize) return false;
    this.sender.queueDatagram(Buffer.from(w.view()));
    this.flush();
    return true;
  }

  /** Octets queued on server stream `id` and not yet sent. */
  unsent(id: number): number {
    return this.streams.unsent(id);
  }

  /** Sends everything that is ready, as long as congestion window and path limits allow. */
  flush(): void {
    if (this.state === 'closed' || this.state === 'draining' || this.state === 'closing') return;
    this.sender.flush();
  }

  // ------------------------------------------------------------------ close

  /** Closes with a transport error: CONNECTION_CLOSE at the highest level available. */
  close(code: number, reason: string, level?: Level): void {
    if (this.state === 'closing' || this.state === 'draining' || this.state === 'closed') return;
    const lvl =
      level ??
      (this.spaces[Level.APPLICATION].tx && this.state === 'established'
        ? Level.APPLICATION
        : this.spaces[Level.HANDSHAKE].tx && !this.spaces[Level.HANDSHAKE].discarded
          ? Level.HANDSHAKE
          : Level.INITIAL);
    const r = Buffer.from(reason.slice(0, MAX_REASON), 'utf8');
    const w = new Writer(64 + r.length);
    w.u8(F.CONNECTION_CLOSE).varint(code).varint(0).varint(r.length).bytes(r);
    if (code !== TransportError.NO_ERROR) this.event('error', { code, reason });
    this.event('closed', { by: 'server', code, reason, bytesServed: this.bytesServed });
    this.enterClosing(lvl, Buffer.from(w.view()));
  }

  /** Application close (HTTP/3 H3_NO_ERROR etc.). */
  closeApplication(code: number, reason: string): void {
    if (this.state !== 'established') return;
    const r = Buffer.from(reason, 'utf8');
    const w = new Writer(64 + r.length);
    w.u8(F.CONNECTION_CLOSE_APP).varint(code).varint(r.length).bytes(r);
    this.event('closed', { by: 'server', code, app: true, reason, bytesServed: this.bytesServed });
    this.enterClosing(Level.APPLICATION, Buffer.from(w.view()));
  }

  /** RFC 9000 §10.2.1: the closing state; CONNECTION_CLOSE goes out once at `level`. */
  private enterClosing(level: Level, frame: Buffer): void {
    this.state = 'closing';
    this.closeAt = this.host.now() + CLOSE_PTOS * this.recovery.pto();
    this.sender.sendClose(level, frame);
  }

  private finish(): void {
    this.state = 'closed';
    this.host.removed(this);
  }
}
