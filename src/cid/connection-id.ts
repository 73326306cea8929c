// The stable low-level surface: one CID in, one server ID out (and back), deterministic.

import type { Codec } from './codec.js';
import { codecOf, type QuicLbConfig } from './config.js';
import { CONFIG_ROTATION_SHIFT, FIRST_OCTET_LENGTH, LENGTH_BITS_MASK, UNROUTABLE_CONFIG_ID } from './constants.js';
import { QuicLbError } from './errors.js';

/** Config rotation codepoint of a CID's first octet: 0..6, or 7 (0b111, unroutable) (draft-21 §3). */
export function configIdOf(firstOctet: number): number {
  return (firstOctet >>> CONFIG_ROTATION_SHIFT) & UNROUTABLE_CONFIG_ID;
}

/** Total CID length a self-encoding first octet announces: low 5 bits + 1 (draft-21 §3.3). */
export function selfEncodedLength(firstOctet: number): number {
  return (firstOctet & LENGTH_BITS_MASK) + FIRST_OCTET_LENGTH;
}

/**
 * The first octet for `config`: `(configId << 5) | lowBits`, where lowBits is `totalLength - 1`
 * when the config self-encodes its length (draft-21 §3.3), else the given random bits.
 */
export function firstOctetFor(config: QuicLbConfig, totalLength: number, randomBits = 0): number {
  const low = config.selfEncodeLength ? totalLength - FIRST_OCTET_LENGTH : randomBits;
  return (config.configId << CONFIG_ROTATION_SHIFT) | (low & LENGTH_BITS_MASK);
}

function checkArgs(config: QuicLbConfig, serverId: Uint8Array, nonce: Uint8Array): Codec {
  const codec = codecOf(config);
  if (!(serverId instanceof Uint8Array) || serverId.length !== config.serverIdLength) {
    throw new QuicLbError(
      'ERR_SERVER_ID_LENGTH',
      'serverId',
      `serverId must be ${config.serverIdLength} octets for config ${config.configId}`,
    );
  }
  if (!(nonce instanceof Uint8Array) || nonce.length !== config.nonceLength) {
    throw new QuicLbError(
      'ERR_NONCE_LENGTH',
      'nonce',
      `nonce must be ${config.nonceLength} octets for config ${config.configId}`,
    );
  }
  return codec;
}

/**
 * Writes the CID for (serverId, nonce) to out[offset .. offset + config.cidLength) and returns
 * config.cidLength. First octet as in encodeConnectionId().
 * @throws QuicLbError ERR_CONFIG | ERR_SERVER_ID_LENGTH | ERR_NONCE_LENGTH | ERR_BUFFER
 */
export function encodeConnectionIdInto(
  config: QuicLbConfig,
  serverId: Uint8Array,
  nonce: Uint8Array,
  out: Uint8Array,
  offset = 0,
): number {
  const codec = checkArgs(config, serverId, nonce);
  const length = config.cidLength;
  if ((offset | 0) !== offset || offset < 0 || offset + length > out.length) {
    throw new QuicLbError('ERR_BUFFER', 'out', `need ${length} octets at offset ${offset}`);
  }
  out[offset] = codec.firstOctet;
  codec.encode(serverId, nonce, out, offset + FIRST_OCTET_LENGTH);
  return length;
}

/**
 * Encodes one CID, deterministically: first octet `(configId << 5) | (cidLength - 1)` with
 * selfEncodeLength, `configId << 5` without (the QuicLbEncoder randomises those bits), then the
 * plaintext, single-pass or four-pass block (draft-21 §5.4).
 * @throws QuicLbError ERR_CONFIG | ERR_SERVER_ID_LENGTH | ERR_NONCE_LENGTH
 */
export function encodeConnectionId(config: QuicLbConfig, serverId: Uint8Array, nonce: Uint8Array): Uint8Array {
  const out = new Uint8Array(config?.cidLength ?? 0);
  encodeConnectionIdInto(config, serverId, nonce, out, 0);
  return out;
}

/**
 * Decodes the server ID of `cid` under `config` (draft-21 §5.5). Octets beyond config.cidLength
 * are ignored. Returns undefined (never throws on CID content) when the CID is shorter than
 * config.cidLength or its codepoint is not config.configId (including 0b111).
 * @throws QuicLbError ERR_CONFIG only when `config` was not made by createConfig().
 */
export function decodeServerId(config: QuicLbConfig, cid: Uint8Array): Uint8Array | undefined {
  const codec = codecOf(config);
  if (cid.length < config.cidLength || configIdOf(cid[0]) !== config.configId) return undefined;
  const out = new Uint8Array(config.serverIdLength);
  codec.decode(cid, FIRST_OCTET_LENGTH, out);
  return out;
}
