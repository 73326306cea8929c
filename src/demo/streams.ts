// Streams of the demo connection (RFC 9000 §2-§4): server send streams (responses, the HTTP/3
// control stream) with the client's flow-control credit, client streams reassembled up to the
// credit the server advertises, and request delivery to the host.
import { F, frameWithVarint, STREAM_BITS, TransportError } from './frames.js';
import { RangeSet, Reassembler, vlen, Writer } from './buffers.js';
import type { SentFrame } from './spaces.js';

/** Connection-level credit for the client's data, topped up when half is used. */
export const RECV_WINDOW = 1 << 20;
/** Request streams the client may open, raised by this much when half are used. */
export const STREAMS_WINDOW = 100;
/** Per-stream credit for client data (requests, HTTP/3 control and QPACK streams); not raised. */
export const INITIAL_MAX_STREAM_DATA = 1 << 16;
/** HTTP/3 needs three client unidirectional streams: control, QPACK encoder and decoder. */
export const INITIAL_MAX_STREAMS_UNI = 3;
/** RFC 9000 §2.1: bit 0x02 of a stream ID marks a unidirectional stream, 0x01 a server-initiated one. */
const UNI = 0x02;
const SERVER_INITIATED = 0x01;
/** Room a STREAM frame needs before it is worth writing one. */
export const MIN_STREAM_FRAME_ROOM = 24;

/** RFC 9000 §2.1: a unidirectional stream (the HTTP/3 control and QPACK streams; requests are bidirectional). */
export const isUni = (id: number): boolean => (id & UNI) !== 0;

/** Acknowledged octets at the head of a send buffer are dropped once there are this many. */
export const TRIM_ACKED_OCTETS = 64 * 1024;

/**
 * Data the server sends on one stream. `data` holds stream offsets [base, end): the
 * acknowledged head is trimmed (TRIM_ACKED_OCTETS) so a long-lived stream (a voice session)
 * keeps only what may still be sent or resent.
 */
export class SendStream {
  data: Buffer = Buffer.alloc(0);
  /** Stream offset of data[0]. */
  base = 0;
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
  /** Stream offset just past the last octet written. */
  get end(): number {
    return this.base + this.data.length;
  }
  /** Octets written but never sent (waiting for credit or room). */
  get unsent(): number {
    return this.end - this.sent;
  }
  get pending(): boolean {
    return this.retransmit.length > 0 || this.sent < this.end || (this.fin && !this.finSent);
  }
  /** Drops the acknowledged head once it is large; lost ranges below it are acknowledged already. */
  trimAcked(): void {
    const first = this.acked.ranges[0];
    if (!first || first[0] > this.base || first[1] - this.base < TRIM_ACKED_OCTETS) return;
    const cut = Math.min(first[1], this.sent);
    this.data = this.data.subarray(cut - this.base);
    this.base = cut;
    this.retransmit = this.retransmit.filter((r) => r[0] + r[1] > cut || (r[2] && r[1] === 0));
    for (const r of this.retransmit) {
      if (r[0] < cut) {
        r[1] -= cut - r[0];
        r[0] = cut;
      }
    }
  }
}

/** What the streams need from their connection. */
export interface StreamOwner {
  /** Queues a control frame (MAX_DATA, MAX_STREAMS) for the next 1-RTT packet. */
  queueControl(frame: Buffer): void;
  /** A request stream (client bidirectional) arrived whole; called once per stream. */
  onRequest(id: number, data: Buffer): void;
  /**
   * Data arrived on a client bidirectional stream that has not finished (`data`: everything so
   * far). True when the host takes the stream over (a WebTransport CONNECT or stream): from then
   * on the stream's data goes to `onStreamData` as it arrives, and its credit is raised as it is
   * read (RFC 9000 §4.2). Optional: without it every request is delivered whole.
   */
  claimStream?(id: number, data: Buffer): boolean;
  /** New in-order data (possibly empty with `fin`) on a claimed stream. */
  onStreamData?(id: number, data: Buffer, fin: boolean): void;
  /** The FIN of a response went out (`stream-sent`) or every octet of it is acknowledged (`stream-served`). */
  onResponse(event: 'stream-sent' | 'stream-served', s: SendStream): void;
}

/** A connection error found on the stream layer (RFC 9000 §20.1 code, reason). */
export interface StreamError {
  code: number;
  reason: string;
}

export class Streams {
  private readonly send = new Map<number, SendStream>();
  private readonly recv = new Map<number, Reassembler>();
  private readonly recvRequestData = new Map<number, Buffer[]>();
  private readonly requestsDelivered = new Set<number>();
  /** Claimed streams (see StreamOwner.claimStream) and the credit advertised for each. */
  private readonly claimed = new Map<number, number>();
  /** Receive-side flow control: octets the client sent (highest offsets), credit given. */
  private recvData = 0;
  private recvMaxData = RECV_WINDOW;
  private maxStreamsBidi = STREAMS_WINDOW;
  /** Send-side flow control: the client's connection credit, octets sent against it. */
  peerMaxData = 0;
  private dataSent = 0;
  /** The client's initial per-stream credit for server bidirectional / unidirectional streams. */
  peerStreamCredit = { bidi: 0, uni: 0 };

  constructor(private readonly owner: StreamOwner) {}

  /** Queues `data` on server send stream `id` (created on first use with the client's initial credit). */
  write(id: number, data: Buffer, fin: boolean): void {
    let s = this.send.get(id);
    if (!s) {
      s = new SendStream(id, isUni(id) ? this.peerStreamCredit.uni : this.peerStreamCredit.bidi);
      this.send.set(id, s);
    }
    s.data = s.data.length === 0 ? data : Buffer.concat([s.data, data]);
    s.fin = fin;
  }

  /** STOP_SENDING (RFC 9000 §19.5): the stream's data counts as sent and is never resent. */
  onStopSending(id: number): void {
    const s = this.send.get(id);
    if (!s) return;
    s.done = true;
    s.retransmit.length = 0;
    s.sent = s.end;
    s.finSent = true;
  }

  /** RESET_STREAM (RFC 9000 §19.4): a claimed stream ends there (its host sees an empty FIN); others are ignored. */
  onReset(id: number): void {
    if (!this.claimed.has(id)) return;
    this.claimed.delete(id);
    this.requestsDelivered.add(id);
    this.owner.onStreamData?.(id, Buffer.alloc(0), true);
  }

  /** Octets written on server stream `id` and not yet sent (0 for an unknown stream). */
  unsent(id: number): number {
    return this.send.get(id)?.unsent ?? 0;
  }

  /** MAX_DATA (RFC 9000 §19.9). */
  onMaxData(max: number): void {
    this.peerMaxData = Math.max(this.peerMaxData, max);
  }

  /** MAX_STREAM_DATA (RFC 9000 §19.10). */
  onMaxStreamData(id: number, max: number): void {
    const s = this.send.get(id);
    if (s) s.maxData = Math.max(s.maxData, max);
  }

  /** STREAM (RFC 9000 §19.8) from the client; a StreamError closes the connection. */
  onStream(id: number, off: number, data: Buffer, fin: boolean): StreamError | undefined {
    if ((id & SERVER_INITIATED) !== 0 && !isUni(id))
      return { code: TransportError.STREAM_STATE_ERROR, reason: 'STREAM on a server-initiated bidirectional stream' };
    if ((id & (SERVER_INITIATED | UNI)) === (SERVER_INITIATED | UNI))
      return { code: TransportError.STREAM_STATE_ERROR, reason: 'STREAM on a server send-only stream' };
    const index = Math.floor(id / 4);
    if (isUni(id) ? index >= INITIAL_MAX_STREAMS_UNI : index >= this.maxStreamsBidi) {
      return { code: TransportError.STREAM_LIMIT_ERROR, reason: `stream ${id} beyond the advertised limit` };
    }
    let r = this.recv.get(id);
    if (!r) {
      r = new Reassembler(INITIAL_MAX_STREAM_DATA);
      this.recv.set(id, r);
    }
    const before = r.highest;
    const got = r.push(off, data, fin);
    this.recvData += Math.max(0, r.highest - before);
    const streamCredit = this.claimed.get(id) ?? INITIAL_MAX_STREAM_DATA;
    if (got === undefined || r.highest > streamCredit || this.recvData > this.recvMaxData) {
      return { code: TransportError.FLOW_CONTROL_ERROR, reason: 'stream data beyond the advertised limit' };
    }
    // Keep credit ahead of the client (RFC 9000 §4.2): more data and more request streams.
    if (this.recvData > this.recvMaxData - RECV_WINDOW / 2) {
      this.recvMaxData = this.recvData + RECV_WINDOW;
      this.owner.queueControl(frameWithVarint(F.MAX_DATA, this.recvMaxData));
    }
    if (!isUni(id) && r.finished && index + 1 > this.maxStreamsBidi - STREAMS_WINDOW / 2) {
      this.maxStreamsBidi += STREAMS_WINDOW;
      this.owner.queueControl(frameWithVarint(F.MAX_STREAMS_BIDI, this.maxStreamsBidi));
    }
    if (isUni(id)) return undefined; // client unidirectional streams (control, QPACK): read and drop
    if (this.requestsDelivered.has(id)) return undefined; // a retransmitted copy of a request already answered
    if (this.claimed.has(id)) {
      this.onClaimedData(id, r, got);
      return undefined;
    }
    const parts = this.recvRequestData.get(id) ?? [];
    if (got.length > 0) parts.push(got);
    this.recvRequestData.set(id, parts);
    if (r.finished) {
      // Delivered exactly once: the response may be produced asynchronously (static files).
      this.requestsDelivered.add(id);
      this.recvRequestData.delete(id);
      this.owner.onRequest(id, Buffer.concat(parts));
    } else if (got.length > 0 && this.owner.claimStream?.(id, Buffer.concat(parts))) {
      this.recvRequestData.delete(id);
      this.claimed.set(id, INITIAL_MAX_STREAM_DATA);
    }
    return undefined;
  }

  /** In-order data of a claimed stream goes to the host; its credit stays a window ahead of what was read. */
  private onClaimedData(id: number, r: Reassembler, got: Buffer): void {
    if (got.length > 0 || r.finished) this.owner.onStreamData?.(id, got, r.finished);
    if (r.finished) {
      this.claimed.delete(id);
      this.requestsDelivered.add(id);
      return;
    }
    const credit = this.claimed.get(id) ?? INITIAL_MAX_STREAM_DATA;
    if (r.offset > credit - INITIAL_MAX_STREAM_DATA / 2) {
      const next = r.offset + INITIAL_MAX_STREAM_DATA;
      this.claimed.set(id, next);
      const w = new Writer(24);
      w.u8(F.MAX_STREAM_DATA).varint(id).varint(next); // RFC 9000 §19.10
      this.owner.queueControl(Buffer.from(w.view()));
    }
  }

  /** Writes STREAM frames of every stream with something to send into `w`; true if it wrote any. */
  writeFrames(w: Writer, frames: SentFrame[]): boolean {
    let wrote = false;
    for (const s of this.send.values()) {
      while (s.pending && w.room > MIN_STREAM_FRAME_ROOM) {
        if (!this.writeFrame(w, s, frames)) break;
        wrote = true;
      }
      if (w.room <= MIN_STREAM_FRAME_ROOM) break;
    }
    return wrote;
  }

  /** One STREAM frame of `s`: a lost range first, else new data within both credits. */
  private writeFrame(w: Writer, s: SendStream, frames: SentFrame[]): boolean {
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
      len = Math.min(s.end - off, w.room - fixed, streamCredit, connCredit);
      if (len < 0) len = 0;
      fin = s.fin && off + len === s.end;
      if (len === 0 && !fin) return false;
      s.sent += len;
      this.dataSent += len;
      if (fin) {
        s.finSent = true;
        if (!isUni(s.id)) this.owner.onResponse('stream-sent', s);
      }
    }
    if (len < 0) return false;
    w.u8(F.STREAM | STREAM_BITS.OFF | STREAM_BITS.LEN | (fin ? STREAM_BITS.FIN : 0))
      .varint(s.id)
      .varint(off)
      .varint(len)
      .bytes(s.data.subarray(off - s.base, off - s.base + len));
    frames.push({ k: 'stream', s, offset: off, len, fin });
    return true;
  }

  /** A STREAM frame was lost: its range goes out again unless the stream is done. */
  onLost(f: Extract<SentFrame, { k: 'stream' }>): void {
    const s = f.s;
    if (s.done) return;
    // A range already acknowledged through a retransmission and trimmed is not resent.
    const start = Math.max(f.offset, s.base);
    const len = f.offset + f.len - start;
    if (len > 0 || f.fin) s.retransmit.push([start, Math.max(0, len), f.fin]);
  }

  /** A STREAM frame was acknowledged: a response whose every octet and FIN are acknowledged is served. */
  onAcked(f: Extract<SentFrame, { k: 'stream' }>): void {
    const s = f.s;
    s.acked.add(f.offset, f.offset + f.len);
    if (f.fin) s.finAcked = true;
    s.trimAcked();
    if (!s.done && s.fin && s.finAcked && s.acked.covers(0, s.end)) {
      s.done = true;
      if (!isUni(s.id)) this.owner.onResponse('stream-served', s);
    }
  }
}
