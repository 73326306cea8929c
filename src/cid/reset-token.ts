// Stateless reset tokens (RFC 9000 §10.3.2): truncate16(HMAC-SHA256(static key, CID)).

import { createHmac } from 'node:crypto';
import { STATELESS_RESET_TOKEN_LENGTH } from './constants.js';
import { QuicLbError } from './errors.js';

/** Shortest static key accepted: 16 octets (128 bits of secret). */
export const MIN_RESET_KEY_LENGTH = 16;

/**
 * The 16-octet stateless reset token for `cid`: the first 16 octets of HMAC-SHA256(staticKey, cid)
 * (RFC 9000 §10.3.2). Keep one static key per config codepoint and replace it when that
 * codepoint's config changes (draft-21 §9.5): a reused codepoint can repeat old CIDs.
 * @throws QuicLbError ERR_RESET_KEY (key under 16 octets) | ERR_CID_LENGTH (empty CID: a
 *   zero-length CID cannot carry a token)
 */
export function statelessResetToken(staticKey: Uint8Array, cid: Uint8Array): Uint8Array {
  if (!(staticKey instanceof Uint8Array) || staticKey.length < MIN_RESET_KEY_LENGTH) {
    throw new QuicLbError('ERR_RESET_KEY', 'staticKey', `staticKey must be at least ${MIN_RESET_KEY_LENGTH} octets`);
  }
  if (!(cid instanceof Uint8Array) || cid.length === 0) {
    throw new QuicLbError('ERR_CID_LENGTH', 'cid', 'cid must be a non-empty Uint8Array');
  }
  const mac = createHmac('sha256', staticKey).update(cid).digest();
  return Uint8Array.prototype.slice.call(mac, 0, STATELESS_RESET_TOKEN_LENGTH);
}
