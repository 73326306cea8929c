// Several processes or threads sharing one server ID (draft-21 §7.2): each appends its index to
// the server ID inside the plaintext, so the encoder sees a longer server ID and a shorter nonce,
// and no two processes can ever mint the same (server ID, nonce) pair. The LB keeps the original
// config and treats the index octets as part of the nonce: it routes them all to the same server.

import { createConfig, type QuicLbConfig } from './config.js';
import { BITS_PER_OCTET, BYTE_MASK, MIN_NONCE_LENGTH, OCTET_VALUES } from './constants.js';
import { QuicLbError } from './errors.js';

/** What serverIdWithProcessIndex() returns: the encoder-side config and server ID. */
export interface ProcessServerId {
  /** Same codepoint, key and plaintext length; serverIdLength + indexLength, nonceLength - indexLength. */
  config: QuicLbConfig;
  /** serverId || processIndex (big-endian, indexLength octets). */
  serverId: Uint8Array;
}

/** Largest index length: 4 octets (a 32-bit index) is far more than any host's processes. */
const MAX_INDEX_LENGTH = 4;

/**
 * Folds `processIndex` (0 .. 256^indexLength - 1) into the server ID for config (draft-21 §7.2).
 * The LB decodes the original serverId with the original config.
 * @throws QuicLbError ERR_PROCESS_INDEX (index or indexLength out of range, or the nonce would drop
 *   below 4 octets) | ERR_SERVER_ID_LENGTH | ERR_CONFIG
 */
export function serverIdWithProcessIndex(
  config: QuicLbConfig,
  serverId: Uint8Array,
  processIndex: number,
  indexLength = 1,
): ProcessServerId {
  if (!Number.isInteger(indexLength) || indexLength < 1 || indexLength > MAX_INDEX_LENGTH) {
    throw new QuicLbError('ERR_PROCESS_INDEX', 'indexLength', `indexLength must be an integer 1..${MAX_INDEX_LENGTH}`);
  }
  const limit = 2 ** (indexLength * BITS_PER_OCTET);
  if (!Number.isInteger(processIndex) || processIndex < 0 || processIndex >= limit) {
    throw new QuicLbError('ERR_PROCESS_INDEX', 'processIndex', `processIndex must be an integer 0..${limit - 1}`);
  }
  if (config.nonceLength - indexLength < MIN_NONCE_LENGTH) {
    throw new QuicLbError(
      'ERR_PROCESS_INDEX',
      'indexLength',
      `folding a ${indexLength}-octet process index into config ${config.configId} leaves a ${config.nonceLength - indexLength}-octet nonce; the minimum is ${MIN_NONCE_LENGTH} (draft-21 §5.3, §7.2)`,
    );
  }
  if (!(serverId instanceof Uint8Array) || serverId.length !== config.serverIdLength) {
    throw new QuicLbError('ERR_SERVER_ID_LENGTH', 'serverId', `serverId must be ${config.serverIdLength} octets`);
  }
  const folded = createConfig({
    configId: config.configId,
    serverIdLength: config.serverIdLength + indexLength,
    nonceLength: config.nonceLength - indexLength,
    key: config.key,
    selfEncodeLength: config.selfEncodeLength,
    cipher: config.cipher,
  });
  const sid = new Uint8Array(folded.serverIdLength);
  sid.set(serverId, 0);
  let v = processIndex;
  for (let i = folded.serverIdLength - 1; i >= config.serverIdLength; i--) {
    sid[i] = v & BYTE_MASK;
    v = Math.floor(v / OCTET_VALUES);
  }
  return { config: folded, serverId: sid };
}
