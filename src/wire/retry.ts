/**
 * Retry packets (RFC 9000 §17.2.5) and their integrity tag (RFC 9001 §5.8, RFC 9369 §3.3.3).
 *
 *   Retry { 1 | 1 | type (2) | unused (4) | Version (32) | DCIL (8) | DCID | SCIL (8) | SCID |
 *           Retry Token (..) | Retry Integrity Tag (128) }
 *
 * The tag is AES-128-GCM with a fixed key and nonce per version, empty plaintext, and as
 * associated data the Retry pseudo-packet: ODCID Length (8) | ODCID | the Retry packet without
 * its tag (RFC 9001 §5.8). A Retry has no Length field: it runs to the end of the datagram.
 *
 * Two error channels as everywhere in src/wire: `retryIntegrityTag` and `encodeRetry` throw
 * {@link QuicWireError}; `parseRetry` / `verifyRetry` face the network and never throw.
 */
import { createCipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { QuicWireError } from './errors.js';
import { MAX_CID_LENGTH } from './header.js';
import {
  FIXED_BIT,
  HEADER_FORM_BIT,
  LONG_PACKET_TYPE_SHIFT,
  PacketType,
  QUIC_V1,
  QUIC_V2,
  longPacketTypeBits,
  packetTypeOf,
} from './version.js';

/** RFC 9001 §5.8: the Retry Integrity Tag is 128 bits. */
export const RETRY_INTEGRITY_TAG_LENGTH = 16;

// Fixed key and nonce of the Retry Integrity Tag. They are public: the tag protects against
// accidental corruption and off-path injection (the ODCID is the secret), not against an on-path
// attacker (RFC 9001 §5.8).
const V1_KEY = Buffer.from('be0c690b9f66575a1d766b54e368c84e', 'hex'); // RFC 9001 §5.8
const V1_NONCE = Buffer.from('461599d35d632bf2239825bb', 'hex'); // RFC 9001 §5.8
const V2_KEY = Buffer.from('8fb4b01b56ac48e260fbcbcead7ccc92', 'hex'); // RFC 9369 §3.3.3
const V2_NONCE = Buffer.from('d86969bc2d7c6d9990efb04a', 'hex'); // RFC 9369 §3.3.3

/** Result codes of {@link parseRetry}: 0 on success, negative when the packet is refused. */
export const RETRY_OK = 0;
/** Shorter than a long header, its CIDs, one octet of token and the tag. */
export const RETRY_ERR_TRUNCATED = -1;
/** Not a long-header Retry of QUIC v1 or v2 (form bit, version or type bits). */
export const RETRY_ERR_NOT_RETRY = -2;
/** A CID (DCID, SCID, or the caller's ODCID) longer than 20 octets (RFC 9000 §17.2). */
export const RETRY_ERR_CID_LENGTH = -3;
/** Zero-length Retry Token: RFC 9000 §17.2.5.2, a client MUST discard it. */
export const RETRY_ERR_TOKEN_EMPTY = -4;
/** The Retry Integrity Tag does not verify under this ODCID (RFC 9001 §5.8). */
export const RETRY_ERR_TAG = -5;

/** Counter labels of the {@link parseRetry} results, indexed by `-code`. */
export const RETRY_ERROR_NAMES: readonly string[] = [
  'ok',
  'truncated',
  'not_retry',
  'bad_cid_length',
  'empty_token',
  'bad_tag',
];

/**
 * Reusable parse result of {@link parseRetry} (offsets into the parsed buffer, no copies).
 * `unused` is the low four bits of the first octet (arbitrary; RFC 9000 §17.2.5).
 */
export class RetryPacket {
  version = 0;
  unused = 0;
  dcidOffset = -1;
  dcidLength = -1;
  scidOffset = -1;
  scidLength = -1;
  tokenOffset = -1;
  tokenLength = -1;
}

/** What {@link encodeRetry} puts in the packet. */
export interface RetryFields {
  /** QUIC_V1 or QUIC_V2. */
  version: number;
  /** The client's SCID from its Initial (the Retry goes to it). 0..20 octets. */
  dcid: Uint8Array;
  /** The CID the server chooses; the client's next Initial carries it as DCID. 0..20 octets. */
  scid: Uint8Array;
  /** The address validation token; at least one octet (RFC 9000 §17.2.5.2). */
  token: Uint8Array;
  /** The DCID of the client's Initial: covered by the tag, not sent. 0..20 octets. */
  odcid: Uint8Array;
  /** The four unused bits of the first octet; random when absent (RFC 9000 §17.2.5). */
  unused?: number;
}

function keyAndNonce(version: number): [Buffer, Buffer] | undefined {
  if (version === QUIC_V1) return [V1_KEY, V1_NONCE];
  if (version === QUIC_V2) return [V2_KEY, V2_NONCE];
  return undefined;
}

/** AES-128-GCM over the pseudo-packet; `version` must already be v1 or v2, `odcid` ≤ 255 octets. */
function computeTag(key: Buffer, nonce: Buffer, odcid: Uint8Array, retry: Uint8Array): Buffer {
  const pseudo = Buffer.allocUnsafe(1 + odcid.length + retry.length);
  pseudo[0] = odcid.length;
  pseudo.set(odcid, 1);
  pseudo.set(retry, 1 + odcid.length);
  const cipher = createCipheriv('aes-128-gcm', key, nonce);
  cipher.setAAD(pseudo);
  cipher.final();
  return cipher.getAuthTag();
}

function checkCid(cid: Uint8Array, field: string): void {
  if (cid.length > MAX_CID_LENGTH) {
    throw new QuicWireError('ERR_RETRY_CID_LENGTH', `${field} is ${cid.length} octets, above ${MAX_CID_LENGTH}`, field);
  }
}

/**
 * The 16-octet Retry Integrity Tag of `retryPacketWithoutTag` for a client whose Initial had
 * DCID `odcid` (RFC 9001 §5.8 for v1, RFC 9369 §3.3.3 for v2). Throws ERR_RETRY_VERSION for any
 * other version, ERR_RETRY_CID_LENGTH for an ODCID above 20 octets.
 */
export function retryIntegrityTag(version: number, odcid: Uint8Array, retryPacketWithoutTag: Uint8Array): Buffer {
  const kn = keyAndNonce(version);
  if (kn === undefined) {
    throw new QuicWireError(
      'ERR_RETRY_VERSION',
      `no Retry integrity key for version 0x${version.toString(16)}`,
      'version',
    );
  }
  checkCid(odcid, 'odcid');
  return computeTag(kn[0], kn[1], odcid, retryPacketWithoutTag);
}

/**
 * The Retry packet for `fields`, tag appended. Long packet type Retry is 0b11 under v1 and 0b00
 * under v2 (RFC 9369 §3.2). Throws ERR_RETRY_VERSION, ERR_RETRY_CID_LENGTH (dcid, scid, odcid),
 * ERR_RETRY_TOKEN_EMPTY, ERR_RETRY_UNUSED (`unused` not an integer 0..15).
 */
export function encodeRetry(fields: RetryFields): Buffer {
  const { version, dcid, scid, token, odcid } = fields;
  const kn = keyAndNonce(version);
  if (kn === undefined) {
    throw new QuicWireError(
      'ERR_RETRY_VERSION',
      `cannot build a Retry for version 0x${version.toString(16)}`,
      'version',
    );
  }
  checkCid(dcid, 'dcid');
  checkCid(scid, 'scid');
  checkCid(odcid, 'odcid');
  if (token.length === 0) throw new QuicWireError('ERR_RETRY_TOKEN_EMPTY', 'a Retry needs a token', 'token');
  const unused = fields.unused ?? randomBytes(1)[0] & 0x0f;
  if (!Number.isInteger(unused) || unused < 0 || unused > 0x0f) {
    throw new QuicWireError('ERR_RETRY_UNUSED', 'unused bits must be an integer 0..15', 'unused');
  }
  const bodyLength = 7 + dcid.length + scid.length + token.length;
  const out = Buffer.allocUnsafe(bodyLength + RETRY_INTEGRITY_TAG_LENGTH);
  out[0] =
    HEADER_FORM_BIT | FIXED_BIT | (longPacketTypeBits(version, PacketType.RETRY) << LONG_PACKET_TYPE_SHIFT) | unused;
  out.writeUInt32BE(version, 1);
  let o = 5;
  out[o++] = dcid.length;
  out.set(dcid, o);
  o += dcid.length;
  out[o++] = scid.length;
  out.set(scid, o);
  o += scid.length;
  out.set(token, o);
  const body = out.subarray(0, bodyLength);
  computeTag(kn[0], kn[1], odcid, body).copy(out, bodyLength);
  return out;
}

/**
 * Parses the Retry packet filling all of `buf` (a Retry runs to the end of its datagram) into
 * `out` and checks its tag against `odcid` in constant time. Returns {@link RETRY_OK} or a
 * negative RETRY_ERR_* code (`out` then undefined). Never throws; allocates only for the AES-GCM
 * computation, once the structure has passed.
 */
export function parseRetry(buf: Uint8Array, odcid: Uint8Array, out: RetryPacket): number {
  const n = buf.length;
  if (n < 7) return RETRY_ERR_TRUNCATED;
  const first = buf[0];
  if ((first & HEADER_FORM_BIT) === 0) return RETRY_ERR_NOT_RETRY;
  const version = ((buf[1] << 24) | (buf[2] << 16) | (buf[3] << 8) | buf[4]) >>> 0;
  const kn = keyAndNonce(version);
  if (kn === undefined || packetTypeOf(version, first) !== PacketType.RETRY) return RETRY_ERR_NOT_RETRY;
  const dcil = buf[5];
  if (dcil > MAX_CID_LENGTH) return RETRY_ERR_CID_LENGTH;
  const scilOffset = 6 + dcil;
  if (scilOffset >= n) return RETRY_ERR_TRUNCATED;
  const scil = buf[scilOffset];
  if (scil > MAX_CID_LENGTH || odcid.length > MAX_CID_LENGTH) return RETRY_ERR_CID_LENGTH;
  const tokenOffset = scilOffset + 1 + scil;
  const tagOffset = n - RETRY_INTEGRITY_TAG_LENGTH;
  if (tagOffset < tokenOffset) return RETRY_ERR_TRUNCATED;
  if (tagOffset === tokenOffset) return RETRY_ERR_TOKEN_EMPTY;
  const body = buf.subarray(0, tagOffset);
  const tag = computeTag(kn[0], kn[1], odcid, body);
  if (!timingSafeEqual(tag, buf.subarray(tagOffset))) return RETRY_ERR_TAG;
  out.version = version;
  out.unused = first & 0x0f;
  out.dcidOffset = 6;
  out.dcidLength = dcil;
  out.scidOffset = scilOffset + 1;
  out.scidLength = scil;
  out.tokenOffset = tokenOffset;
  out.tokenLength = tagOffset - tokenOffset;
  return RETRY_OK;
}

const scratch = new RetryPacket();

/** True when `buf` is a well-formed v1/v2 Retry whose tag verifies under `odcid`. Never throws. */
export function verifyRetry(buf: Uint8Array, odcid: Uint8Array): boolean {
  return parseRetry(buf, odcid, scratch) === RETRY_OK;
}
