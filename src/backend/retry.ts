// Validation of the load balancer's Retry tokens at a backend (draft-ietf-quic-retry-offload-00
// §4, shared-state Retry offload): the LB answers token-less Initials with a Retry and forwards
// only Initials whose token it sealed; the backend opens the same token with the same keys to
// learn the client's original DCID, which it must echo in original_destination_connection_id
// (RFC 9000 §7.3). Backends open tokens; they never seal one (the LB sends every Retry).
import { readFileSync } from 'node:fs';
import {
  initialTokenOf,
  OpenedRetryToken,
  openRetryToken,
  parseIPv4Into,
  parseIPv6Into,
  parseRetryTokenKey,
  RETRY_TOKEN_ERR_INVALID,
  RETRY_TOKEN_ERR_NEW_TOKEN,
  RETRY_TOKEN_OK,
  RetryTokenKeys,
  type RetryTokenKey,
} from '../wire/index.js';
import { BackendError } from './errors.js';

/** Key files a backend (or LB) holds at once: the sealing key plus up to three being rotated in or out. */
export const MAX_RETRY_KEY_FILES = 4;

/**
 * Result names counted by {@link RetryTokenValidator.stats}: `valid`, then the names of the codec's
 * RETRY_TOKEN_ERR_* codes (RETRY_TOKEN_ERROR_NAMES, `ok` excepted), the LB's metric labels too.
 */
export const RETRY_TOKEN_RESULTS = [
  'valid',
  'new_token',
  'truncated',
  'key_sequence',
  'invalid',
  'odcid',
  'expired',
  'port',
] as const;
export type RetryTokenResult = (typeof RETRY_TOKEN_RESULTS)[number];

/** What a valid type-0 token says about the connection it opens (RFC 9000 §7.3). */
export interface ValidRetryToken {
  ok: true;
  /** The client's first DCID, from the token: the server's original_destination_connection_id. */
  odcid: Buffer;
  /** The SCID of the LB's Retry = the DCID of the Initial that bore the token: retry_source_connection_id. */
  rscid: Buffer;
  /** The key sequence that opened it. */
  sequence: number;
  /** POSIX seconds after which the token is expired (before the skew allowance). */
  expiresAt: number;
}

/** A token that is not ours to honour: `code` is a RETRY_TOKEN_ERR_* value, `reason` its name. */
export interface RefusedRetryToken {
  ok: false;
  code: number;
  reason: RetryTokenResult;
}

export type RetryTokenValidation = ValidRetryToken | RefusedRetryToken;

/**
 * Reads Retry token key files (one key line each, `<sequence> <key hex> <iv hex>`, the format of
 * `quic-lb retry-key`), first file first (the LB seals with the first; every key opens). Throws
 * BackendError ERR_BACKEND_RETRY_KEY naming the file (`field` `retryKeyFiles[i]`) when a file
 * cannot be read or does not hold one key, when there are none or more than
 * MAX_RETRY_KEY_FILES, or when two files share a key sequence.
 */
export function loadRetryTokenKeys(files: readonly string[]): RetryTokenKeys {
  if (files.length === 0 || files.length > MAX_RETRY_KEY_FILES)
    throw new BackendError(
      'ERR_BACKEND_RETRY_KEY',
      'retryKeyFiles',
      `expected 1 to ${MAX_RETRY_KEY_FILES} key files, got ${files.length}`,
    );
  const keys: RetryTokenKey[] = files.map((file, i) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new BackendError('ERR_BACKEND_RETRY_KEY', `retryKeyFiles[${i}]`, `cannot read ${file}: ${messageOf(err)}`);
    }
    try {
      return parseRetryTokenKey(text);
    } catch (err) {
      throw new BackendError('ERR_BACKEND_RETRY_KEY', `retryKeyFiles[${i}]`, `${file}: ${messageOf(err)}`);
    }
  });
  try {
    return new RetryTokenKeys(keys);
  } catch (err) {
    throw new BackendError('ERR_BACKEND_RETRY_KEY', 'retryKeyFiles', `${files.join(', ')}: ${messageOf(err)}`);
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface RetryTokenValidatorOptions {
  /** The key ring (every key opens). */
  keys: RetryTokenKeys;
  /** POSIX seconds now (default: the wall clock); tokens carry their expiry as POSIX seconds. */
  now?: () => number;
}

/**
 * Opens the LB's Retry tokens on the Initials a backend receives. Never throws per packet: a
 * token that does not open is a RefusedRetryToken and a counter. One instance per backend
 * process; `setKeys` swaps the key ring (rotation) in one step.
 */
export class RetryTokenValidator {
  /** Tokens seen, by result (`valid`, `new_token`, `truncated`, `key_sequence`, `invalid`, `odcid`, `expired`, `port`). */
  readonly stats: Record<RetryTokenResult, number>;
  private keyRing: RetryTokenKeys;
  private readonly clock: () => number;
  private readonly opened = new OpenedRetryToken();
  /** Scratch for the client address: 4 octets (IPv4) or 16 (IPv6; the codec binds ::ffff:a.b.c.d as IPv4). */
  private readonly ip4 = new Uint8Array(4);
  private readonly ip6 = new Uint8Array(16);
  private readonly tokenAt = { tokenOffset: 0, tokenLength: 0 };

  constructor(opts: RetryTokenValidatorOptions) {
    this.keyRing = opts.keys;
    this.clock = opts.now ?? (() => Math.floor(Date.now() / 1000));
    this.stats = Object.fromEntries(RETRY_TOKEN_RESULTS.map((r) => [r, 0])) as Record<RetryTokenResult, number>;
  }

  /** A validator over the keys of `files` (loadRetryTokenKeys: throws ERR_BACKEND_RETRY_KEY). */
  static fromFiles(files: readonly string[], now?: () => number): RetryTokenValidator {
    return new RetryTokenValidator({ keys: loadRetryTokenKeys(files), now });
  }

  get keys(): RetryTokenKeys {
    return this.keyRing;
  }

  /** Replaces the key ring (rotation: give the new key first and keep the old one second while tokens sealed under it live). */
  setKeys(keys: RetryTokenKeys): void {
    this.keyRing = keys;
  }

  /**
   * Opens the token at `datagram[tokenOffset, +tokenLength)` (from `initialTokenOf`) of an Initial
   * whose DCID is `dcid`, from the client at `clientAddress`:`clientPort` as this backend sees it
   * (behind an LB: the PROXY v2 source; in server mode: the datagram's source). An IPv4-mapped
   * IPv6 address is the same client as its IPv4 address (src/wire/retry-token.ts binds it so).
   * Counts the result once.
   * Never throws; a type-1 (NEW_TOKEN) token is refused with RETRY_TOKEN_ERR_NEW_TOKEN: it is
   * the server's own, to check with its own NEW_TOKEN scheme.
   */
  validate(
    datagram: Uint8Array,
    tokenOffset: number,
    tokenLength: number,
    clientAddress: string,
    clientPort: number,
    dcid: Uint8Array,
  ): RetryTokenValidation {
    const ip = this.addressOctets(clientAddress);
    // An address the token cannot be bound to never matches.
    const code =
      ip === undefined
        ? RETRY_TOKEN_ERR_INVALID
        : openRetryToken(
            this.keyRing,
            datagram,
            tokenOffset,
            tokenLength,
            ip,
            clientPort,
            dcid,
            this.clock(),
            this.opened,
          );
    // RETRY_TOKEN_RESULTS[i] names code -i (0 = RETRY_TOKEN_OK = valid); a code the codec adds later counts as invalid.
    const reason = RETRY_TOKEN_RESULTS[-code] ?? 'invalid';
    this.stats[reason]++;
    if (code !== RETRY_TOKEN_OK) return { ok: false, code, reason };
    const o = this.opened;
    return { ok: true, odcid: o.odcid(), rscid: Buffer.from(dcid), sequence: o.sequence, expiresAt: o.expiresAt };
  }

  /**
   * `validate` for a whole datagram starting with a QUIC Initial: finds the token and the DCID
   * itself. Undefined when the datagram is not an Initial or carries no token (nothing counted).
   */
  validateInitial(datagram: Uint8Array, clientAddress: string, clientPort: number): RetryTokenValidation | undefined {
    const at = this.tokenAt;
    if (!initialTokenOf(datagram, at) || at.tokenLength === 0) return undefined;
    // RFC 9000 §17.2: DCID length at octet 5, the DCID right after it.
    const dcid = datagram.subarray(6, 6 + datagram[5]);
    return this.validate(datagram, at.tokenOffset, at.tokenLength, clientAddress, clientPort, dcid);
  }

  /** The client address as token octets (the ip4 or ip6 scratch), undefined for a non-literal. */
  private addressOctets(address: string): Uint8Array | undefined {
    if (parseIPv4Into(address, this.ip4, 0)) return this.ip4;
    return parseIPv6Into(address, this.ip6, 0) ? this.ip6 : undefined;
  }
}

/** Whether `v` (from validate) is a NEW_TOKEN token (first bit 1): not the LB's, handled like no token at all. */
export const isNewTokenToken = (v: RetryTokenValidation): boolean => !v.ok && v.code === RETRY_TOKEN_ERR_NEW_TOKEN;
