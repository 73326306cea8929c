// Typed errors of the load balancer's configuration (docs/design.md §3: bad config throws a typed
// error with a stable code naming the field; bad packets never throw).

/** The closed list of config error codes (documented in docs/config.md). */
export const CONFIG_ERROR_CODES = [
  'ERR_CONFIG_READ', // the config file (or a key file) cannot be read
  'ERR_CONFIG_SYNTAX', // not valid YAML
  'ERR_CONFIG_TYPE', // a field has the wrong type (e.g. a string where a number is expected)
  'ERR_CONFIG_REQUIRED', // a required field is missing or an array that needs entries is empty
  'ERR_CONFIG_UNKNOWN_FIELD', // a field the schema does not define (typos are never ignored)
  'ERR_CONFIG_RANGE', // a number outside its range or not an integer
  'ERR_CONFIG_ENUM', // a value outside its list of allowed values
  'ERR_CONFIG_ADDRESS', // not an IP literal with a port (`a.b.c.d:port`, `[v6]:port`), or not an IP literal
  'ERR_CONFIG_HEX', // not hex, or the wrong number of octets
  'ERR_CONFIG_KEY_SOURCE', // more than one source for one key (inline, file, list of either)
  'ERR_CONFIG_DUPLICATE', // a config id, backend name, server ID or listen address used twice
  'ERR_CONFIG_REFERENCE', // a backend names a QUIC-LB config id that is not configured
  'ERR_CONFIG_QUIC_LB', // the QUIC-LB library rejected a config (its code is in the message and `cause`)
  'ERR_CONFIG_PRIME', // fallback.tableSize is not a prime in range
  'ERR_CONFIG_WILDCARD', // a VIP on an unspecified address (0.0.0.0, ::): replies must leave from the exact VIP
  'ERR_CONFIG_VALUE', // a value that contradicts another field (a resume level above its limit, anycast without returnPath.mode direct), or a Retry key file that holds no valid key line
] as const;

export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];

/**
 * A configuration file that cannot be used. `field` is a JSON-pointer-like path into the file
 * (`/backends/2/address`, `` for the whole file), `reason` a one-line explanation.
 */
export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly field: string;
  readonly reason: string;
  constructor(code: ConfigErrorCode, field: string, reason: string, options?: { cause?: unknown }) {
    super(`${field || '(file)'}: ${reason}`, options);
    this.name = 'ConfigError';
    this.code = code;
    this.field = field;
    this.reason = reason;
  }
}
