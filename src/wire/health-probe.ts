/**
 * The LB's UDP health probe (written by the LB helper; the backend adapter answers it).
 *
 * A probe is a PROXY protocol v2 header with the LOCAL command (so no backend can mistake it for
 * an encapsulated QUIC datagram, which always uses the PROXY command) whose TLV block holds one
 * custom TLV (type 0xEE, from the PP2_TYPE_MIN_CUSTOM..MAX_CUSTOM range 0xE0..0xEF):
 *
 *   0..11  PROXY v2 signature  0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a
 *   12     0x20                version 2, command LOCAL
 *   13     0x00                AF_UNSPEC, UNSPEC
 *   14..15 0x000c              length of the rest (12)
 *   16     0xee                TLV type: quic-lb health probe
 *   17..18 0x0009              TLV length
 *   19     kind                1 = request (LB -> backend), 2 = reply "up", 3 = reply "draining"
 *   20..27 token               8 octets chosen by the LB, echoed unchanged in the reply
 *
 * The LB sends a request to the backend's forwarding address; the backend replies to the
 * request's source address and port with the same 28 octets, kind set to 2 (serving) or 3
 * (draining: take me out of the fallback table; CID-routed packets still arrive). No reply within
 * the timeout, or a reply with the wrong token, is a failure.
 */

import { PROXY_V2_SIGNATURE } from './proxy-v2.js';

/** Length of every probe datagram. */
export const HEALTH_PROBE_LENGTH = 28;
/** The PROXY v2 signature (HAProxy PROXY protocol spec §2.2). */
const SIGNATURE = PROXY_V2_SIGNATURE;
/** Version 2 (high nibble) and command LOCAL (low nibble 0). */
const VERSION_COMMAND_LOCAL = 0x20;
/** Custom TLV type of the probe. */
export const HEALTH_PROBE_TLV_TYPE = 0xee;
const TLV_LENGTH = 9;
const KIND_OFFSET = 19;
/** Offset of the 8-octet token. */
export const HEALTH_PROBE_TOKEN_OFFSET = 20;
export const HEALTH_PROBE_TOKEN_LENGTH = 8;

/** Probe kinds (octet 19). */
export const HealthProbeKind = { REQUEST: 1, UP: 2, DRAINING: 3 } as const;
export type HealthProbeKind = (typeof HealthProbeKind)[keyof typeof HealthProbeKind];

/**
 * Writes a probe of `kind` with `token` (8 octets) into `out` at `offset` (default: a new
 * 28-octet Uint8Array) and returns `out`. Throws RangeError for a token that is not 8 octets or
 * an `out` without room (API misuse).
 */
export function encodeHealthProbe(
  kind: HealthProbeKind,
  token: Uint8Array,
  out: Uint8Array = new Uint8Array(HEALTH_PROBE_LENGTH),
  offset = 0,
): Uint8Array {
  if (token.length !== HEALTH_PROBE_TOKEN_LENGTH) throw new RangeError('health probe token must be 8 octets');
  if (offset < 0 || offset + HEALTH_PROBE_LENGTH > out.length) throw new RangeError('no room for a health probe');
  for (let i = 0; i < SIGNATURE.length; i++) out[offset + i] = SIGNATURE[i];
  out[offset + 12] = VERSION_COMMAND_LOCAL;
  out[offset + 13] = 0;
  out[offset + 14] = 0;
  out[offset + 15] = HEALTH_PROBE_LENGTH - 16;
  out[offset + 16] = HEALTH_PROBE_TLV_TYPE;
  out[offset + 17] = 0;
  out[offset + 18] = TLV_LENGTH;
  out[offset + KIND_OFFSET] = kind;
  out.set(token, offset + HEALTH_PROBE_TOKEN_OFFSET);
  return out;
}

/**
 * The kind (1, 2 or 3) of the probe `buf` holds, or -1 when `buf` is not exactly a probe.
 * Never throws, never allocates.
 */
export function parseHealthProbe(buf: Uint8Array): number {
  if (buf.length !== HEALTH_PROBE_LENGTH) return -1;
  for (let i = 0; i < SIGNATURE.length; i++) if (buf[i] !== SIGNATURE[i]) return -1;
  if (buf[12] !== VERSION_COMMAND_LOCAL || buf[13] !== 0 || buf[14] !== 0 || buf[15] !== HEALTH_PROBE_LENGTH - 16)
    return -1;
  if (buf[16] !== HEALTH_PROBE_TLV_TYPE || buf[17] !== 0 || buf[18] !== TLV_LENGTH) return -1;
  const kind = buf[KIND_OFFSET];
  return kind >= HealthProbeKind.REQUEST && kind <= HealthProbeKind.DRAINING ? kind : -1;
}

/** True when `buf` is a probe request (what a backend must answer). */
export function isHealthProbeRequest(buf: Uint8Array): boolean {
  return parseHealthProbe(buf) === HealthProbeKind.REQUEST;
}

/**
 * The reply to a probe request: a new 28-octet datagram with the request's token and kind UP
 * (or DRAINING when `draining`), or undefined when `request` is not a probe request.
 * Backend adapters: `const r = answerHealthProbe(msg); if (r) socket.send(r, rinfo.port, rinfo.address)`.
 */
export function answerHealthProbe(request: Uint8Array, draining = false): Uint8Array | undefined {
  if (!isHealthProbeRequest(request)) return undefined;
  const reply = Uint8Array.from(request);
  reply[KIND_OFFSET] = draining ? HealthProbeKind.DRAINING : HealthProbeKind.UP;
  return reply;
}
