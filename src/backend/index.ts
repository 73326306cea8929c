// quic-lb-ts/backend: what a backend QUIC server links to sit behind the quic-lb load balancer.
// Re-exports only; see docs/backend.md.
export {
  BackendSocket,
  type BackendDropCounters,
  type BackendPath,
  type BackendSendErrorCounters,
  type BackendSocketOptions,
  type BackendSocketStats,
  type VipSender,
} from './socket.js';
export type { Endpoint } from '../wire/index.js';
export { createBackendCids, type BackendCids } from './cids.js';
export { buildPreferredAddress, type BuiltPreferredAddress, type PreferredAddressInput } from './handoff.js';
export {
  isNewTokenToken,
  loadRetryTokenKeys,
  MAX_RETRY_KEY_FILES,
  RETRY_TOKEN_RESULTS,
  RetryTokenValidator,
  type RefusedRetryToken,
  type RetryTokenResult,
  type RetryTokenValidation,
  type RetryTokenValidatorOptions,
  type ValidRetryToken,
} from './retry.js';
export { BackendError, BACKEND_ERROR_CODES, type BackendErrorCode } from './errors.js';
