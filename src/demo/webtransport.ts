// WebTransport over HTTP/3 for the demo server, in the wire version Chromium negotiates with a
// server that advertises SETTINGS_ENABLE_WEBTRANSPORT: draft-ietf-webtrans-http3-02.
// - Chromium (quiche) supports draft-02 and draft-07; it picks draft-07 only when the server
//   sends SETTINGS_WEBTRANSPORT_MAX_SESSIONS (0xc671706a), and Chrome still requires
//   SETTINGS_ENABLE_WEBTRANSPORT (0x2b603742) to open a session at all (picoquic PR #2012,
//   "Add SETTINGS_ENABLE_WEBTRANSPORT for Chrome compatibility", 2026-01; wtransport issue #43).
//   The demo advertises draft-02 only: one setting, no capsules, no WT flow control.
// - A session is an extended CONNECT request (RFC 9220 §3, :protocol = webtransport) answered
//   200 with `sec-webtransport-http3-draft: draft02` (draft-02 §3.3); its session ID is the
//   CONNECT stream's ID (draft-02 §4.1).
// - A client bidirectional stream of a session starts with the signal value 0x41 and the session
//   ID (draft-02 §4.2); datagrams are HTTP Datagrams (RFC 9297 §2.1: quarter stream ID, payload)
//   in QUIC DATAGRAM frames (RFC 9221).
// - The session ends when its CONNECT stream ends (draft-02 §4.4) or the connection closes.
import { readVarint, varintSizeAt, writeVarint, type TransportParameters } from '../wire/index.js';

/** RFC 9114 §7.2.4: the SETTINGS frame type. */
const FRAME_SETTINGS = 0x04;
/** RFC 9114 §7.2.4.1 setting identifiers the demo sends. */
export const SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x08; // RFC 9220 §3
export const SETTINGS_H3_DATAGRAM = 0x33; // RFC 9297 §2.1.1
export const SETTINGS_ENABLE_WEBTRANSPORT = 0x2b603742; // draft-ietf-webtrans-http3-02 §8.2
/** RFC 9221 §3: transport parameter max_datagram_frame_size (RFC 9297 §2.1.1 requires it with H3_DATAGRAM). */
export const TP_MAX_DATAGRAM_FRAME_SIZE = 0x20;
export const MAX_DATAGRAM_FRAME_SIZE = 1200;
/** draft-02 §4.2: first octets of a WebTransport bidirectional stream (WEBTRANSPORT_STREAM). */
export const WT_BIDI_SIGNAL = 0x41;
/** draft-02 §3.3: the response header that confirms the draft version. */
export const DRAFT_HEADER = 'sec-webtransport-http3-draft';
export const DRAFT_VALUE = 'draft02';

/** Per-connection bounds (every structure a client can grow is bounded). */
export const MAX_SESSIONS_PER_CONNECTION = 1;
export const MAX_STREAMS_PER_SESSION = 4;

/** The peer's max_datagram_frame_size (RFC 9221 §3) from its transport parameters; 0 when absent or malformed. */
export function maxDatagramFrameSize(tp: TransportParameters): number {
  const p = tp.unknown?.find((u) => u.id === TP_MAX_DATAGRAM_FRAME_SIZE);
  if (!p) return 0;
  const v = readVarint(p.value, 0);
  return v > 0 && varintSizeAt(p.value, 0) === p.value.length ? v : 0;
}

/** A SETTINGS frame (RFC 9114 §7.2.4) carrying `settings` in order. */
export function encodeSettings(settings: ReadonlyArray<readonly [number, number]>): Buffer {
  const body = Buffer.alloc(settings.length * 16);
  let n = 0;
  for (const [id, value] of settings) n = writeVarint(body, writeVarint(body, n, id), value);
  const head = Buffer.alloc(16);
  const h = writeVarint(head, writeVarint(head, 0, FRAME_SETTINGS), n);
  return Buffer.concat([head.subarray(0, h), body.subarray(0, n)]);
}

/** The settings the demo advertises: extended CONNECT, HTTP datagrams, WebTransport draft-02. */
export const WT_SETTINGS: ReadonlyArray<readonly [number, number]> = [
  [SETTINGS_ENABLE_CONNECT_PROTOCOL, 1],
  [SETTINGS_H3_DATAGRAM, 1],
  [SETTINGS_ENABLE_WEBTRANSPORT, 1],
];

/**
 * Reads the stream header of a client bidirectional stream: the session ID when it starts with
 * the WebTransport signal, 'incomplete' when more octets are needed, undefined when it is not a
 * WebTransport stream (an ordinary request). `length` is the header's size.
 */
export function parseStreamSignal(data: Buffer): { sessionId: number; length: number } | 'incomplete' | undefined {
  const type = readVarint(data, 0);
  if (type < 0) return data.length === 0 || data.length < varintSizeAt(data, 0) ? 'incomplete' : undefined;
  if (type !== WT_BIDI_SIGNAL) return undefined;
  const o = varintSizeAt(data, 0);
  const sessionId = readVarint(data, o);
  if (sessionId < 0) return 'incomplete';
  return { sessionId, length: o + varintSizeAt(data, o) };
}

/** A stream header for `sessionId` (what a client writes first; tests use it). */
export function encodeStreamSignal(sessionId: number): Buffer {
  const b = Buffer.alloc(16);
  return b.subarray(0, writeVarint(b, writeVarint(b, 0, WT_BIDI_SIGNAL), sessionId));
}

/** An HTTP Datagram (RFC 9297 §2.1): quarter stream ID of the session, then the payload. */
export function parseDatagram(data: Buffer): { sessionId: number; payload: Buffer } | undefined {
  const q = readVarint(data, 0);
  if (q < 0) return undefined;
  return { sessionId: q * 4, payload: data.subarray(varintSizeAt(data, 0)) };
}

export function encodeDatagram(sessionId: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  const n = writeVarint(b, 0, sessionId / 4);
  b.set(payload, n);
  return b.subarray(0, n + payload.length);
}

/** What a session's application does; every callback runs inside a socket handler and must not throw. */
export interface WtHandler {
  /** Data on one of the session's client streams (after the stream header). */
  onStreamData(streamId: number, data: Buffer, fin: boolean): void;
  onDatagram?(payload: Buffer): void;
  /** The session ended (CONNECT stream finished, connection gone, or server close). */
  onClose(reason: string): void;
}

/** What the session table needs from its connection. */
export interface WtTransport {
  sendStream(streamId: number, data: Buffer, fin: boolean): void;
  /** Octets written on `streamId` and not yet sent (flow control or congestion holds them). */
  unsent?(streamId: number): number;
  sendDatagram?(data: Buffer): void;
}

/** Why a stream or request was refused (counted by the table). */
export type WtDrop = 'session-limit' | 'stream-limit' | 'unknown-session';

export class WtSession {
  state: 'open' | 'closed' = 'open';
  readonly streams = new Set<number>();
  handler: WtHandler | undefined;
  constructor(
    readonly id: number,
    readonly path: string,
    private readonly transport: WtTransport,
  ) {}

  send(streamId: number, data: Buffer): void {
    if (this.state === 'open') this.transport.sendStream(streamId, data, false);
  }

  /** Octets queued on `streamId` that have not gone out yet. */
  backlog(streamId: number): number {
    return this.transport.unsent?.(streamId) ?? 0;
  }

  sendDatagram(payload: Uint8Array): void {
    if (this.state === 'open') this.transport.sendDatagram?.(encodeDatagram(this.id, payload));
  }
}

/**
 * The WebTransport sessions of one connection: opened by CONNECT, streams attached by their
 * header, closed once. Bounded by MAX_SESSIONS_PER_CONNECTION and MAX_STREAMS_PER_SESSION;
 * refused requests and streams are counted in `drops`.
 */
export class WtSessions {
  readonly sessions = new Map<number, WtSession>();
  private readonly streamSession = new Map<number, number>();
  readonly drops: Record<WtDrop, number> = {
    'session-limit': 0,
    'stream-limit': 0,
    'unknown-session': 0,
  };
  constructor(private readonly transport: WtTransport) {}

  /** A CONNECT with :protocol webtransport on `streamId`; undefined (and counted) past the limit. */
  open(streamId: number, path: string): WtSession | undefined {
    if (this.sessions.size >= MAX_SESSIONS_PER_CONNECTION || this.sessions.has(streamId)) {
      this.drops['session-limit']++;
      return undefined;
    }
    const s = new WtSession(streamId, path, this.transport);
    this.sessions.set(streamId, s);
    return s;
  }

  /** A client stream that named `sessionId` in its header: its session, or undefined (counted). */
  attach(streamId: number, sessionId: number): WtSession | undefined {
    const s = this.sessions.get(sessionId);
    const drop: WtDrop | undefined = !s
      ? 'unknown-session'
      : s.streams.size >= MAX_STREAMS_PER_SESSION
        ? 'stream-limit'
        : undefined;
    if (drop || !s) {
      this.drops[drop ?? 'unknown-session']++;
      return undefined;
    }
    s.streams.add(streamId);
    this.streamSession.set(streamId, sessionId);
    return s;
  }

  /** Data on an attached stream or on a session's CONNECT stream (its FIN ends the session). */
  onStreamData(streamId: number, data: Buffer, fin: boolean): void {
    const connect = this.sessions.get(streamId);
    if (connect) {
      if (fin) this.close(streamId, 'connect-stream-finished');
      return; // draft-02 carries nothing else on the CONNECT stream
    }
    const sid = this.streamSession.get(streamId);
    const s = sid === undefined ? undefined : this.sessions.get(sid);
    if (!s || s.state !== 'open') return;
    s.handler?.onStreamData(streamId, data, fin);
    if (fin) {
      s.streams.delete(streamId);
      this.streamSession.delete(streamId);
    }
  }

  onDatagram(data: Buffer): void {
    const d = parseDatagram(data);
    const s = d && this.sessions.get(d.sessionId);
    if (!d || !s || s.state !== 'open') {
      this.drops['unknown-session']++;
      return;
    }
    s.handler?.onDatagram?.(d.payload);
  }

  /** Ends session `id` once: FIN on its CONNECT stream (draft-02 §4.4) unless the connection is gone. */
  close(id: number, reason: string, connectionGone = false): void {
    const s = this.sessions.get(id);
    if (!s || s.state === 'closed') return;
    s.state = 'closed';
    this.sessions.delete(id); // a closed session keeps no state: later streams naming it are unknown
    for (const st of s.streams) this.streamSession.delete(st);
    s.streams.clear();
    if (!connectionGone) this.transport.sendStream(id, Buffer.alloc(0), true);
    s.handler?.onClose(reason);
  }

  /** The connection is gone: every open session ends. */
  closeAll(reason: string): void {
    for (const id of [...this.sessions.keys()]) this.close(id, reason, true);
  }

  get openCount(): number {
    return this.sessions.size;
  }
}
