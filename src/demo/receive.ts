// The receive side of the demo connection: the frames of one decrypted packet (RFC 9000 §19),
// read by a short dispatch over one small handler per frame type. Handlers parse; what a frame
// does to the connection is the `FrameTarget`'s business.
import { readVarint, varintSizeAt } from '../wire/index.js';
import { F, HANDSHAKE_FRAMES, STREAM_BITS, TransportError } from './frames.js';
import { PATH_DATA_LENGTH, type PathState } from './paths.js';
import { Level, LEVEL_NAMES } from './spaces.js';

/** RFC 9000 §19.15: a NEW_CONNECTION_ID carries a 1..20-octet CID and a 16-octet reset token. */
const MAX_CID_LENGTH = 20;
const RESET_TOKEN_LENGTH = 16;
const STREAM_LAST = F.STREAM | STREAM_BITS.OFF | STREAM_BITS.LEN | STREAM_BITS.FIN;

/** What the connection does with the frames of a packet. */
export interface FrameTarget {
  /** Closes the connection with a transport error (CONNECTION_CLOSE). */
  close(code: number, reason: string): void;
  /** ACK: `ranges` of acknowledged packet numbers, inclusive, largest first. */
  onAck(level: Level, largest: number, ranges: Array<[number, number]>): void;
  /** CRYPTO data; false when the connection is closing (stop reading the packet). */
  onCrypto(level: Level, offset: number, data: Buffer): boolean;
  onStopSending(id: number): void;
  /** RESET_STREAM (RFC 9000 §19.4): the client abandoned its side of stream `id`. */
  onResetStream(id: number): void;
  onMaxData(max: number): void;
  onMaxStreamData(id: number, max: number): void;
  onNewConnectionId(seq: number, retirePriorTo: number, cid: Buffer, token: Buffer): void;
  onRetireConnectionId(seq: number): void;
  onPathChallenge(path: PathState, data: Buffer): void;
  onPathResponse(data: Buffer): void;
  onConnectionClose(code: number, reason: string, app: boolean): void;
  /** STREAM data; false when the connection is closing (stop reading the packet). */
  onStream(id: number, offset: number, data: Buffer, fin: boolean): boolean;
  /** DATAGRAM payload (RFC 9221 §4). */
  onDatagram(data: Buffer): void;
}

/** Facts about a packet's frames the connection needs after reading them. */
export interface PacketInfo {
  /** RFC 9000 §13.2.1: a frame other than ACK, PADDING or CONNECTION_CLOSE. */
  ackEliciting: boolean;
  /** RFC 9000 §9.1: only PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID and PADDING. */
  probingOnly: boolean;
}

class FrameError extends Error {}

/** A cursor over a packet's frames; a read past the end throws FrameError (caught below, once per packet). */
export class FrameReader {
  p: Buffer = Buffer.alloc(0);
  o = 0;

  reset(p: Buffer): void {
    this.p = p;
    this.o = 0;
  }

  varint(): number {
    const v = readVarint(this.p, this.o);
    if (v < 0) throw new FrameError();
    this.o += varintSizeAt(this.p, this.o);
    return v;
  }

  bytes(n: number): Buffer {
    if (this.o + n > this.p.length || n < 0) throw new FrameError();
    const b = this.p.subarray(this.o, this.o + n);
    this.o += n;
    return b;
  }

  get remaining(): number {
    return this.p.length - this.o;
  }
}

/** After a frame: read the next one, stop with the packet processed, or stop and drop it (the connection is closing). */
const Next = { CONTINUE: 0, DONE: 1, DROP: 2 } as const;
type Next = (typeof Next)[keyof typeof Next];

type FrameHandler = (t: FrameTarget, r: FrameReader, type: number, level: Level, path: PathState) => Next;

const ignore: FrameHandler = () => Next.CONTINUE;
/** Frames the server reads and ignores: one varint field (MAX_STREAMS, DATA_BLOCKED, STREAMS_BLOCKED). */
const skipVarint: FrameHandler = (_t, r) => {
  r.varint();
  return Next.CONTINUE;
};

/** ACK / ACK_ECN (RFC 9000 §19.3). An ACK of an unsent packet closes, yet the rest of the packet is read. */
const ack: FrameHandler = (t, r, type, level) => {
  const largest = r.varint();
  r.varint(); // ack delay
  const count = r.varint();
  let hi = largest;
  let lo = largest - r.varint();
  const ranges: Array<[number, number]> = [[lo, hi]];
  for (let i = 0; i < count; i++) {
    const gap = r.varint();
    const len = r.varint();
    hi = lo - gap - 2;
    lo = hi - len;
    if (lo < 0) throw new FrameError();
    ranges.push([lo, hi]);
  }
  if (type === F.ACK_ECN) {
    r.varint(); // ECT(0), ECT(1), ECN-CE counts
    r.varint();
    r.varint();
  }
  if (lo < 0) throw new FrameError();
  t.onAck(level, largest, ranges);
  return Next.CONTINUE;
};

const resetStream: FrameHandler = (t, r) => {
  const id = r.varint();
  r.varint(); // error code, final size: the server sends nothing back
  r.varint();
  t.onResetStream(id);
  return Next.CONTINUE;
};

const stopSending: FrameHandler = (t, r) => {
  const id = r.varint();
  r.varint(); // application error code
  t.onStopSending(id);
  return Next.CONTINUE;
};

const crypto: FrameHandler = (t, r, _type, level) => {
  const off = r.varint();
  const data = r.bytes(r.varint());
  return t.onCrypto(level, off, data) ? Next.CONTINUE : Next.DROP;
};

/** NEW_TOKEN and HANDSHAKE_DONE only go from server to client (RFC 9000 §19.7, §19.20). */
const serverOnly: FrameHandler = (t) => {
  t.close(TransportError.PROTOCOL_VIOLATION, 'client sent a server-only frame');
  return Next.DROP;
};

const maxData: FrameHandler = (t, r) => {
  t.onMaxData(r.varint());
  return Next.CONTINUE;
};

const maxStreamData: FrameHandler = (t, r) => {
  const id = r.varint();
  t.onMaxStreamData(id, r.varint());
  return Next.CONTINUE;
};

const streamDataBlocked: FrameHandler = (_t, r) => {
  r.varint();
  r.varint();
  return Next.CONTINUE;
};

const newConnectionId: FrameHandler = (t, r) => {
  const seq = r.varint();
  const rpt = r.varint();
  const cid = Buffer.from(r.bytes(r.bytes(1)[0]));
  const token = Buffer.from(r.bytes(RESET_TOKEN_LENGTH));
  if (cid.length < 1 || cid.length > MAX_CID_LENGTH || rpt > seq) throw new FrameError();
  t.onNewConnectionId(seq, rpt, cid, token);
  return Next.CONTINUE;
};

const retireConnectionId: FrameHandler = (t, r) => {
  t.onRetireConnectionId(r.varint());
  return Next.CONTINUE;
};

const pathChallenge: FrameHandler = (t, r, _type, _level, path) => {
  t.onPathChallenge(path, Buffer.from(r.bytes(PATH_DATA_LENGTH)));
  return Next.CONTINUE;
};

const pathResponse: FrameHandler = (t, r) => {
  t.onPathResponse(r.bytes(PATH_DATA_LENGTH));
  return Next.CONTINUE;
};

/** CONNECTION_CLOSE (RFC 9000 §19.19): the transport variant carries the frame type that failed. */
const connectionClose: FrameHandler = (t, r, type) => {
  const code = r.varint();
  if (type === F.CONNECTION_CLOSE) r.varint();
  const reason = r.bytes(r.varint()).toString('utf8');
  t.onConnectionClose(code, reason, type === F.CONNECTION_CLOSE_APP);
  return Next.DONE;
};

/** STREAM 0x08..0x0f (RFC 9000 §19.8): without LEN the data runs to the end of the packet. */
const stream: FrameHandler = (t, r, type) => {
  const id = r.varint();
  const off = type & STREAM_BITS.OFF ? r.varint() : 0;
  const len = type & STREAM_BITS.LEN ? r.varint() : r.remaining;
  const data = r.bytes(len);
  return t.onStream(id, off, data, (type & STREAM_BITS.FIN) !== 0) ? Next.CONTINUE : Next.DROP;
};

/** DATAGRAM 0x30 / 0x31 (RFC 9221 §4): 0x31 carries a length, 0x30 runs to the end of the packet. */
const datagram: FrameHandler = (t, r, type) => {
  const len = type === F.DATAGRAM_LEN ? r.varint() : r.remaining;
  t.onDatagram(r.bytes(len));
  return Next.CONTINUE;
};

/** The handler of each frame type the server knows (RFC 9000 §19, table 3). */
const HANDLERS: Array<FrameHandler | undefined> = [];
HANDLERS[F.PADDING] = ignore;
HANDLERS[F.PING] = ignore;
HANDLERS[F.ACK] = ack;
HANDLERS[F.ACK_ECN] = ack;
HANDLERS[F.RESET_STREAM] = resetStream;
HANDLERS[F.STOP_SENDING] = stopSending;
HANDLERS[F.CRYPTO] = crypto;
HANDLERS[F.NEW_TOKEN] = serverOnly;
for (let type = F.STREAM; type <= STREAM_LAST; type++) HANDLERS[type] = stream;
HANDLERS[F.MAX_DATA] = maxData;
HANDLERS[F.MAX_STREAM_DATA] = maxStreamData;
HANDLERS[F.MAX_STREAMS_BIDI] = skipVarint;
HANDLERS[F.MAX_STREAMS_UNI] = skipVarint;
HANDLERS[F.DATA_BLOCKED] = skipVarint;
HANDLERS[F.STREAM_DATA_BLOCKED] = streamDataBlocked;
HANDLERS[F.STREAMS_BLOCKED_BIDI] = skipVarint;
HANDLERS[F.STREAMS_BLOCKED_UNI] = skipVarint;
HANDLERS[F.NEW_CONNECTION_ID] = newConnectionId;
HANDLERS[F.RETIRE_CONNECTION_ID] = retireConnectionId;
HANDLERS[F.PATH_CHALLENGE] = pathChallenge;
HANDLERS[F.PATH_RESPONSE] = pathResponse;
HANDLERS[F.CONNECTION_CLOSE] = connectionClose;
HANDLERS[F.CONNECTION_CLOSE_APP] = connectionClose;
HANDLERS[F.HANDSHAKE_DONE] = serverOnly;
HANDLERS[F.DATAGRAM] = datagram;
HANDLERS[F.DATAGRAM_LEN] = datagram;

const isAckEliciting = (type: number): boolean =>
  type !== F.PADDING &&
  type !== F.ACK &&
  type !== F.ACK_ECN &&
  type !== F.CONNECTION_CLOSE &&
  type !== F.CONNECTION_CLOSE_APP;
const isProbing = (type: number): boolean =>
  type === F.PADDING || type === F.PATH_CHALLENGE || type === F.PATH_RESPONSE || type === F.NEW_CONNECTION_ID;

/**
 * Reads every frame of a packet's `payload` at `level` received on `path` and hands each to `t`,
 * noting in `info` what the packet was. False when the packet must not count as received: a
 * frame closed the connection (a frame not allowed at `level`, RFC 9000 §12.4; an unknown type
 * or a malformed frame: FRAME_ENCODING_ERROR; or a handler's own error).
 */
export function processFrames(
  t: FrameTarget,
  r: FrameReader,
  level: Level,
  payload: Buffer,
  path: PathState,
  info: PacketInfo,
): boolean {
  r.reset(payload);
  try {
    while (r.remaining > 0) {
      const type = r.varint();
      if (isAckEliciting(type)) info.ackEliciting = true;
      if (!isProbing(type)) info.probingOnly = false;
      if (level !== Level.APPLICATION && !HANDSHAKE_FRAMES.has(type)) {
        t.close(TransportError.PROTOCOL_VIOLATION, `frame 0x${type.toString(16)} not allowed at ${LEVEL_NAMES[level]}`);
        return false;
      }
      const handler = HANDLERS[type];
      if (!handler) {
        t.close(TransportError.FRAME_ENCODING_ERROR, `unknown frame type 0x${type.toString(16)}`);
        return false;
      }
      const next = handler(t, r, type, level, path);
      if (next !== Next.CONTINUE) return next === Next.DONE;
    }
  } catch (err) {
    if (!(err instanceof FrameError)) throw err;
    t.close(TransportError.FRAME_ENCODING_ERROR, 'malformed frame');
    return false;
  }
  return true;
}
