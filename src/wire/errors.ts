/**
 * Typed errors of the QUIC wire helpers.
 *
 * Two error channels, never mixed (docs/design.md §3):
 * - API misuse and malformed *structures a caller asked us to decode* (transport parameters,
 *   preferred_address) throw {@link QuicWireError} with a stable `code` and the `field` it names;
 * - per-packet parsers (`parseHeader`, `readVarint`, `parseProxyHeader`, `parseRetry`) never throw: they return
 *   `false` or a negative sentinel.
 */

/** The closed list of error codes thrown by `quic-lb-ts/wire`. */
export const QUIC_WIRE_ERROR_CODES = [
  // varints (RFC 9000 §16)
  'ERR_VARINT_RANGE', // value negative, not an integer, or above 2^62-1
  'ERR_VARINT_LENGTH', // a forced encoding length is not 1/2/4/8 or too small for the value
  'ERR_BUFFER_TOO_SMALL', // the caller's output buffer has no room
  // transport parameters (RFC 9000 §18)
  'ERR_TP_TRUNCATED', // an id, length or value runs past the end of the extension
  'ERR_TP_DUPLICATE', // a parameter id appears twice (§18: MUST NOT be sent more than once)
  'ERR_TP_LENGTH', // a parameter's length does not fit its type (integer not exactly one varint, token != 16, flag != 0)
  'ERR_TP_VALUE', // a value outside the range §18.2 allows (e.g. ack_delay_exponent > 20)
  'ERR_TP_CID_LENGTH', // a connection ID parameter longer than 20 octets
  'ERR_TP_SERVER_ONLY', // a client sent a server-only parameter (§18.2)
  // preferred_address (RFC 9000 §18.2)
  'ERR_PREFERRED_ADDRESS_TRUNCATED', // fewer octets than the fixed part or than 41 + CID length
  'ERR_PREFERRED_ADDRESS_LENGTH', // more octets than 41 + CID length (trailing data)
  'ERR_PREFERRED_ADDRESS_CID_EMPTY', // zero-length connection ID (forbidden)
  'ERR_PREFERRED_ADDRESS_CID_LENGTH', // connection ID longer than 20 octets
  'ERR_PREFERRED_ADDRESS_TOKEN', // stateless reset token not exactly 16 octets
  'ERR_PREFERRED_ADDRESS_ADDRESS', // an address string that is not an IPv4 (resp. IPv6) literal
  'ERR_PREFERRED_ADDRESS_PORT', // port not an integer in 0..65535
  'ERR_PREFERRED_ADDRESS_NO_ADDRESS', // encode: neither ipv4 nor ipv6 given
  // PROXY protocol v2 encapsulation (encode side; parsing returns negative codes)
  'ERR_PROXY_ADDRESS', // not an IP literal, or families of src and dst differ
  'ERR_PROXY_FAMILY', // `family` given and does not match the addresses
  'ERR_PROXY_PORT', // port not an integer in 0..65535
  'ERR_PROXY_HMAC_KEY', // HMAC key shorter than 16 octets
  'ERR_PROXY_PAYLOAD', // an HMAC key was given without the payload it must cover
  // address sets (AddressSet)
  'ERR_ADDRESS_LITERAL', // a member is not an IPv4 or IPv6 literal
  // Retry packets (encode side; parseRetry returns negative codes)
  'ERR_RETRY_VERSION', // not QUIC v1 or v2: no Retry integrity key (RFC 9001 §5.8, RFC 9369 §3.3.3)
  'ERR_RETRY_CID_LENGTH', // dcid, scid or odcid longer than 20 octets
  'ERR_RETRY_TOKEN_EMPTY', // zero-length token (RFC 9000 §17.2.5.2: the client discards it)
  'ERR_RETRY_UNUSED', // unused bits not an integer 0..15
  // shared-state Retry tokens (draft-ietf-quic-retry-offload-00 §4; opening returns negative codes)
  'ERR_RETRY_KEY_FILE', // a key file or key that is not `<sequence> <16-octet key hex> <12-octet iv hex>`; an empty ring
  'ERR_RETRY_KEY_SEQUENCE', // a key sequence outside 0..127, or twice in one ring
  'ERR_RETRY_TOKEN_FIELD', // sealing: client IP not 4/16 octets, port, ODCID not 8..20, RSCID > 20, bad expiry
] as const;

export type QuicWireErrorCode = (typeof QUIC_WIRE_ERROR_CODES)[number];

/** Thrown on API misuse or an invalid encoded structure; `code` is stable, `field` names the culprit. */
export class QuicWireError extends Error {
  readonly code: QuicWireErrorCode;
  readonly field: string | undefined;
  constructor(code: QuicWireErrorCode, message: string, field?: string) {
    super(message);
    this.name = 'QuicWireError';
    this.code = code;
    this.field = field;
  }
}
