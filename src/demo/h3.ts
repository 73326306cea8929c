// Minimal HTTP/3 (RFC 9114) for the demo server: a control stream with an empty SETTINGS
// frame, and GET requests answered with HEADERS (QPACK static table) + DATA.
import { readVarint, varintSizeAt, writeVarint } from '../wire/index.js';
import { decodeFieldSection } from './qpack.js';
import { encodeSettings, WT_SETTINGS } from './webtransport.js';

// RFC 9114 §7.2 frame types, §6.2 stream types.
const FRAME_DATA = 0x00;
const FRAME_HEADERS = 0x01;
const STREAM_TYPE_CONTROL = 0x00;
/** RFC 9114 §8.1 error codes: H3_NO_ERROR (clean close), H3_MESSAGE_ERROR (malformed request). */
export const H3_NO_ERROR = 0x0100;
export const H3_MESSAGE_ERROR = 0x010e;

/**
 * The server's control stream payload: stream type 0x00, then SETTINGS (RFC 9114 §7.2.4) with
 * extended CONNECT, HTTP datagrams and WebTransport (webtransport.ts).
 */
export const CONTROL_STREAM_PREFIX = Buffer.concat([Buffer.of(STREAM_TYPE_CONTROL), encodeSettings(WT_SETTINGS)]);

/** Largest body `/bytes/N` serves. */
export const MAX_GENERATED_BODY = 64 * 1024 * 1024;

/**
 * The body of `GET /bytes/N`: N octets, octet i = i mod 251 (251 is prime, so the pattern does
 * not line up with packet sizes and a misplaced chunk changes the digest).
 */
export function generateBody(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = i % 251;
  return out;
}

export interface H3Request {
  method: string;
  path: string;
  authority: string;
  /** RFC 9220 §3: the :protocol pseudo-header of an extended CONNECT ('' otherwise). */
  protocol: string;
}

export interface H3Response {
  status: 200 | 404 | 400 | 429;
  body: Buffer;
  /** Extra header fields (lower-case names), sent as literals. */
  headers?: ReadonlyArray<readonly [string, string]>;
}

// QPACK encoded field sections for the responses: Required Insert Count 0, Base 0, then an
// indexed static field line (RFC 9204 §4.5.2): 0xc0 | index; :status 200 = 25, 404 = 27.
const STATUS_FIELD: Record<number, number> = { 200: 0xc0 | 25, 404: 0xc0 | 27 };

function frameHeader(type: number, length: number): Buffer {
  const b = Buffer.alloc(16);
  return b.subarray(0, writeVarint(b, writeVarint(b, 0, type), length));
}

/** RFC 7541 §5.1 prefixed integer after `flags` in a `prefixBits`-bit prefix. */
function prefixed(flags: number, prefixBits: number, value: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  for (let v = value - max; ; v = Math.floor(v / 128)) {
    if (v < 128) return [...out, v];
    out.push(0x80 | (v & 0x7f));
  }
}

/** RFC 9204 §4.5.6 literal field line with literal name (no Huffman, never-indexed bit clear). */
function literalField(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from(prefixed(0x20, 3, n.length)), n, Buffer.from(prefixed(0, 7, v.length)), v]);
}

/** The encoded field section of a response: :status, then `res.headers`. */
function responseFields(res: H3Response): Buffer {
  const idx = STATUS_FIELD[res.status];
  const status =
    idx !== undefined
      ? Buffer.of(idx)
      : // Literal with static name reference to :status (index 24), RFC 9204 §4.5.4.
        Buffer.concat([Buffer.of(0x50 | 0x0f, 24 - 15, 3), Buffer.from(String(res.status))]);
  const extra = (res.headers ?? []).map(([k, v]) => literalField(k, v));
  return Buffer.concat([Buffer.of(0, 0), status, ...extra]);
}

/** The HEADERS frame of a response (alone: a CONNECT answer keeps its stream open). */
export function encodeResponseHeaders(res: H3Response): Buffer {
  const fields = responseFields(res);
  return Buffer.concat([frameHeader(FRAME_HEADERS, fields.length), fields]);
}

/** Encodes a response as HEADERS + DATA frames. */
export function encodeResponse(res: H3Response): Buffer {
  return Buffer.concat([encodeResponseHeaders(res), frameHeader(FRAME_DATA, res.body.length), res.body]);
}

/**
 * Reads the first HEADERS frame of a request stream. Returns the request, 'incomplete' when
 * more bytes are needed, or 'error' when the stream is malformed.
 */
export function parseRequest(data: Buffer): H3Request | 'incomplete' | 'error' {
  let off = 0;
  while (off < data.length) {
    const type = readVarint(data, off);
    if (type < 0) return 'incomplete';
    const o2 = off + varintSizeAt(data, off);
    const len = readVarint(data, o2);
    if (len < 0) return 'incomplete';
    const start = o2 + varintSizeAt(data, o2);
    if (start + len > data.length) return 'incomplete';
    if (type === FRAME_HEADERS) {
      const fields = decodeFieldSection(data.subarray(start, start + len));
      if (!fields) return 'error';
      const get = (n: string): string => fields.find(([k]) => k === n)?.[1] ?? '';
      const path = get(':path');
      if (!path) return 'error';
      return { method: get(':method') || 'GET', path, authority: get(':authority'), protocol: get(':protocol') };
    }
    if (type === FRAME_DATA) return 'error'; // DATA before HEADERS
    off = start + len; // unknown / reserved frame types are skipped (RFC 9114 §9)
  }
  return 'incomplete';
}
