// QUIC-LB configuration (draft-21 §5.3): validated once, frozen, with the codec precomputed.

import { createBlockCipher, DEFAULT_CIPHER, type CipherName } from './cipher.js';
import { FourPassCodec, PlaintextCodec, SinglePassCodec, type Codec } from './codec.js';
import {
  AES_KEY_LENGTH,
  CONFIG_ROTATION_SHIFT,
  FIRST_OCTET_LENGTH,
  MAX_CONFIG_ID,
  MAX_NONCE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  MAX_SERVER_ID_LENGTH,
  MIN_CONFIG_ID,
  MIN_NONCE_LENGTH,
  MIN_SERVER_ID_LENGTH,
  SINGLE_PASS_PLAINTEXT_LENGTH,
} from './constants.js';
import { QuicLbError } from './errors.js';

/** Server-ID encoding, chosen from the key and lengths (draft-21 §5.4). */
export type QuicLbAlgorithm = 'plaintext' | 'single-pass' | 'four-pass';

/** Input of createConfig(). */
export interface QuicLbConfigOptions {
  /** Config rotation codepoint, 0..6 (0b111 is reserved for unroutable CIDs, draft-21 §3). */
  configId: number;
  /** Octets of server ID, >= 1. */
  serverIdLength: number;
  /** Octets of nonce, >= 4; serverIdLength + nonceLength <= 19 (draft-21 §5.3). */
  nonceLength: number;
  /** 16-octet AES-128 key; without one the config is plaintext (no privacy, draft-21 §9). */
  key?: Uint8Array;
  /** Server side: write cidLength - 1 into the first octet's low 5 bits (draft-21 §3.3). Default true. */
  selfEncodeLength?: boolean;
  /**
   * Block cipher implementation: 'table' (pure TypeScript T-table AES, fastest here, not
   * constant-time) or 'node' (node:crypto / AES-NI, constant time). Default 'table'.
   */
  cipher?: CipherName;
}

/** A validated, frozen config. Only createConfig() makes them. */
export interface QuicLbConfig {
  readonly configId: number;
  readonly serverIdLength: number;
  readonly nonceLength: number;
  /** serverIdLength + nonceLength: the encoded block after the first octet. */
  readonly plaintextLength: number;
  /** 1 + plaintextLength: the shortest CID this config decodes (extra octets may follow). */
  readonly cidLength: number;
  readonly algorithm: QuicLbAlgorithm;
  /** AES calls the LB needs per decode: 0 (plaintext), 1 (single-pass), 3 or 4 (four-pass). */
  readonly decodePasses: number;
  readonly selfEncodeLength: boolean;
  /** A copy of the key, or undefined for plaintext. */
  readonly key?: Uint8Array;
  /** Cipher implementation in use, or undefined for plaintext. */
  readonly cipher?: CipherName;
}

/** Hidden slot holding the precomputed codec (key schedule, masks, scratch). */
const CODEC = Symbol('quic-lb.codec');

interface ConfigWithCodec extends QuicLbConfig {
  readonly [CODEC]: Codec;
}

function checkInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/**
 * Validates a config once and precomputes everything the codec needs.
 * @throws QuicLbError ERR_CONFIG_ID | ERR_SERVER_ID_LENGTH | ERR_NONCE_LENGTH |
 *   ERR_PLAINTEXT_LENGTH | ERR_KEY | ERR_SELF_ENCODE_LENGTH | ERR_CIPHER
 */
export function createConfig(options: QuicLbConfigOptions): QuicLbConfig {
  if (options === null || typeof options !== 'object') {
    throw new QuicLbError('ERR_CONFIG', 'options', 'config options must be an object');
  }
  const { configId, serverIdLength, nonceLength, key } = options;
  const selfEncodeLength = options.selfEncodeLength ?? true;
  if (!checkInteger(configId, MIN_CONFIG_ID, MAX_CONFIG_ID)) {
    throw new QuicLbError(
      'ERR_CONFIG_ID',
      'configId',
      `configId must be an integer ${MIN_CONFIG_ID}..${MAX_CONFIG_ID} (0b111 is reserved for unroutable CIDs), got ${String(configId)}`,
    );
  }
  if (!checkInteger(serverIdLength, MIN_SERVER_ID_LENGTH, MAX_SERVER_ID_LENGTH)) {
    throw new QuicLbError(
      'ERR_SERVER_ID_LENGTH',
      'serverIdLength',
      `serverIdLength must be an integer ${MIN_SERVER_ID_LENGTH}..${MAX_SERVER_ID_LENGTH}, got ${String(serverIdLength)}`,
    );
  }
  if (!checkInteger(nonceLength, MIN_NONCE_LENGTH, MAX_NONCE_LENGTH)) {
    throw new QuicLbError(
      'ERR_NONCE_LENGTH',
      'nonceLength',
      `nonceLength must be an integer ${MIN_NONCE_LENGTH}..${MAX_NONCE_LENGTH}, got ${String(nonceLength)}`,
    );
  }
  const plaintextLength = serverIdLength + nonceLength;
  if (plaintextLength > MAX_PLAINTEXT_LENGTH) {
    throw new QuicLbError(
      'ERR_PLAINTEXT_LENGTH',
      'nonceLength',
      `serverIdLength + nonceLength must be at most ${MAX_PLAINTEXT_LENGTH} (a QUIC CID is at most 20 octets), got ${plaintextLength}`,
    );
  }
  if (key !== undefined && !(key instanceof Uint8Array && key.length === AES_KEY_LENGTH)) {
    throw new QuicLbError('ERR_KEY', 'key', `key must be exactly ${AES_KEY_LENGTH} octets (AES-128)`);
  }
  if (typeof selfEncodeLength !== 'boolean') {
    throw new QuicLbError('ERR_SELF_ENCODE_LENGTH', 'selfEncodeLength', 'selfEncodeLength must be a boolean');
  }
  const cipherName = options.cipher ?? DEFAULT_CIPHER;
  if (cipherName !== 'table' && cipherName !== 'node') {
    throw new QuicLbError('ERR_CIPHER', 'cipher', `cipher must be 'table' or 'node', got ${String(cipherName)}`);
  }

  let algorithm: QuicLbAlgorithm;
  let decodePasses: number;
  let codec: Codec;
  let keyCopy: Uint8Array | undefined;
  if (key === undefined) {
    algorithm = 'plaintext';
    decodePasses = 0;
    codec = new PlaintextCodec(serverIdLength, nonceLength);
  } else {
    keyCopy = Uint8Array.from(key);
    const cipher = createBlockCipher(keyCopy, cipherName);
    if (plaintextLength === SINGLE_PASS_PLAINTEXT_LENGTH) {
      algorithm = 'single-pass';
      decodePasses = 1;
      codec = new SinglePassCodec(serverIdLength, nonceLength, cipher);
    } else {
      algorithm = 'four-pass';
      decodePasses = serverIdLength <= nonceLength ? 3 : 4;
      codec = new FourPassCodec(serverIdLength, nonceLength, cipher);
    }
  }
  const cidLength = FIRST_OCTET_LENGTH + plaintextLength;
  // draft-21 §3, §3.3: codepoint in bits 7..5, then length - 1 when self-encoded.
  codec.firstOctet = (configId << CONFIG_ROTATION_SHIFT) | (selfEncodeLength ? cidLength - FIRST_OCTET_LENGTH : 0);
  const config: QuicLbConfig = {
    configId,
    serverIdLength,
    nonceLength,
    plaintextLength,
    cidLength,
    algorithm,
    decodePasses,
    selfEncodeLength,
    key: keyCopy,
    cipher: keyCopy === undefined ? undefined : cipherName,
  };
  Object.defineProperty(config, CODEC, { value: codec, enumerable: false });
  return Object.freeze(config);
}

/**
 * A config as plain data, the way config files and command lines give it: createConfig()'s
 * fields with the key as hex text (exactly 2 * AES_KEY_LENGTH hex digits, no prefix, no
 * whitespace) or as octets.
 */
export interface QuicLbSpec extends Omit<QuicLbConfigOptions, 'key'> {
  key?: string | Uint8Array;
}

const KEY_HEX = new RegExp(`^[0-9a-fA-F]{${2 * AES_KEY_LENGTH}}$`);

/**
 * createConfig() of a plain spec: the one way to turn a spec (config file entry, CLI flags,
 * test fixture) into a validated config. A hex key is decoded first.
 * @throws QuicLbError with createConfig()'s codes; ERR_KEY (field 'key') also for a key string
 *   that is not 32 hex digits.
 */
export function configFromSpec(spec: QuicLbSpec): QuicLbConfig {
  if (spec === null || typeof spec !== 'object') {
    throw new QuicLbError('ERR_CONFIG', 'options', 'config spec must be an object');
  }
  const { key } = spec;
  if (typeof key !== 'string') return createConfig(spec as QuicLbConfigOptions);
  if (!KEY_HEX.test(key)) {
    throw new QuicLbError(
      'ERR_KEY',
      'key',
      `key must be exactly ${AES_KEY_LENGTH} octets (AES-128): ${2 * AES_KEY_LENGTH} hex digits`,
    );
  }
  const octets = new Uint8Array(AES_KEY_LENGTH);
  for (let i = 0; i < AES_KEY_LENGTH; i++) octets[i] = parseInt(key.slice(2 * i, 2 * i + 2), 16);
  return createConfig({ ...spec, key: octets });
}

/** The codec of a config made by createConfig(). @throws QuicLbError ERR_CONFIG otherwise. */
export function codecOf(config: QuicLbConfig): Codec {
  const codec = (config as Partial<ConfigWithCodec> | null | undefined)?.[CODEC];
  if (codec === undefined) {
    throw new QuicLbError('ERR_CONFIG', 'config', 'not a config made by createConfig()');
  }
  return codec;
}
