// quic-lb-ts: QUIC-LB (draft-ietf-quic-load-balancers-21) connection IDs, both halves.
// This file only re-exports; see docs/library.md for the API and error codes.

export {
  UNROUTABLE,
  UNKNOWN_CONFIG,
  TOO_SHORT,
  UNROUTABLE_CONFIG_ID,
  CONFIG_ROTATION_CODEPOINTS,
  MIN_CONFIG_ID,
  MAX_CONFIG_ID,
  MIN_SERVER_ID_LENGTH,
  MIN_NONCE_LENGTH,
  MAX_SERVER_ID_LENGTH,
  MAX_NONCE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  MAX_CID_LENGTH,
  MIN_UNROUTABLE_CID_LENGTH,
  AES_KEY_LENGTH,
  STATELESS_RESET_TOKEN_LENGTH,
} from './constants.js';
export { QuicLbError, type QuicLbErrorCode } from './errors.js';
export {
  createConfig,
  configFromSpec,
  type QuicLbConfig,
  type QuicLbConfigOptions,
  type QuicLbSpec,
  type QuicLbAlgorithm,
} from './config.js';
export {
  encodeConnectionId,
  encodeConnectionIdInto,
  decodeServerId,
  configIdOf,
  selfEncodedLength,
  firstOctetFor,
} from './connection-id.js';
export { QuicLbDecoder } from './decoder.js';
export {
  QuicLbEncoder,
  createCidGenerator,
  type CidGenerator,
  type EncoderConfigEntry,
  type QuicLbEncoderOptions,
  type ProcessIndexOption,
  type RotationEvent,
  type RotationReason,
} from './encoder.js';
export { serverIdWithProcessIndex, type ProcessServerId } from './process-index.js';
export { statelessResetToken, MIN_RESET_KEY_LENGTH } from './reset-token.js';
export { RandomPool, type RandomSource } from './random.js';
export { createBlockCipher, DEFAULT_CIPHER, type BlockCipher, type CipherName } from './cipher.js';
export { aesRoundKeys } from './aes.js';
