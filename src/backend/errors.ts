/** Stable codes of {@link BackendError}. */
export const BACKEND_ERROR_CODES = [
  'ERR_BACKEND_RETURN_MODE',
  'ERR_BACKEND_RESET_KEY',
  'ERR_BACKEND_ADDRESS',
  'ERR_BACKEND_HMAC_KEY',
  'ERR_BACKEND_LB_UNAUTHENTICATED',
  'ERR_BACKEND_RANGE',
  'ERR_BACKEND_RETRY_KEY',
] as const;
export type BackendErrorCode = (typeof BACKEND_ERROR_CODES)[number];

/** Misuse of the backend kit (bad options); `field` names the offending option. */
export class BackendError extends Error {
  constructor(
    readonly code: BackendErrorCode,
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'BackendError';
  }
}
