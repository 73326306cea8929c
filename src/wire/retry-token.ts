/**
 * Shared-state Retry tokens (draft-ietf-quic-retry-offload-00 §4): the tokens a load balancer puts
 * in the Retry packets it sends for the backends, which every LB and every backend of the fleet
 * can open with the same key ring.
 *
 *   Token { Token Type (1) = 0 | Key Sequence (7) | Unique Token Number (96) |
 *           Encrypted Body (..) | AEAD Integrity Check Value (128) }
 *   Body  { Timestamp (64, expiry, POSIX seconds) | ODCIL (8) = 8..20 | ODCID | Port (16) | Opaque (..) }
 *
 * AES-128-GCM under the key of the key sequence, nonce = that key's IV XOR the unique token number
 * (§4.1), associated data the pseudoheader
 *
 *   { Client IP (128; IPv4 in the first 4 octets, 12 zero octets after) | first token octet |
 *     Unique Token Number (96) | RSCIL (8) | Retry Source Connection ID (0..20) }
 *
 * so a token opens only for the client address it was issued to and only in an Initial whose DCID
 * is the Retry's SCID. Tokens of type 1 (NEW_TOKEN, issued by a backend) are not opened here.
 *
 * The draft's appendix vector was computed over an older layout (RSCID inside the body, associated
 * data `IP | token number | sequence octet`); this module follows the draft's text, and the test
 * uses the vector for the AEAD step alone ({@link sealTokenBody}).
 *
 * Error channels as everywhere in src/wire: key parsing and sealing throw {@link QuicWireError};
 * {@link openRetryToken} and {@link initialTokenOf} face the network and never throw.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { QuicWireError } from './errors.js';
import { MAX_CID_LENGTH, MIN_CLIENT_INITIAL_DCID_LENGTH } from './header.js';
import { readVarint, varintSizeAt } from './varint.js';
import { isInitial, QUIC_V1, QUIC_V2 } from './version.js';

/** AES-128 key. */
export const RETRY_TOKEN_KEY_LENGTH = 16;
/** AEAD IV, XORed with the unique token number into the nonce (§4.1). */
export const RETRY_TOKEN_IV_LENGTH = 12;
/** The unique token number: 96 random bits. */
export const RETRY_TOKEN_NUMBER_LENGTH = 12;
/** The AEAD Integrity Check Value (RFC 4106 §6). */
export const RETRY_TOKEN_ICV_LENGTH = 16;
/** Key sequences are 7 bits. */
export const MAX_RETRY_TOKEN_KEY_SEQUENCE = 127;
/** §4.2: a token is not expired until its timestamp is this many seconds in the past (clock skew). */
export const RETRY_TOKEN_SKEW_SECONDS = 2;
/** Type bit: 1 = a NEW_TOKEN token (§4), never opened by this module. */
const NEW_TOKEN_BIT = 0x80;
const TIMESTAMP_LENGTH = 8;
const PORT_LENGTH = 2;
const IP_LENGTH = 16;
/** The shortest type-0 token: header, a body with an 8-octet ODCID, the ICV. */
export const MIN_RETRY_TOKEN_LENGTH =
  1 +
  RETRY_TOKEN_NUMBER_LENGTH +
  TIMESTAMP_LENGTH +
  1 +
  MIN_CLIENT_INITIAL_DCID_LENGTH +
  PORT_LENGTH +
  RETRY_TOKEN_ICV_LENGTH;

/** Results of {@link openRetryToken}: 0, or a negative code (`RETRY_TOKEN_ERROR_NAMES[-code]`). */
export const RETRY_TOKEN_OK = 0;
/** Type bit 1: a NEW_TOKEN token of a backend, not a Retry token. */
export const RETRY_TOKEN_ERR_NEW_TOKEN = -1;
/** Shorter than {@link MIN_RETRY_TOKEN_LENGTH}. */
export const RETRY_TOKEN_ERR_TRUNCATED = -2;
/** A key sequence the ring does not hold. */
export const RETRY_TOKEN_ERR_KEY_SEQUENCE = -3;
/** The ICV does not verify: forged, altered, another client IP, or another Initial DCID. */
export const RETRY_TOKEN_ERR_INVALID = -4;
/** ODCIL outside 8..20, or a body too short for it (only a key holder can issue such a token). */
export const RETRY_TOKEN_ERR_ODCID = -5;
/** The expiry is more than {@link RETRY_TOKEN_SKEW_SECONDS} in the past. */
export const RETRY_TOKEN_ERR_EXPIRED = -6;
/** The token was issued to another UDP source port. */
export const RETRY_TOKEN_ERR_PORT = -7;

/** Counter labels of the {@link openRetryToken} results, indexed by `-code`. */
export const RETRY_TOKEN_ERROR_NAMES: readonly string[] = [
  'ok',
  'new_token',
  'truncated',
  'key_sequence',
  'invalid',
  'odcid',
  'expired',
  'port',
];

/** One key of the ring, as a key file holds it. */
export interface RetryTokenKey {
  /** 0..127, carried in the token's first octet. */
  readonly sequence: number;
  /** 16 octets. */
  readonly key: Uint8Array;
  /** 12 octets. */
  readonly iv: Uint8Array;
}

function keyFileError(message: string): QuicWireError {
  return new QuicWireError('ERR_RETRY_KEY_FILE', message);
}

function checkKey(k: RetryTokenKey, where: string): void {
  if (!Number.isInteger(k.sequence) || k.sequence < 0 || k.sequence > MAX_RETRY_TOKEN_KEY_SEQUENCE) {
    throw new QuicWireError('ERR_RETRY_KEY_SEQUENCE', `${where}: sequence ${k.sequence} is not 0..127`, 'sequence');
  }
  if (k.key.length !== RETRY_TOKEN_KEY_LENGTH) {
    throw new QuicWireError('ERR_RETRY_KEY_FILE', `${where}: key is ${k.key.length} octets, not 16`, 'key');
  }
  if (k.iv.length !== RETRY_TOKEN_IV_LENGTH) {
    throw new QuicWireError('ERR_RETRY_KEY_FILE', `${where}: iv is ${k.iv.length} octets, not 12`, 'iv');
  }
}

/**
 * Parses a key file: one line `<sequence 0..127> <key: 32 hex digits> <iv: 24 hex digits>`;
 * blank lines and lines starting with `#` are ignored. Throws ERR_RETRY_KEY_FILE naming the line
 * (or ERR_RETRY_KEY_SEQUENCE for a sequence out of range).
 */
export function parseRetryTokenKey(text: string): RetryTokenKey {
  const lines = text.split(/\r?\n/);
  let found: RetryTokenKey | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (found) throw keyFileError(`line ${i + 1}: a key file holds one key; a second key line found`);
    const fields = line.split(/\s+/);
    if (fields.length !== 3) {
      throw keyFileError(`line ${i + 1}: expected "<sequence> <key hex> <iv hex>", found ${fields.length} fields`);
    }
    const [seq, key, iv] = fields;
    if (!/^\d{1,3}$/.test(seq)) throw keyFileError(`line ${i + 1}: sequence "${seq}" is not a number 0..127`);
    if (!/^[0-9a-fA-F]{32}$/.test(key)) throw keyFileError(`line ${i + 1}: key is not 32 hex digits (16 octets)`);
    if (!/^[0-9a-fA-F]{24}$/.test(iv)) throw keyFileError(`line ${i + 1}: iv is not 24 hex digits (12 octets)`);
    found = { sequence: Number(seq), key: Buffer.from(key, 'hex'), iv: Buffer.from(iv, 'hex') };
    checkKey(found, `line ${i + 1}`);
  }
  if (!found) throw keyFileError('no key line ("<sequence> <key hex> <iv hex>")');
  return found;
}

/** The key file text of `k` (what {@link parseRetryTokenKey} reads). */
export function formatRetryTokenKey(k: RetryTokenKey): string {
  checkKey(k, 'key');
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  return (
    '# QUIC Retry offload token key (draft-ietf-quic-retry-offload-00 §4): sequence, AES-128 key, AEAD IV.\n' +
    '# Secret: every LB and backend of the fleet holds the same file; keep it mode 0600.\n' +
    `${k.sequence} ${hex(k.key)} ${hex(k.iv)}\n`
  );
}

/** A new key of `sequence` with a random key and IV (CSPRNG). */
export function generateRetryTokenKey(sequence: number): RetryTokenKey {
  const k = { sequence, key: randomBytes(RETRY_TOKEN_KEY_LENGTH), iv: randomBytes(RETRY_TOKEN_IV_LENGTH) };
  checkKey(k, 'key');
  return k;
}

/**
 * The key ring of a fleet: `keys[0]` seals new tokens, every key opens. During a rotation the ring
 * holds the old and the new key (two sequences accepted). Sequences must be distinct
 * (ERR_RETRY_KEY_SEQUENCE); at least one key (ERR_RETRY_KEY_FILE).
 */
export class RetryTokenKeys {
  /** The sequence that seals. */
  readonly sealing: number;
  readonly keys: readonly RetryTokenKey[];
  private readonly bySequence: (RetryTokenKey | undefined)[] = new Array<RetryTokenKey | undefined>(128);

  constructor(keys: readonly RetryTokenKey[]) {
    if (keys.length === 0) throw keyFileError('a Retry token key ring needs at least one key');
    keys.forEach((k, i) => {
      checkKey(k, `keys[${i}]`);
      if (this.bySequence[k.sequence]) {
        throw new QuicWireError(
          'ERR_RETRY_KEY_SEQUENCE',
          `keys[${i}]: sequence ${k.sequence} appears twice (each key needs its own sequence)`,
          'sequence',
        );
      }
      this.bySequence[k.sequence] = k;
    });
    this.keys = [...keys];
    this.sealing = keys[0].sequence;
  }

  /** True when the ring holds a key of this sequence. */
  has(sequence: number): boolean {
    return this.bySequence[sequence] !== undefined;
  }

  /** The key of `sequence`, if held. */
  get(sequence: number): RetryTokenKey | undefined {
    return this.bySequence[sequence & MAX_RETRY_TOKEN_KEY_SEQUENCE];
  }
}

/** What {@link sealRetryToken} puts in a token. */
export interface RetryTokenFields {
  /** The client's IP address (4 or 16 octets), as the Initial's source. */
  clientIp: Uint8Array;
  /** The client's UDP source port, 0..65535. */
  clientPort: number;
  /** The DCID of the client's Initial: 8..20 octets (RFC 9000 §7.2). */
  odcid: Uint8Array;
  /** The SCID of the Retry that carries the token (the client's next DCID): 0..20 octets. */
  rscid: Uint8Array;
  /** Expiry, POSIX seconds. */
  expiresAt: number;
  /** Server-specific data; the LB leaves it empty (§4). */
  opaque?: Uint8Array;
}

function nonceOf(iv: Uint8Array, token: Uint8Array, numberOffset: number): Buffer {
  const n = Buffer.allocUnsafe(RETRY_TOKEN_IV_LENGTH);
  for (let i = 0; i < RETRY_TOKEN_IV_LENGTH; i++) n[i] = iv[i] ^ token[numberOffset + i];
  return n;
}

/**
 * The associated data (§4.1 pseudoheader) of a type-0 token whose first 13 octets (type/sequence
 * and unique token number) are `head`. `ip` is 4 or 16 octets (else false: not a client address).
 */
function pseudoheader(ip: Uint8Array, head: Uint8Array, headOffset: number, rscid: Uint8Array): Buffer | undefined {
  if (ip.length !== 4 && ip.length !== IP_LENGTH) return undefined;
  const ad = Buffer.alloc(IP_LENGTH + 1 + RETRY_TOKEN_NUMBER_LENGTH + 1 + rscid.length);
  ad.set(ip, 0);
  ad.set(head.subarray(headOffset, headOffset + 1 + RETRY_TOKEN_NUMBER_LENGTH), IP_LENGTH);
  ad[IP_LENGTH + 1 + RETRY_TOKEN_NUMBER_LENGTH] = rscid.length;
  ad.set(rscid, IP_LENGTH + 2 + RETRY_TOKEN_NUMBER_LENGTH);
  return ad;
}

/**
 * The AEAD step of §4.1 alone: AES-128-GCM of `plaintext` under `key`, nonce = `key.iv` XOR
 * `uniqueTokenNumber`, associated data `ad`. Returns ciphertext followed by the 16-octet ICV.
 */
export function sealTokenBody(
  key: RetryTokenKey,
  uniqueTokenNumber: Uint8Array,
  ad: Uint8Array,
  plaintext: Uint8Array,
): Buffer {
  if (uniqueTokenNumber.length !== RETRY_TOKEN_NUMBER_LENGTH) {
    throw new QuicWireError('ERR_RETRY_TOKEN_FIELD', 'the unique token number is 12 octets', 'uniqueTokenNumber');
  }
  const cipher = createCipheriv('aes-128-gcm', key.key, nonceOf(key.iv, uniqueTokenNumber, 0));
  cipher.setAAD(ad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([ct, cipher.getAuthTag()]);
}

function fieldError(message: string, field: string): QuicWireError {
  return new QuicWireError('ERR_RETRY_TOKEN_FIELD', message, field);
}

/**
 * A type-0 token under the ring's sealing key, with a fresh random unique token number. Throws
 * ERR_RETRY_TOKEN_FIELD for a client IP not 4/16 octets, a port outside 0..65535, an ODCID outside
 * 8..20 octets, an RSCID above 20, or an expiry that is not a non-negative integer.
 */
export function sealRetryToken(keys: RetryTokenKeys, f: RetryTokenFields): Buffer {
  const key = keys.get(keys.sealing) as RetryTokenKey;
  if (!Number.isInteger(f.clientPort) || f.clientPort < 0 || f.clientPort > 0xffff) {
    throw fieldError(`client port ${f.clientPort} is not 0..65535`, 'clientPort');
  }
  if (f.odcid.length < MIN_CLIENT_INITIAL_DCID_LENGTH || f.odcid.length > MAX_CID_LENGTH) {
    throw fieldError(`ODCID is ${f.odcid.length} octets, not 8..20 (RFC 9000 §7.2)`, 'odcid');
  }
  if (f.rscid.length > MAX_CID_LENGTH) throw fieldError(`RSCID is ${f.rscid.length} octets, above 20`, 'rscid');
  if (!Number.isSafeInteger(f.expiresAt) || f.expiresAt < 0) {
    throw fieldError(`expiry ${f.expiresAt} is not a POSIX time in seconds`, 'expiresAt');
  }
  const head = Buffer.allocUnsafe(1 + RETRY_TOKEN_NUMBER_LENGTH);
  head[0] = key.sequence; // type bit 0
  randomBytes(RETRY_TOKEN_NUMBER_LENGTH).copy(head, 1);
  const ad = pseudoheader(f.clientIp, head, 0, f.rscid);
  if (!ad) throw fieldError(`client IP is ${f.clientIp.length} octets, not 4 or 16`, 'clientIp');
  const opaque = f.opaque ?? new Uint8Array(0);
  const body = Buffer.allocUnsafe(TIMESTAMP_LENGTH + 1 + f.odcid.length + PORT_LENGTH + opaque.length);
  body.writeBigUInt64BE(BigInt(f.expiresAt), 0);
  body[TIMESTAMP_LENGTH] = f.odcid.length;
  body.set(f.odcid, TIMESTAMP_LENGTH + 1);
  body.writeUInt16BE(f.clientPort, TIMESTAMP_LENGTH + 1 + f.odcid.length);
  body.set(opaque, TIMESTAMP_LENGTH + 1 + f.odcid.length + PORT_LENGTH);
  return Buffer.concat([head, sealTokenBody(key, head.subarray(1), ad, body)]);
}

/** A token opened by {@link openRetryToken}: reused between calls; offsets into `body`. */
export class OpenedRetryToken {
  sequence = -1;
  /** Expiry, POSIX seconds. */
  expiresAt = 0;
  /** The client port the token was issued to. */
  port = -1;
  /** The decrypted body (a new buffer per open). */
  body: Buffer = Buffer.alloc(0);
  odcidOffset = -1;
  odcidLength = -1;
  opaqueOffset = -1;
  opaqueLength = -1;

  /** A copy of the original destination connection ID. */
  odcid(): Buffer {
    return Buffer.from(this.body.subarray(this.odcidOffset, this.odcidOffset + this.odcidLength));
  }

  /** A copy of the opaque data (empty in tokens of the LB). */
  opaque(): Buffer {
    return Buffer.from(this.body.subarray(this.opaqueOffset, this.opaqueOffset + this.opaqueLength));
  }
}

/**
 * Opens the token at `buf[offset, offset + length)` carried by an Initial from `clientIp`
 * (4 or 16 octets) port `clientPort` whose DCID is `dcid`, at `nowSeconds`. Fills `out` and returns
 * RETRY_TOKEN_OK, or a negative RETRY_TOKEN_ERR_* code, checked in this order: type bit (NEW_TOKEN),
 * length, key sequence, ICV, ODCIL, expiry (with the 2 s allowance of §4.2), port. Never throws.
 */
export function openRetryToken(
  keys: RetryTokenKeys,
  buf: Uint8Array,
  offset: number,
  length: number,
  clientIp: Uint8Array,
  clientPort: number,
  dcid: Uint8Array,
  nowSeconds: number,
  out: OpenedRetryToken,
): number {
  if (length < 1 || offset < 0 || offset + length > buf.length) return RETRY_TOKEN_ERR_TRUNCATED;
  const first = buf[offset];
  if ((first & NEW_TOKEN_BIT) !== 0) return RETRY_TOKEN_ERR_NEW_TOKEN;
  if (length < MIN_RETRY_TOKEN_LENGTH) return RETRY_TOKEN_ERR_TRUNCATED;
  const key = keys.get(first);
  if (key === undefined) return RETRY_TOKEN_ERR_KEY_SEQUENCE;
  if (dcid.length > MAX_CID_LENGTH) return RETRY_TOKEN_ERR_INVALID;
  const ad = pseudoheader(clientIp, buf, offset, dcid);
  if (!ad) return RETRY_TOKEN_ERR_INVALID;
  const ctStart = offset + 1 + RETRY_TOKEN_NUMBER_LENGTH;
  const icvStart = offset + length - RETRY_TOKEN_ICV_LENGTH;
  let body: Buffer;
  try {
    const d = createDecipheriv('aes-128-gcm', key.key, nonceOf(key.iv, buf, offset + 1));
    d.setAAD(ad);
    d.setAuthTag(buf.subarray(icvStart, offset + length));
    body = Buffer.concat([d.update(buf.subarray(ctStart, icvStart)), d.final()]);
  } catch {
    return RETRY_TOKEN_ERR_INVALID;
  }
  const odcil = body[TIMESTAMP_LENGTH];
  if (
    odcil < MIN_CLIENT_INITIAL_DCID_LENGTH ||
    odcil > MAX_CID_LENGTH ||
    body.length < TIMESTAMP_LENGTH + 1 + odcil + PORT_LENGTH
  ) {
    return RETRY_TOKEN_ERR_ODCID;
  }
  // 64-bit timestamp as a number: exact below 2^53 s; a larger value is far in the future anyway.
  const expiresAt = body.readUInt32BE(0) * 0x1_0000_0000 + body.readUInt32BE(4);
  out.sequence = first;
  out.expiresAt = expiresAt;
  out.body = body;
  out.odcidOffset = TIMESTAMP_LENGTH + 1;
  out.odcidLength = odcil;
  out.port = body.readUInt16BE(TIMESTAMP_LENGTH + 1 + odcil);
  out.opaqueOffset = TIMESTAMP_LENGTH + 1 + odcil + PORT_LENGTH;
  out.opaqueLength = body.length - out.opaqueOffset;
  if (nowSeconds > expiresAt + RETRY_TOKEN_SKEW_SECONDS) return RETRY_TOKEN_ERR_EXPIRED;
  if (out.port !== clientPort) return RETRY_TOKEN_ERR_PORT;
  return RETRY_TOKEN_OK;
}

/** Where {@link initialTokenOf} reports the token field. */
export interface InitialToken {
  tokenOffset: number;
  tokenLength: number;
}

/**
 * Finds the token of the long-header Initial (QUIC v1 or v2, RFC 9000 §17.2.2, RFC 9369 §3.2) at
 * the start of `datagram`: fills `out` (length 0 when it carries none) and returns true; false when
 * the datagram does not start with a v1/v2 Initial, a CID is above 20 octets, or the token length
 * or token runs past the end. Never throws, never allocates.
 */
export function initialTokenOf(datagram: Uint8Array, out: InitialToken): boolean {
  const n = datagram.length;
  if (n < 7) return false;
  const version = ((datagram[1] << 24) | (datagram[2] << 16) | (datagram[3] << 8) | datagram[4]) >>> 0;
  if ((version !== QUIC_V1 && version !== QUIC_V2) || !isInitial(version, datagram[0])) return false;
  const dcil = datagram[5];
  if (dcil > MAX_CID_LENGTH || 6 + dcil >= n) return false;
  const scil = datagram[6 + dcil];
  if (scil > MAX_CID_LENGTH) return false;
  const lengthAt = 7 + dcil + scil;
  if (lengthAt >= n) return false;
  const tokenLength = readVarint(datagram, lengthAt);
  if (tokenLength < 0) return false;
  const tokenOffset = lengthAt + varintSizeAt(datagram, lengthAt);
  if (tokenOffset + tokenLength > n) return false;
  out.tokenOffset = tokenOffset;
  out.tokenLength = tokenLength;
  return true;
}
