/** Stable codes of {@link AnycastError}. */
export const ANYCAST_ERROR_CODES = [
  'ERR_ANYCAST_RETURN_MODE', // the config's returnPath.mode is not 'direct'
  'ERR_ANYCAST_UNKNOWN_SERVER', // the server name is not in backends
  'ERR_ANYCAST_VIP', // a VIP to bind is not in listen
] as const;
export type AnycastErrorCode = (typeof ANYCAST_ERROR_CODES)[number];

/** A config or options the server mode cannot run with; `field` names the field or option. */
export class AnycastError extends Error {
  constructor(
    readonly code: AnycastErrorCode,
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = 'AnycastError';
  }
}
