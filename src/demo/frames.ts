// QUIC v1 frame types and transport error codes (RFC 9000 §19, §20.1), and the few frame
// encoders shared by the demo connection.
import { Writer } from './buffers.js';

// RFC 9000 §19 frame types.
export const F = {
  PADDING: 0x00,
  PING: 0x01,
  ACK: 0x02,
  ACK_ECN: 0x03,
  RESET_STREAM: 0x04,
  STOP_SENDING: 0x05,
  CRYPTO: 0x06,
  NEW_TOKEN: 0x07,
  STREAM: 0x08, // 0x08..0x0f: OFF=0x04, LEN=0x02, FIN=0x01
  MAX_DATA: 0x10,
  MAX_STREAM_DATA: 0x11,
  MAX_STREAMS_BIDI: 0x12,
  MAX_STREAMS_UNI: 0x13,
  DATA_BLOCKED: 0x14,
  STREAM_DATA_BLOCKED: 0x15,
  STREAMS_BLOCKED_BIDI: 0x16,
  STREAMS_BLOCKED_UNI: 0x17,
  NEW_CONNECTION_ID: 0x18,
  RETIRE_CONNECTION_ID: 0x19,
  PATH_CHALLENGE: 0x1a,
  PATH_RESPONSE: 0x1b,
  CONNECTION_CLOSE: 0x1c,
  CONNECTION_CLOSE_APP: 0x1d,
  HANDSHAKE_DONE: 0x1e,
  /** RFC 9221 §4 (the server advertises max_datagram_frame_size for WebTransport). */
  DATAGRAM: 0x30,
  DATAGRAM_LEN: 0x31,
} as const;

/** STREAM frame type bits (RFC 9000 §19.8): types 0x08..0x0f are STREAM | OFF | LEN | FIN. */
export const STREAM_BITS = { OFF: 0x04, LEN: 0x02, FIN: 0x01 } as const;

/** RFC 9000 §12.4 table 3: frames allowed in Initial and Handshake packets. */
export const HANDSHAKE_FRAMES = new Set<number>([F.PADDING, F.PING, F.ACK, F.ACK_ECN, F.CRYPTO, F.CONNECTION_CLOSE]);

/**
 * Every QUIC transport error code (RFC 9000 §20.1, table 7), the one place the demo names them.
 * CONNECTION_CLOSE (type 0x1c) carries one of these; a TLS alert becomes a code of the
 * CRYPTO_ERROR range ({@link cryptoError}).
 */
export const TransportError = {
  NO_ERROR: 0x00,
  INTERNAL_ERROR: 0x01,
  CONNECTION_REFUSED: 0x02,
  FLOW_CONTROL_ERROR: 0x03,
  STREAM_LIMIT_ERROR: 0x04,
  STREAM_STATE_ERROR: 0x05,
  FINAL_SIZE_ERROR: 0x06,
  FRAME_ENCODING_ERROR: 0x07,
  TRANSPORT_PARAMETER_ERROR: 0x08,
  CONNECTION_ID_LIMIT_ERROR: 0x09,
  PROTOCOL_VIOLATION: 0x0a,
  INVALID_TOKEN: 0x0b,
  APPLICATION_ERROR: 0x0c,
  CRYPTO_BUFFER_EXCEEDED: 0x0d,
  KEY_UPDATE_ERROR: 0x0e,
  AEAD_LIMIT_REACHED: 0x0f,
  NO_VIABLE_PATH: 0x10,
  /** First code of the CRYPTO_ERROR range 0x0100-0x01ff (use {@link cryptoError}). */
  CRYPTO_ERROR: 0x0100,
} as const;

/** RFC 9001 §4.8: the transport error code for TLS alert `alert` (RFC 8446 §6): 0x0100 + alert. */
export function cryptoError(alert: number): number {
  return TransportError.CRYPTO_ERROR + alert;
}

/** A frame that is its type and one varint: MAX_DATA, MAX_STREAMS, RETIRE_CONNECTION_ID, ... */
export function frameWithVarint(type: number, value: number): Buffer {
  const w = new Writer(16);
  w.u8(type).varint(value);
  return Buffer.from(w.view());
}

/** RETIRE_CONNECTION_ID (RFC 9000 §19.16). */
export function frameRetireConnectionId(seq: number): Buffer {
  return frameWithVarint(F.RETIRE_CONNECTION_ID, seq);
}
