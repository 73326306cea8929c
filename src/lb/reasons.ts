// Decision reasons of the router. Numeric on the packet path (array indexes into plain counters),
// named for metrics, logs and `quic-lb route`. The order is part of no wire format; add new
// reasons at the end.
import { CONFIG_ROTATION_CODEPOINTS } from '../cid/index.js';
import { RETRY_TOKEN_ERROR_NAMES } from '../wire/index.js';

/** Why `decide()` chose what it chose. */
export const Reason = {
  /** The DCID decodes (draft-21 §5.5) to a server ID mapped to a live backend. */
  ROUTED: 0,
  /** v1/v2 Initial or 0-RTT whose DCID is not routable: client-chosen (RFC 9000 §7.2). */
  FALLBACK_INITIAL: 1,
  /** DCID config rotation bits are 0b111 (draft-21 §3.2, always unroutable). */
  FALLBACK_UNROUTABLE_0B111: 2,
  /** DCID config rotation bits name no config held by this LB (draft-21 §4.1 item 1). */
  FALLBACK_UNKNOWN_CONFIG: 3,
  /** The decoded server ID maps to no backend (draft-21 §4.1 item 3). */
  FALLBACK_UNKNOWN_SERVER_ID: 4,
  /** The DCID (or what is left of the datagram) is shorter than the config's CID (§4.1 item 2). */
  FALLBACK_TOO_SHORT: 5,
  /** The server ID names a backend that failed its health check: fall back so a live backend
   *  can answer (e.g. with a stateless reset, RFC 9000 §10.3). */
  FALLBACK_BACKEND_DOWN: 6,
  /** Long header of a version other than v1/v2/0 with an unroutable DCID (draft-21 §8). */
  FALLBACK_UNKNOWN_VERSION: 7,
  /** Long header with version 0 (Version Negotiation) and an unroutable DCID. */
  FALLBACK_VERSION_NEGOTIATION: 8,
  /** Not even an RFC 8999 header (empty, or a long header cut inside its CIDs): dropped. */
  DROPPED_MALFORMED: 9,
  /** Fallback needed but no healthy backend with a positive weight: dropped. */
  DROPPED_NO_BACKEND: 10,
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/** Number of reasons (length of per-reason counter arrays). */
export const REASON_COUNT = 11;

/** Metric/CLI names of the reasons, indexed by `Reason`. */
export const REASON_NAMES: readonly string[] = Object.freeze([
  'routed',
  'fallback_initial',
  'fallback_unroutable_0b111',
  'fallback_unknown_config',
  'fallback_unknown_server_id',
  'fallback_too_short',
  'fallback_backend_down',
  'fallback_unknown_version',
  'fallback_version_negotiation',
  'dropped_malformed',
  'dropped_no_backend',
]);

/** True for reasons that end in a forwarded packet. */
export function isForwarded(reason: number): boolean {
  return reason !== Reason.DROPPED_MALFORMED && reason !== Reason.DROPPED_NO_BACKEND;
}

/**
 * What became of a DCID's config codepoint, counted per codepoint (0..6, and 7 = 0b111) so an
 * operator sees traffic on an old config drain away (draft-21 §3.1).
 */
export const CidResult = {
  ROUTED: 0,
  UNKNOWN_SERVER_ID: 1,
  TOO_SHORT: 2,
  BACKEND_DOWN: 3,
  UNKNOWN_CONFIG: 4,
} as const;
export const CID_RESULT_COUNT = 5;
export const CID_RESULT_NAMES: readonly string[] = Object.freeze([
  'routed',
  'unknown_server_id',
  'too_short',
  'backend_down',
  'unknown_config',
]);
/** Codepoints 0..7 (draft-21 §3); 7 is the 0b111 unroutable codepoint. */
export const CODEPOINT_COUNT = CONFIG_ROTATION_CODEPOINTS;

/** Why the return port refused a datagram. */
export const ReturnReject = {
  /** Source address is not an allowed backend address. */
  SOURCE: 0,
  /** No valid PROXY v2 header (or a header for another family / command). */
  HEADER: 1,
  /** The HMAC TLV is missing or wrong while a return-path key is configured. */
  HMAC: 2,
  /** The header names a VIP this LB does not listen on. */
  VIP: 3,
} as const;
export const RETURN_REJECT_COUNT = 4;
export const RETURN_REJECT_NAMES: readonly string[] = Object.freeze(['source', 'header', 'hmac', 'vip']);

/**
 * Why a datagram the LB meant to send was not handed to the kernel (or came back as an error):
 * `quic_lb_send_errors_total{reason}`. Every check runs before `socket.send` so that nothing
 * node:dgram refuses can throw out of a 'message' handler.
 */
export const SendError = {
  /** Destination port 0 (node:dgram throws ERR_SOCKET_BAD_PORT; RFC 768: no reply possible). */
  BAD_PORT: 0,
  /** Destination the VIP socket must not send to: unspecified (0.0.0.0/8, ::), multicast,
   *  limited broadcast, or an IPv4-mapped address on a v6-only VIP socket. */
  BAD_ADDRESS: 1,
  /** The upstream socket's send queue is at `socket.maxQueuedDatagrams`/`maxQueuedOctets`. */
  QUEUE_FULL: 2,
  /** An 'error' event of a socket (e.g. ICMP port unreachable reported on a connected socket). */
  SOCKET: 3,
  /** `socket.send` threw anyway (e.g. a socket closed under the packet path): caught, counted. */
  THROWN: 4,
} as const;
export const SEND_ERROR_COUNT = 5;
export const SEND_ERROR_NAMES: readonly string[] = Object.freeze([
  'bad_port',
  'bad_address',
  'queue_full',
  'socket',
  'thrown',
]);

/** Most return-path HMAC keys accepted at once (`returnPath.hmacKeys`): each one tried costs an HMAC. */
export const MAX_HMAC_KEYS = 4;

/**
 * Where the server mode's co-located forwarder sent a VIP datagram
 * (`quic_lb_anycast_datagrams_total{path}`): `local` = handed to this server's QUIC stack without a
 * network hop, `peer` = encapsulated to the server its CID or Maglev slot names, `dropped` = neither
 * (no server for it, a full send queue, a local handler that threw).
 */
export const AnycastPath = { LOCAL: 0, PEER: 1, DROPPED: 2 } as const;
export const ANYCAST_PATH_NAMES = ['local', 'peer', 'dropped'] as const;
export const ANYCAST_PATH_COUNT = ANYCAST_PATH_NAMES.length;

/**
 * Why the Retry offload dropped a client Initial (`quic_lb_retry_initials_dropped_total{reason}`),
 * never answering it (docs/retry.md): `small_datagram` = under 1200 octets (RFC 9000 §14.1),
 * `malformed` = its token length runs past the datagram, `short_dcid` = a DCID under 8 octets
 * (RFC 9000 §7.2: no Retry can carry it as ODCID), `invalid_token` = a Retry token that does not
 * open (its result is in `quic_lb_retry_tokens_total`), `error` = building the Retry threw.
 */
export const RetryDrop = { SMALL_DATAGRAM: 0, MALFORMED: 1, SHORT_DCID: 2, INVALID_TOKEN: 3, ERROR: 4 } as const;
export const RETRY_DROP_NAMES = ['small_datagram', 'malformed', 'short_dcid', 'invalid_token', 'error'] as const;
export const RETRY_DROP_COUNT = RETRY_DROP_NAMES.length;

/**
 * Retry token results (`quic_lb_retry_tokens_total{result}`): index `-code` of src/wire's
 * `openRetryToken` results (RETRY_TOKEN_ERROR_NAMES, with `ok` named `valid`), then
 * `unverified`: a Retry token forwarded unopened (offload inactive past the transition) or whose
 * ICV fails on a routed DCID (a later Initial of a handshake the backend already answered).
 */
export const RETRY_TOKEN_RESULT_NAMES: readonly string[] = Object.freeze([
  'valid',
  ...RETRY_TOKEN_ERROR_NAMES.slice(1),
  'unverified',
]);
export const RETRY_TOKEN_UNVERIFIED = RETRY_TOKEN_RESULT_NAMES.length - 1;
export const RETRY_TOKEN_RESULT_COUNT = RETRY_TOKEN_RESULT_NAMES.length;
