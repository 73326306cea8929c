// Connection IDs for a backend QUIC stack: a quic-lb-ts encoder behind the small interface
// QUIC stacks take, plus the two things a stack also needs per CID: its stateless reset token
// and, for short headers, its length.
import {
  configIdOf,
  createCidGenerator,
  MIN_RESET_KEY_LENGTH,
  selfEncodedLength,
  statelessResetToken,
  UNROUTABLE_CONFIG_ID,
  type QuicLbEncoder,
} from '../cid/index.js';
import { BackendError } from './errors.js';

/** What a QUIC stack plugs in to mint every CID with QUIC-LB. */
export interface BackendCids {
  /** A fresh CID under the encoder's active config (0b111 when it has none left). */
  generate(): Uint8Array;
  /** Length of the CIDs generate() returns now. */
  readonly length: number;
  /** RFC 9000 §10.3.2 token for `cid`: HMAC-SHA256(resetKey, cid) truncated to 16 octets. */
  resetToken(cid: Uint8Array): Uint8Array;
  /**
   * Length of a CID this server may have issued, from its first octet: the length of the
   * config it names (any config the encoder holds, old ones included), the self-encoded length
   * for 0b111, or -1 for an unknown codepoint. Short headers carry no CID length.
   */
  cidLength(firstOctet: number): number;
  /** False for plaintext configs and 0b111: issue only the handshake CID (draft-21 §9.2, §3.2). */
  readonly allowsAdditionalCids: boolean;
}

/**
 * Wraps `encoder` for a QUIC stack. `resetKey` (>= 16 octets) is the static key of stateless
 * reset tokens; keep it secret and the same across restarts. Throws BackendError
 * ERR_BACKEND_RESET_KEY.
 */
export function createBackendCids(encoder: QuicLbEncoder, resetKey: Uint8Array): BackendCids {
  if (!(resetKey instanceof Uint8Array) || resetKey.length < MIN_RESET_KEY_LENGTH) {
    throw new BackendError('ERR_BACKEND_RESET_KEY', 'resetKey', `must be at least ${MIN_RESET_KEY_LENGTH} octets`);
  }
  const gen = createCidGenerator(encoder);
  return {
    generate: () => gen.generate(),
    get length(): number {
      return gen.length;
    },
    resetToken: (cid) => statelessResetToken(resetKey, cid),
    cidLength(firstOctet: number): number {
      const id = configIdOf(firstOctet);
      if (id === UNROUTABLE_CONFIG_ID) return selfEncodedLength(firstOctet);
      for (const c of encoder.listConfigs()) {
        if (c.configId !== id) continue;
        if (c.selfEncodeLength) return selfEncodedLength(firstOctet);
        return encoder.activeConfig?.configId === id ? encoder.connectionIdLength : c.cidLength;
      }
      return -1;
    },
    get allowsAdditionalCids(): boolean {
      return encoder.allowsAdditionalCids;
    },
  };
}
