// The benchmark trailer: the last TRAILER_LENGTH bytes of every generated datagram. Placed at the
// end so a sink finds it whatever header (QUIC long/short, PROXY v2) sits in front.
//
//   -24 magic u16 | -22 trial u16 | -20 conn u32 | -16 seq u32 | -12 kind u16 | -10 length u16 | -8 sendTime f64 (µs)
//
// `length` is the size of the QUIC datagram as the generator sent it, so a sink can check that
// the datagram behind an encapsulation header arrived untouched. `sendTime` is
// CLOCK_MONOTONIC in µs (process.hrtime), shared by every process on the host.

export const TRAILER_LENGTH = 24;
export const TRAILER_MAGIC = 0xb15e;

export const KIND_INITIAL = 0;
export const KIND_SHORT = 1;
/** Connection churn for the memory curve: counted, never owned. */
export const KIND_CHURN = 2;

export interface Trailer {
  trial: number;
  conn: number;
  seq: number;
  kind: number;
  length: number;
  sendTimeUs: number;
}

/** Monotonic clock in microseconds (CLOCK_MONOTONIC, same origin in every process). */
export function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

export function writeTrailerStatic(buf: Buffer, trial: number, conn: number, kind: number): void {
  const o = buf.length - TRAILER_LENGTH;
  buf.writeUInt16BE(TRAILER_MAGIC, o);
  buf.writeUInt16BE(trial & 0xffff, o + 2);
  buf.writeUInt32BE(conn >>> 0, o + 4);
  buf.writeUInt16BE(kind, o + 12);
  buf.writeUInt16BE(buf.length & 0xffff, o + 14);
}

/** Per-send fields: sequence number and send time. */
export function stampTrailer(buf: Buffer, seq: number, sendTimeUs: number): void {
  const o = buf.length - TRAILER_LENGTH;
  buf.writeUInt32BE(seq >>> 0, o + 8);
  buf.writeDoubleBE(sendTimeUs, o + 16);
}

/** Returns false if the datagram carries no bench trailer. */
export function readTrailer(buf: Buffer, out: Trailer): boolean {
  if (buf.length < TRAILER_LENGTH) return false;
  const o = buf.length - TRAILER_LENGTH;
  if (buf.readUInt16BE(o) !== TRAILER_MAGIC) return false;
  out.trial = buf.readUInt16BE(o + 2);
  out.conn = buf.readUInt32BE(o + 4);
  out.seq = buf.readUInt32BE(o + 8);
  out.kind = buf.readUInt16BE(o + 12);
  out.length = buf.readUInt16BE(o + 14);
  out.sendTimeUs = buf.readDoubleBE(o + 16);
  return true;
}
