// Connection IDs of the demo connection (RFC 9000 §5.1): the CIDs the server issued (minted by
// the host's QUIC-LB generator) and the ones the client issued for the server to use as DCID.
import { frameRetireConnectionId } from './frames.js';

/** CIDs the server keeps issued at most, whatever the client's limit (RFC 9000 §5.1.1). */
export const MAX_ISSUED_CIDS = 8;
/** RFC 9000 §18.2: active_connection_id_limit when the client does not say. */
const DEFAULT_ACTIVE_CID_LIMIT = 2;

/** A CID the server issued to this connection. */
export interface IssuedCid {
  seq: number;
  cid: Buffer;
  token: Buffer;
  retired: boolean;
}

/** A NEW_CONNECTION_ID frame to send (again, if its packet is lost). */
export interface PendingNewCid {
  entry: IssuedCid;
  retirePriorTo: number;
}

/** What the CIDs need from their connection. */
export interface CidOwner {
  /** Mints a CID (and its stateless reset token) routed to the connection. */
  mint(): { cid: Buffer; token: Buffer };
  /** Stops routing `cid` to the connection. */
  release(cid: Buffer): void;
  /** Queues a control frame (RETIRE_CONNECTION_ID) for the next 1-RTT packet. */
  queueControl(frame: Buffer): void;
  event(name: string, fields: Record<string, unknown>): void;
}

export class ConnectionIds {
  /** CIDs issued by the server, by sequence number. */
  readonly issued: IssuedCid[] = [];
  /** NEW_CONNECTION_ID frames not sent yet. */
  readonly pendingNewCids: PendingNewCid[] = [];
  /** CIDs issued by the client (for the server to use as DCID), by sequence number. */
  private readonly peerCids = new Map<number, { cid: Buffer; token?: Buffer }>();
  /** The client CID the server sends to (RFC 9000 §5.1.1). */
  dcid: Buffer;
  private dcidSeq = 0;
  private retirePriorTo = 0;
  private lastPeerUsedSeq = 0;
  /** The client's active_connection_id_limit (RFC 9000 §18.2). */
  peerLimit = DEFAULT_ACTIVE_CID_LIMIT;

  constructor(
    private readonly owner: CidOwner,
    clientScid: Buffer,
  ) {
    this.dcid = clientScid;
    this.peerCids.set(0, { cid: clientScid });
  }

  /** Mints the next CID (sequence numbers from 0, RFC 9000 §5.1.1). */
  issue(): IssuedCid {
    const { cid, token } = this.owner.mint();
    const entry: IssuedCid = { seq: this.issued.length, cid, token, retired: false };
    this.issued.push(entry);
    return entry;
  }

  private get activeIssued(): number {
    return this.issued.filter((e) => !e.retired).length;
  }

  private get limit(): number {
    return Math.min(this.peerLimit, MAX_ISSUED_CIDS);
  }

  private issueNew(retirePriorTo: number, purpose: string): void {
    const entry = this.issue();
    this.pendingNewCids.push({ entry, retirePriorTo });
    this.owner.event('cid-issued', { seq: entry.seq, cid: entry.cid.toString('hex'), purpose, retirePriorTo });
  }

  /** Issues NEW_CONNECTION_ID CIDs until the peer's limit (at most MAX_ISSUED_CIDS). */
  topUp(): void {
    while (this.activeIssued < this.limit) this.issueNew(this.retirePriorTo, 'new_connection_id');
  }

  /**
   * Issues a full set of new CIDs (after a QUIC-LB config change) and asks the client to retire
   * every earlier one with Retire Prior To (draft-21 §3.1, RFC 9000 §5.1.2). Old CIDs stay
   * routable until the client retires them.
   */
  reissue(): void {
    const rpt = this.issued.length;
    this.retirePriorTo = rpt;
    for (let i = 0, n = this.limit; i < n; i++) this.issueNew(rpt, 'rotation');
  }

  /** A NEW_CONNECTION_ID frame was lost: send it again unless its CID is retired meanwhile. */
  onNewCidLost(pending: PendingNewCid): void {
    if (!pending.entry.retired) this.pendingNewCids.push(pending);
  }

  /** RETIRE_CONNECTION_ID (RFC 9000 §19.16): false when `seq` was never issued (a PROTOCOL_VIOLATION). */
  onRetire(seq: number, topUp: boolean): boolean {
    const entry = this.issued[seq];
    if (!entry) return false;
    if (entry.retired) return true;
    entry.retired = true;
    this.owner.release(entry.cid);
    this.owner.event('cid-retired', { seq, cid: entry.cid.toString('hex') });
    if (topUp) this.topUp();
    return true;
  }

  /** NEW_CONNECTION_ID from the client (RFC 9000 §19.15): retires what Retire Prior To covers. */
  onPeerNewCid(seq: number, rpt: number, cid: Buffer, token: Buffer): void {
    if (!this.peerCids.has(seq)) this.peerCids.set(seq, { cid, token });
    for (const [s] of this.peerCids) {
      if (s < rpt) {
        this.peerCids.delete(s);
        this.owner.queueControl(frameRetireConnectionId(s));
        if (s === this.dcidSeq) this.switchDcid();
      }
    }
  }

  /**
   * The client moved to a new path using server CID `dcid`: a client that moved to a new CID
   * expects a new one from the server too (RFC 9000 §9.5). Returns the sequence number of
   * `dcid` (-1: not one the server issued).
   */
  onPeerMigrated(dcid: Buffer): number {
    const usedSeq = this.issued.find((e) => e.cid.equals(dcid))?.seq ?? -1;
    const rotated = usedSeq !== 0 && usedSeq !== this.lastPeerUsedSeq;
    this.lastPeerUsedSeq = usedSeq;
    if (rotated) this.switchDcid();
    return usedSeq;
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
          this.owner.queueControl(frameRetireConnectionId(old));
        }
        return true;
      }
    }
    return false;
  }
}
