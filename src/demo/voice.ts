// The server side of the voice demo (`/voice`): over one WebTransport bidirectional stream, the
// page and the server each send one 160-octet record every 20 ms (the size and pace of a voice
// codec frame). Each record carries a sequence number, its send time, and an echo of the latest
// record received (its send time and how long it was held) so each side measures the
// round-trip time on its own clock. The server also reports the path the client reached it on
// (the VIP through the LB, or its own address after migration) in a path record.
import type { WtHandler, WtSession } from './webtransport.js';

/** One record on the voice stream: fixed size, big-endian fields. */
export const RECORD_SIZE = 160;
export const FRAME_INTERVAL_MS = 20;
/** A frame is late when it arrives more than this after its slot (its send time + the best transit seen). */
export const LATE_MS = 60;
export const RecordKind = { AUDIO: 1, PATH: 2 } as const;
// Offsets: kind u8, seq u32, sentAt f64, echoSentAt f64, echoHeldMs f64, then padding
// (a PATH record: u16 length + UTF-8 JSON at PATH_OFFSET).
/** Field offsets of a record (the page's script gets the same object). */
export const RECORD_OFFSETS = { seq: 1, sentAt: 5, echoSentAt: 13, echoHeldMs: 21, path: 29 } as const;
const OFF_SEQ = RECORD_OFFSETS.seq;
const OFF_SENT = RECORD_OFFSETS.sentAt;
const OFF_ECHO = RECORD_OFFSETS.echoSentAt;
const OFF_HELD = RECORD_OFFSETS.echoHeldMs;
const PATH_OFFSET = RECORD_OFFSETS.path;
const MAX_PATH_JSON = RECORD_SIZE - PATH_OFFSET - 2;
/**
 * A frame is dropped (the page counts it lost) rather than queued when this many octets wait
 * unsent on the stream (2 s of frames): the per-session send buffer stays bounded when the
 * client stops reading or the path stalls.
 */
export const MAX_BACKLOG_OCTETS = 100 * RECORD_SIZE;
/** Datagrams (RFC 9297) the session echoes, at most this long. */
export const MAX_ECHO_DATAGRAM = RECORD_SIZE;
/** Frames between two `voice-frames` progress events (5 s). */
const PROGRESS_EVERY = 250;

export interface VoiceRecord {
  kind: number;
  seq: number;
  sentAt: number;
  echoSentAt: number;
  echoHeldMs: number;
  /** PATH records: the decoded report. */
  path?: Record<string, unknown>;
}

/** Encodes one record (RECORD_SIZE octets). A path report longer than the room is cut (never thrown). */
export function encodeRecord(r: VoiceRecord): Buffer {
  const b = Buffer.alloc(RECORD_SIZE);
  b[0] = r.kind;
  b.writeUInt32BE(r.seq >>> 0, OFF_SEQ);
  b.writeDoubleBE(r.sentAt, OFF_SENT);
  b.writeDoubleBE(r.echoSentAt, OFF_ECHO);
  b.writeDoubleBE(r.echoHeldMs, OFF_HELD);
  if (r.kind === RecordKind.PATH && r.path) {
    const json = Buffer.from(JSON.stringify(r.path)).subarray(0, MAX_PATH_JSON);
    b.writeUInt16BE(json.length, PATH_OFFSET);
    json.copy(b, PATH_OFFSET + 2);
  }
  return b;
}

/** Decodes one record of exactly RECORD_SIZE octets; undefined for an unknown kind or bad JSON. */
export function decodeRecord(b: Buffer): VoiceRecord | undefined {
  if (b.length !== RECORD_SIZE) return undefined;
  const kind = b[0];
  if (kind !== RecordKind.AUDIO && kind !== RecordKind.PATH) return undefined;
  const r: VoiceRecord = {
    kind,
    seq: b.readUInt32BE(OFF_SEQ),
    sentAt: b.readDoubleBE(OFF_SENT),
    echoSentAt: b.readDoubleBE(OFF_ECHO),
    echoHeldMs: b.readDoubleBE(OFF_HELD),
  };
  if (kind === RecordKind.PATH) {
    const len = b.readUInt16BE(PATH_OFFSET);
    if (len > MAX_PATH_JSON) return undefined;
    try {
      r.path = JSON.parse(b.toString('utf8', PATH_OFFSET + 2, PATH_OFFSET + 2 + len)) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
  return r;
}

/** Receive-side counters of one direction: frames, gaps in sequence (lost), late, bad records. */
export class FrameStats {
  received = 0;
  lost = 0;
  late = 0;
  bad = 0;
  private nextSeq = 0;
  private bestTransit = Infinity;

  /** One audio frame arrived at `now` (receiver clock); `sentAt` is on the sender's clock. */
  onFrame(seq: number, sentAt: number, now: number): void {
    this.received++;
    if (seq > this.nextSeq) this.lost += seq - this.nextSeq;
    if (seq >= this.nextSeq) this.nextSeq = seq + 1;
    // The clocks differ by an unknown offset: lateness is transit beyond the best transit seen.
    const transit = now - sentAt;
    if (transit < this.bestTransit) this.bestTransit = transit;
    if (transit - this.bestTransit > LATE_MS) this.late++;
  }
}

/** What a voice session needs from the server. */
export interface VoiceHost {
  now(): number;
  /** The connection's current path: the client address and the local side's name. */
  path(): { client: string; via: string };
  event(name: string, fields: Record<string, unknown>): void;
}

/**
 * One voice session: the first stream the page opens carries the frames both ways. Further
 * streams are read and ignored; partial records are buffered (< RECORD_SIZE octets).
 */
export class VoiceSession implements WtHandler {
  readonly stats = new FrameStats();
  sent = 0;
  /** Frames not queued because the backlog was full (the page sees them as lost). */
  dropped = 0;
  private seq = 0;
  /** HTTP datagrams received, and echoed back unchanged (the page measures their round trip). */
  datagramsIn = 0;
  datagramsOut = 0;
  rttMs = NaN;
  private stream = -1;
  private partial: Buffer = Buffer.alloc(0);
  private startedAt = 0;
  private lastPath = '';
  private echo = { sentAt: 0, at: 0 };
  closed = false;

  constructor(
    private readonly session: WtSession,
    private readonly host: VoiceHost,
  ) {
    const p = host.path();
    this.lastPath = p.via;
    host.event('voice-session-open', { session: session.id, client: p.client, via: p.via });
  }

  onStreamData(streamId: number, data: Buffer, fin: boolean): void {
    if (this.stream < 0) {
      this.stream = streamId;
      this.startedAt = this.host.now();
      this.sendPath();
    }
    if (streamId !== this.stream) return;
    let buf = this.partial.length > 0 ? Buffer.concat([this.partial, data]) : data;
    while (buf.length >= RECORD_SIZE) {
      this.onRecord(buf.subarray(0, RECORD_SIZE));
      buf = buf.subarray(RECORD_SIZE);
    }
    this.partial = Buffer.from(buf);
    if (fin) this.stream = -2; // the page stopped sending; the session ends with its CONNECT stream
  }

  /** A datagram of the session: echoed once, unreliably, if it is no longer than a record. */
  onDatagram(payload: Buffer): void {
    this.datagramsIn++;
    if (this.closed || payload.length > MAX_ECHO_DATAGRAM) return;
    this.session.sendDatagram(payload);
    this.datagramsOut++;
  }

  private onRecord(b: Buffer): void {
    const r = decodeRecord(b);
    if (!r || r.kind !== RecordKind.AUDIO) {
      this.stats.bad++;
      return;
    }
    const now = this.host.now();
    this.stats.onFrame(r.seq, r.sentAt, now);
    this.echo = { sentAt: r.sentAt, at: now };
    if (r.echoSentAt > 0) this.rttMs = now - r.echoSentAt - r.echoHeldMs;
    if (this.stats.received % PROGRESS_EVERY === 0) this.progress('voice-frames');
  }

  /** Timer: the frames that are due (one per 20 ms since the stream opened), and a path change. */
  tick(): void {
    if (this.closed || this.stream < 0) return;
    const p = this.host.path();
    if (p.via !== this.lastPath) {
      this.host.event('voice-path', { session: this.session.id, from: this.lastPath, to: p.via, client: p.client });
      this.lastPath = p.via;
      this.sendPath();
    }
    const now = this.host.now();
    const due = Math.floor((now - this.startedAt) / FRAME_INTERVAL_MS) + 1;
    while (this.seq < due) {
      const seq = this.seq++;
      if (this.session.backlog(this.stream) > MAX_BACKLOG_OCTETS) {
        this.dropped++;
        continue;
      }
      const rec = encodeRecord({
        kind: RecordKind.AUDIO,
        seq,
        sentAt: now,
        echoSentAt: this.echo.sentAt,
        echoHeldMs: this.echo.at > 0 ? now - this.echo.at : 0,
      });
      this.session.send(this.stream, rec);
      this.sent++;
    }
  }

  private sendPath(): void {
    const p = this.host.path();
    const path = { via: p.via, client: p.client };
    const rec = encodeRecord({
      kind: RecordKind.PATH,
      seq: 0,
      sentAt: this.host.now(),
      echoSentAt: 0,
      echoHeldMs: 0,
      path,
    });
    if (this.stream >= 0) this.session.send(this.stream, rec);
  }

  private progress(name: string, extra: Record<string, unknown> = {}): void {
    const s = this.stats;
    this.host.event(name, {
      session: this.session.id,
      framesIn: s.received,
      framesOut: this.sent,
      dropped: this.dropped,
      datagramsIn: this.datagramsIn,
      datagramsOut: this.datagramsOut,
      lost: s.lost,
      late: s.late,
      bad: s.bad,
      rttMs: Number.isFinite(this.rttMs) ? Math.round(this.rttMs * 10) / 10 : null,
      ...extra,
    });
  }

  onClose(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.progress('voice-session-close', { reason, via: this.lastPath });
  }
}
