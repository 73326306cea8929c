// The demo QUIC v1 + HTTP/3 server: dispatches datagrams to connections by connection ID,
// creates connections from client Initials, answers unknown CIDs with stateless resets, and
// serves GET requests (generated bodies or a static directory). Every CID it issues comes from
// the injected generator (a QUIC-LB encoder), so any LB holding the config can route it.
import { EventEmitter } from 'node:events';
import { appendFileSync } from 'node:fs';
import {
  type Endpoint,
  MIN_INITIAL_DATAGRAM_SIZE,
  parseHeader,
  PacketHeader,
  PacketType,
  QUIC_V1,
  readVarint,
  varintSizeAt,
} from '../wire/index.js';
import type { BackendCids, RetryTokenValidator } from '../backend/index.js';
import { InitialAdmission, REFUSED, SKIP } from './admission.js';
import type { HandshakeCids } from './handshake.js';
import { StatelessReplies } from './stateless.js';
import { Connection, type ConnectionHost } from './connection.js';
import type { NetPath, PathVia } from './paths.js';
import { Level } from './spaces.js';
import { generateSelfSigned, type ServerIdentity } from './cert.js';
import { WebTransportHost } from './webtransport-host.js';
import { respond } from './responses.js';
import { CONTROL_STREAM_PREFIX, encodeResponse, H3_MESSAGE_ERROR, H3_NO_ERROR, parseRequest } from './h3.js';

const TICK_MS = 5;

/** Remote address info of a received datagram. */
export interface RemoteInfo {
  address: string;
  port: number;
}

/**
 * The datagram socket the server runs on: the backend kit's `BackendSocket` (LB-encapsulated
 * and direct traffic behind one interface) or anything shaped like it. `path` identifies the
 * local side a datagram arrived on; the server passes it back to `send` to answer on that path.
 */
export interface DemoSocket {
  on(event: 'message', listener: (msg: Buffer, rinfo: RemoteInfo, path: PathVia) => void): unknown;
  send(msg: Uint8Array, address: string, port: number, path?: PathVia): void;
}

export interface DemoServerOptions {
  socket: DemoSocket;
  /**
   * Mints every CID the server issues, gives their stateless reset tokens (RFC 9000 §10.3.2),
   * and the length of a CID this server issued from its first octet (-1 if unknown; short
   * headers carry no length): `createBackendCids()` from quic-lb-ts/backend.
   */
  cids: Pick<BackendCids, 'generate' | 'resetToken' | 'cidLength'>;
  /** For logs: this backend's server ID (hex) and name. */
  serverId?: string;
  name?: string;
  /** Addresses advertised in preferred_address (the backend's own unicast addresses). */
  preferredAddress?: { ipv4?: Endpoint; ipv6?: Endpoint };
  identity?: ServerIdentity;
  /** JSON-lines event log file. */
  eventLog?: string;
  /** Directory served for paths other than /bytes/N. */
  staticDir?: string;
  idleTimeoutMs?: number;
  /** Issue NEW_CONNECTION_ID CIDs (default true; false for plaintext QUIC-LB configs). */
  issueNewConnectionIds?: boolean;
  disableActiveMigration?: boolean;
  /**
   * Opens the Retry tokens of an LB doing Retry offload (admission.ts): a new connection's
   * Initial with a valid one gets original_destination_connection_id and
   * retry_source_connection_id from it, one with a bad one is dropped. The demo never sends a Retry.
   */
  retryTokens?: RetryTokenValidator;
  /**
   * True when `cid` decodes to this server's own server ID (a CID only this server, or an LB's
   * Retry minted for it, hands out): with `retryTokens`, a new connection's Initial with such a
   * DCID and no valid Retry token is dropped (admission.ts).
   */
  ownsCid?: (cid: Uint8Array) => boolean;
  now?: () => number;
}

/** Counters a test or the CLI can read. */
export interface DemoServerStats {
  connectionsAccepted: number;
  connectionsActive: number;
  datagramsReceived: number;
  datagramsDropped: number;
  statelessResets: number;
  versionNegotiations: number;
  bytesServed: number;
  /** Exceptions caught around packet processing (a bug, not a bad packet). */
  internalErrors: number;
  /** New-connection Initials dropped for a Retry token that did not open (by result: `retryTokens.stats`). */
  retryTokensRefused: number;
}

/**
 * A small QUIC v1 server. Events (also written to `eventLog` as JSON lines, each with `ts`,
 * `event`, `server`): connection-accepted, cid-issued, cid-retired, handshake-complete,
 * path-validated, path-failed, migrated, request, stream-served, closed, stateless-reset,
 * cids-reissued, error.
 */
export class DemoServer extends EventEmitter implements ConnectionHost {
  readonly identity: ServerIdentity;
  readonly stats: DemoServerStats = {
    connectionsAccepted: 0,
    connectionsActive: 0,
    datagramsReceived: 0,
    datagramsDropped: 0,
    statelessResets: 0,
    versionNegotiations: 0,
    bytesServed: 0,
    internalErrors: 0,
    retryTokensRefused: 0,
  };
  private readonly byCid = new Map<string, Connection>();
  private readonly issuedLengths = new Set<number>();
  /** DCID length found by the last successful lookupShort(). */
  private lastLookupLength = 0;
  private readonly connections = new Set<Connection>();
  private readonly header = new PacketHeader();
  private readonly timer: NodeJS.Timeout;
  private readonly stateless: StatelessReplies;
  private readonly admission: InitialAdmission;
  private readonly clock: () => number;
  /** WebTransport sessions (the voice demo): webtransport-host.ts. */
  readonly webTransport: WebTransportHost;

  constructor(private readonly opts: DemoServerOptions) {
    super();
    this.identity = opts.identity ?? generateSelfSigned();
    this.clock = opts.now ?? (() => performance.now());
    this.webTransport = new WebTransportHost(this);
    this.stateless = new StatelessReplies({
      now: () => this.now(),
      send: (d, p) => opts.socket.send(d, p.address, p.port, p.via),
      cidLength: (o) => this.cidLength(o),
      resetToken: (cid) => opts.cids.resetToken(cid),
      event: (name, fields) => this.event(name, fields),
      stats: this.stats,
    });
    this.admission = new InitialAdmission(this, opts.retryTokens, opts.ownsCid);
    opts.socket.on('message', (msg, rinfo, via) => this.onDatagram(msg, rinfo, via));
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  now(): number {
    return this.clock();
  }

  /** Swaps the Retry token validator (undefined: tokens are ignored, as without an LB doing Retry offload). */
  setRetryTokens(validator: RetryTokenValidator | undefined): void {
    this.admission.validator = validator;
  }

  /** Live connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  // ---------------------------------------------------------------- datagrams

  private onDatagram(msg: Buffer, rinfo: RemoteInfo, via: PathVia): void {
    this.stats.datagramsReceived++;
    const path: NetPath = { address: rinfo.address, port: rinfo.port, via };
    let off = 0;
    let first = true;
    while (off < msg.length) {
      const pkt = msg.subarray(off);
      let used: number;
      try {
        used = this.onPacket(pkt, path, first ? msg.length : 0, msg.length);
      } catch (err) {
        // Never reached by a malformed packet (those are dropped by return value); a bug must
        // not take the whole server down: count it, log it, drop the datagram.
        this.stats.internalErrors++;
        this.event('error', {
          code: 'internal',
          reason: err instanceof Error ? err.message : String(err),
          client: `${path.address}:${path.port}`,
        });
        used = 0;
      }
      if (used <= 0) {
        if (first) this.stats.datagramsDropped++;
        break;
      }
      off += used;
      first = false;
    }
  }

  /** Handles the packet at the start of `buf`; returns its length, or 0 to drop the rest. */
  private onPacket(buf: Buffer, path: NetPath, countBytes: number, datagramSize: number): number {
    const h = this.header;
    if (!parseHeader(buf, h)) return 0;
    if (h.form === 0) {
      const conn = this.lookupShort(buf);
      if (!conn) {
        this.stateless.maybeStatelessReset(buf, path);
        return 0;
      }
      const dcidLength = this.lastLookupLength;
      conn.onPacket(Level.APPLICATION, buf, 1 + dcidLength, path, countBytes, dcidLength);
      conn.flush();
      return buf.length;
    }
    if (h.version !== QUIC_V1) {
      if (h.packetType !== PacketType.VERSION_NEGOTIATION && datagramSize >= MIN_INITIAL_DATAGRAM_SIZE)
        this.stateless.sendVersionNegotiation(buf, h, path);
      return 0;
    }
    // Long header: token (Initial only), Length, then the protected packet number.
    let o = h.payloadOffset;
    let tokenOffset = 0;
    let tokenLen = 0;
    if (h.packetType === PacketType.INITIAL) {
      tokenLen = readVarint(buf, o);
      if (tokenLen < 0) return 0;
      tokenOffset = o + varintSizeAt(buf, o);
      o = tokenOffset + tokenLen;
    } else if (h.packetType !== PacketType.HANDSHAKE && h.packetType !== PacketType.ZERO_RTT) {
      return 0;
    }
    const length = readVarint(buf, o);
    if (length < 0) return 0;
    o += varintSizeAt(buf, o);
    const end = o + length;
    if (end > buf.length) return 0;
    const dcid = buf.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength);
    let conn = this.byCid.get(dcid.toString('hex'));
    let fresh = false;
    if (!conn) {
      const cids = this.admission.admit(buf, h, tokenOffset, tokenLen, datagramSize, path);
      if (cids === SKIP) return end;
      if (cids === REFUSED) {
        this.stats.retryTokensRefused++;
        return 0;
      }
      conn = this.newConnection(cids, Buffer.from(buf.subarray(h.scidOffset, h.scidOffset + h.scidLength)), path);
      fresh = true;
    }
    if (h.packetType === PacketType.ZERO_RTT) return end; // no 0-RTT: dropped, the client resends in 1-RTT
    const level = h.packetType === PacketType.INITIAL ? Level.INITIAL : Level.HANDSHAKE;
    conn.onPacket(level, buf.subarray(0, end), o, path, countBytes, h.dcidLength);
    if (fresh && !this.connections.has(conn)) {
      // The Initial did not decrypt: no state is kept for it.
      this.removed(conn);
      return 0;
    }
    conn.flush();
    return end;
  }

  private lookupShort(buf: Buffer): Connection | undefined {
    if (buf.length < 2) return undefined;
    const len = this.cidLength(buf[1]);
    if (len > 0 && buf.length >= 1 + len) {
      const c = this.byCid.get(buf.toString('hex', 1, 1 + len));
      if (c) {
        this.lastLookupLength = len;
        return c;
      }
    }
    // A CID of a config the generator no longer knows (removed after a rotation) is still live
    // until its connection ends: try every length this server has issued.
    for (const l of this.issuedLengths) {
      if (l === len || buf.length < 1 + l) continue;
      const c = this.byCid.get(buf.toString('hex', 1, 1 + l));
      if (c) {
        this.lastLookupLength = l;
        return c;
      }
    }
    return undefined;
  }

  private cidLength(firstOctet: number): number {
    return this.opts.cids.cidLength(firstOctet);
  }

  private newConnection(cids: HandshakeCids, clientScid: Buffer, path: NetPath): Connection {
    return new Connection(
      this,
      {
        idleTimeoutMs: this.opts.idleTimeoutMs ?? 30_000,
        preferredAddress: this.opts.preferredAddress,
        issueNewConnectionIds: this.opts.issueNewConnectionIds ?? true,
        disableActiveMigration: this.opts.disableActiveMigration ?? false,
        alpn: ['h3'],
      },
      cids,
      clientScid,
      path,
    );
  }

  /** The connection's first packet decrypted: from now on it is a connection. */
  accepted(conn: Connection): void {
    const path = conn.currentPath;
    // Until the client switches to the server's CID it keeps using its own first DCID.
    this.byCid.set(conn.handshakeCids.initialDcid.toString('hex'), conn);
    this.connections.add(conn);
    this.stats.connectionsAccepted++;
    this.stats.connectionsActive = this.connections.size;
    this.event('connection-accepted', {
      conn: conn.number,
      client: `${path.address}:${path.port}`,
      via: path.via.name,
      odcid: conn.handshakeCids.originalDcid.toString('hex'),
      rscid: conn.handshakeCids.retrySourceCid?.toString('hex') ?? null,
      retryKeySequence: conn.handshakeCids.retryKeySequence ?? null,
      scid: conn.sourceCid.toString('hex'),
    });
    this.event('cid-issued', { conn: conn.number, seq: 0, cid: conn.sourceCid.toString('hex'), purpose: 'handshake' });
  }

  // ---------------------------------------------------------------- ConnectionHost

  sendDatagram(_conn: Connection, datagram: Buffer, p: NetPath): void {
    this.opts.socket.send(datagram, p.address, p.port, p.via);
  }

  mintCid(conn: Connection): { cid: Buffer; token: Buffer } {
    for (;;) {
      const cid = Buffer.from(this.opts.cids.generate());
      const key = cid.toString('hex');
      if (this.byCid.has(key)) continue; // never hand out a CID that is live
      this.byCid.set(key, conn);
      this.issuedLengths.add(cid.length);
      return { cid, token: Buffer.from(this.opts.cids.resetToken(cid)) };
    }
  }

  releaseCid(_conn: Connection, _cid: Buffer): void {
    // A retired CID stays mapped until the connection is gone: packets the client sent before
    // it processed the retirement must not draw a stateless reset (ngtcp2 acts on the token of
    // a CID it has just retired). The encoder never mints the same CID again.
  }

  removed(conn: Connection): void {
    for (const [k, c] of this.byCid) if (c === conn) this.byCid.delete(k);
    this.connections.delete(conn);
    this.stats.connectionsActive = this.connections.size;
    this.webTransport.onConnectionGone(conn);
  }

  claimStream(conn: Connection, streamId: number, data: Buffer): boolean {
    return this.webTransport.claimStream(conn, streamId, data);
  }

  onStreamData(conn: Connection, streamId: number, data: Buffer, fin: boolean): void {
    this.webTransport.onStreamData(conn, streamId, data, fin);
  }

  onQuicDatagram(conn: Connection, data: Buffer): void {
    this.webTransport.onQuicDatagram(conn, data);
  }

  event(name: string, fields: Record<string, unknown>): void {
    const record = {
      ts: new Date().toISOString(),
      event: name,
      server: this.opts.serverId,
      name: this.opts.name,
      ...fields,
    };
    if (this.opts.eventLog) {
      try {
        appendFileSync(this.opts.eventLog, `${JSON.stringify(record)}\n`);
      } catch {
        // a full disk must not take the server down; the in-process event still fires
      }
    }
    this.emit('event', record);
  }

  onEstablished(conn: Connection): void {
    // RFC 9114 §6.2.1: the HTTP/3 control stream (server-initiated unidirectional stream 3).
    conn.sendStream(3, CONTROL_STREAM_PREFIX, false);
  }

  onRequestStream(conn: Connection, streamId: number, data: Buffer): void {
    const req = parseRequest(data);
    if (req === 'incomplete' || req === 'error') {
      conn.closeApplication(H3_MESSAGE_ERROR, 'malformed request');
      return;
    }
    this.event('request', { conn: conn.number, stream: streamId, method: req.method, path: req.path });
    void respond(req.path, { ...this.opts, certificate: this.identity.certificates[0] }).then((res) => {
      if (conn.closed) return;
      this.stats.bytesServed += res.body.length;
      conn.sendStream(streamId, encodeResponse(res), true);
    });
  }

  // ---------------------------------------------------------------- control

  /**
   * Re-issues the CIDs of every established connection with the generator's current config
   * (call after switching the QUIC-LB encoder to a new config): NEW_CONNECTION_ID frames with
   * Retire Prior To covering every earlier CID (draft-21 §3.1, RFC 9000 §5.1.2).
   */
  reissueConnectionIds(reason = 'config'): number {
    let n = 0;
    for (const conn of this.connections) {
      if (!conn.established) continue;
      conn.reissueCids();
      n++;
    }
    this.event('cids-reissued', { reason, connections: n });
    return n;
  }

  private tick(): void {
    for (const conn of this.connections) conn.onTimer();
    this.webTransport.tick();
  }

  /** Stops the timer and closes every connection (CONNECTION_CLOSE to the established ones). */
  close(): void {
    clearInterval(this.timer);
    for (const conn of [...this.connections]) {
      // Tell established clients (HTTP/3 H3_NO_ERROR) instead of leaving them to time out.
      conn.closeApplication(H3_NO_ERROR, 'server shutting down');
      this.removed(conn);
    }
  }
}
