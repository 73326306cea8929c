/**
 * Every error code the library throws. Errors are thrown only for API misuse and invalid
 * configuration; a bad packet or CID never throws (the decoder returns `UNROUTABLE`).
 *
 * | code | meaning |
 * |---|---|
 * | ERR_CONFIG_ID | configId is not an integer 0..6 (0b111 is reserved, draft-21 §3.2) |
 * | ERR_SERVER_ID_LENGTH | serverIdLength < 1, or a server ID of the wrong length |
 * | ERR_NONCE_LENGTH | nonceLength < 4, or a nonce of the wrong length |
 * | ERR_PLAINTEXT_LENGTH | serverIdLength + nonceLength > 19 (draft-21 §5.3) |
 * | ERR_KEY | key given but not exactly 16 octets |
 * | ERR_CIPHER | unknown cipher implementation name |
 * | ERR_SELF_ENCODE_LENGTH | selfEncodeLength is not a boolean |
 * | ERR_CONFIG | an object that createConfig() did not produce was passed as a config |
 * | ERR_EXTRA_OCTETS | extra octets not an integer >= 0, or the CID would exceed 20 octets |
 * | ERR_PROCESS_INDEX | process index out of range, or folding it in leaves a nonce < 4 octets (draft-21 §7.2) |
 * | ERR_CONFIG_ID_IN_USE | two encoder entries for the same configId |
 * | ERR_UNKNOWN_CONFIG | the encoder has no entry for that configId |
 * | ERR_NONCE_LIMIT | nonceLimit not a positive bigint no larger than the nonce space |
 * | ERR_BUFFER | output buffer too small for the CID |
 * | ERR_RESET_KEY | stateless reset key shorter than 16 octets |
 * | ERR_CID_LENGTH | CID length outside 1..20 where a QUIC v1 CID is required |
 * | ERR_UNROUTABLE_LENGTH | unroutable CID length outside 8..20 |
 */
export type QuicLbErrorCode =
  | 'ERR_CONFIG_ID'
  | 'ERR_SERVER_ID_LENGTH'
  | 'ERR_NONCE_LENGTH'
  | 'ERR_PLAINTEXT_LENGTH'
  | 'ERR_KEY'
  | 'ERR_CIPHER'
  | 'ERR_SELF_ENCODE_LENGTH'
  | 'ERR_CONFIG'
  | 'ERR_EXTRA_OCTETS'
  | 'ERR_PROCESS_INDEX'
  | 'ERR_CONFIG_ID_IN_USE'
  | 'ERR_UNKNOWN_CONFIG'
  | 'ERR_NONCE_LIMIT'
  | 'ERR_BUFFER'
  | 'ERR_RESET_KEY'
  | 'ERR_CID_LENGTH'
  | 'ERR_UNROUTABLE_LENGTH';

/** The one error class of the library: a stable `code` and the offending `field`. */
export class QuicLbError extends Error {
  readonly code: QuicLbErrorCode;
  /** Name of the option or argument that was wrong, e.g. 'serverIdLength'. */
  readonly field: string;
  constructor(code: QuicLbErrorCode, field: string, message: string) {
    super(message);
    this.name = 'QuicLbError';
    this.code = code;
    this.field = field;
  }
}
