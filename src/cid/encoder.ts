// Server side: mints every CID a QUIC server issues (draft-21 §5.4, §3.1, §3.2, §9.6).

import { EventEmitter } from 'node:events';
import { codecOf, type QuicLbConfig } from './config.js';
import type { Codec } from './codec.js';
import {
  CONFIG_ROTATION_SHIFT,
  FIRST_OCTET_LENGTH,
  LENGTH_BITS_MASK,
  MAX_CID_LENGTH,
  MIN_UNROUTABLE_CID_LENGTH,
  UNROUTABLE_CONFIG_ID,
  BYTE_MASK,
  BITS_PER_OCTET,
} from './constants.js';
import { QuicLbError } from './errors.js';
import { serverIdWithProcessIndex } from './process-index.js';
import { RandomPool, type RandomSource } from './random.js';

/** One config the server may mint CIDs with, and its server ID under that config. */
export interface EncoderConfigEntry {
  config: QuicLbConfig;
  /** This server's ID under `config` (config.serverIdLength octets). */
  serverId: Uint8Array;
  /**
   * Stop minting with this config after this many CIDs. Default: the whole nonce space,
   * 2^(8·nonceLength), for encrypted configs (the counter would wrap back to its random start,
   * draft-21 §9.6); 2^(4·nonceLength), the birthday bound of random nonces, for plaintext ones.
   */
  nonceLimit?: bigint;
}

/** Fold a process / worker index into every server ID (draft-21 §7.2). */
export interface ProcessIndexOption {
  /** 0 .. 256^length - 1, unique among the processes sharing this server ID. */
  index: number;
  /** Octets taken from the nonce for the index (default 1); the nonce must keep >= 4 octets. */
  length?: number;
}

export interface QuicLbEncoderOptions {
  /** Configs in order of preference; on exhaustion the encoder moves to the next one. */
  configs: EncoderConfigEntry[];
  /** Codepoint of the config to start with; default the first entry. */
  activeConfigId?: number;
  processIndex?: ProcessIndexOption;
  /** Random octets appended after the encoded block, the same count for every CID (draft-21 §5.4). Default 0. */
  extraOctets?: number;
  /** Length of 0b111 CIDs minted without a usable config (>= 8, draft-21 §3.2). Default max(8, longest config CID). */
  unroutableLength?: number;
  /** Random source (default: pooled CSPRNG). Seeds the nonce counters, fills plaintext nonces and random bits. */
  random?: RandomSource;
}

/** Why the active config changed. */
export type RotationReason = 'manual' | 'exhausted' | 'removed' | 'added';

/** Emitted as 'rotate' when the active config changes: re-issue CIDs with Retire Prior To (draft-21 §3.1). */
export interface RotationEvent {
  previous: QuicLbConfig | undefined;
  /** undefined: no usable config, the encoder now mints 0b111 CIDs (draft-21 §3.2). */
  current: QuicLbConfig | undefined;
  reason: RotationReason;
  connectionIdLength: number;
}

interface Slot {
  readonly config: QuicLbConfig;
  readonly codec: Codec;
  readonly serverId: Uint8Array;
  readonly nonce: Uint8Array;
  readonly plaintext: boolean;
  readonly cidLength: number;
  readonly firstOctetBase: number;
  readonly selfEncodeLength: boolean;
  /** Exact limit, and the same as a number (Infinity when beyond 2^53: unreachable in practice). */
  readonly limit: bigint;
  readonly limitNumber: number;
  issued: number;
  exhausted: boolean;
}

/**
 * Mints QUIC-LB connection IDs for one server.
 *
 * - Encrypted configs: nonces come from a counter seeded at random and are never reused under a
 *   key; when the counter has used its space (or `nonceLimit`), the encoder switches to the next
 *   configured config, and with none left mints 0b111 CIDs (draft-21 §3.2, §9.6).
 * - Plaintext configs: nonces are CSPRNG octets (draft-21 §9.6: no visible counter), and
 *   `allowsAdditionalCids` is false: issue only the handshake CID (draft-21 §9.2).
 * - Emits 'rotate' (RotationEvent) whenever the active config changes.
 */
export class QuicLbEncoder extends EventEmitter {
  private readonly slots: Slot[] = [];
  private active: Slot | null = null;
  private readonly random: RandomSource;
  private readonly extraOctets: number;
  private readonly processIndex: ProcessIndexOption | undefined;
  private unroutableLength: number;
  private readonly octet = new Uint8Array(1);

  /**
   * @throws QuicLbError ERR_CONFIG | ERR_SERVER_ID_LENGTH | ERR_EXTRA_OCTETS | ERR_PROCESS_INDEX |
   *   ERR_CONFIG_ID_IN_USE | ERR_UNKNOWN_CONFIG | ERR_NONCE_LIMIT | ERR_UNROUTABLE_LENGTH
   */
  constructor(options: QuicLbEncoderOptions) {
    super();
    const extra = options.extraOctets ?? 0;
    if (!Number.isInteger(extra) || extra < 0 || extra > MAX_CID_LENGTH) {
      throw new QuicLbError('ERR_EXTRA_OCTETS', 'extraOctets', `extraOctets must be an integer 0..${MAX_CID_LENGTH}`);
    }
    this.extraOctets = extra;
    this.random = options.random ?? new RandomPool();
    this.processIndex = options.processIndex;
    if (!Array.isArray(options.configs)) {
      throw new QuicLbError('ERR_CONFIG', 'configs', 'configs must be an array of { config, serverId }');
    }
    for (const entry of options.configs) this.slots.push(this.makeSlot(entry));
    const longest = this.slots.reduce((m, s) => Math.max(m, s.cidLength), MIN_UNROUTABLE_CID_LENGTH);
    const unroutable = options.unroutableLength ?? longest;
    if (!Number.isInteger(unroutable) || unroutable < MIN_UNROUTABLE_CID_LENGTH || unroutable > MAX_CID_LENGTH) {
      throw new QuicLbError(
        'ERR_UNROUTABLE_LENGTH',
        'unroutableLength',
        `unroutableLength must be an integer ${MIN_UNROUTABLE_CID_LENGTH}..${MAX_CID_LENGTH}`,
      );
    }
    this.unroutableLength = unroutable;
    if (options.activeConfigId !== undefined) {
      this.active = this.slotOf(options.activeConfigId);
    } else {
      this.active = this.slots[0] ?? null;
    }
  }

  private makeSlot(entry: EncoderConfigEntry): Slot {
    if (entry === null || typeof entry !== 'object') {
      throw new QuicLbError('ERR_CONFIG', 'configs', 'each configs entry must be { config, serverId }');
    }
    let config = entry.config;
    codecOf(config);
    if (this.slots.some((s) => s.config.configId === config.configId)) {
      throw new QuicLbError('ERR_CONFIG_ID_IN_USE', 'configId', `two entries for config ${config.configId}`);
    }
    if (!(entry.serverId instanceof Uint8Array) || entry.serverId.length !== config.serverIdLength) {
      throw new QuicLbError(
        'ERR_SERVER_ID_LENGTH',
        'serverId',
        `serverId must be ${config.serverIdLength} octets for config ${config.configId}`,
      );
    }
    const original = config;
    let serverId: Uint8Array = Uint8Array.from(entry.serverId);
    if (this.processIndex !== undefined) {
      const folded = serverIdWithProcessIndex(config, serverId, this.processIndex.index, this.processIndex.length ?? 1);
      config = folded.config;
      serverId = folded.serverId;
    }
    const cidLength = config.cidLength + this.extraOctets;
    if (cidLength > MAX_CID_LENGTH) {
      throw new QuicLbError(
        'ERR_EXTRA_OCTETS',
        'extraOctets',
        `config ${config.configId} with ${this.extraOctets} extra octets makes ${cidLength}-octet CIDs; QUIC allows ${MAX_CID_LENGTH}`,
      );
    }
    const plaintext = config.algorithm === 'plaintext';
    const bits = BigInt(config.nonceLength * BITS_PER_OCTET);
    // Random nonces: the birthday bound 2^(bits/2) (draft-21 §9.6); counters: the whole space.
    const space = plaintext ? 1n << (bits >> 1n) : 1n << bits;
    const limit = entry.nonceLimit ?? space;
    if (typeof limit !== 'bigint' || limit < 1n || limit > (plaintext ? 1n << bits : space)) {
      throw new QuicLbError('ERR_NONCE_LIMIT', 'nonceLimit', `nonceLimit must be a bigint 1..${space}`);
    }
    const nonce = new Uint8Array(config.nonceLength);
    // draft-21 §9.6: start the counter at a random value.
    if (!plaintext) this.random.fill(nonce, 0, nonce.length);
    return {
      config: original,
      codec: codecOf(config),
      serverId,
      nonce,
      plaintext,
      cidLength,
      firstOctetBase: config.configId << CONFIG_ROTATION_SHIFT,
      selfEncodeLength: config.selfEncodeLength,
      limit,
      limitNumber: limit > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(limit),
      issued: 0,
      exhausted: false,
    };
  }

  /** 'rotate' fires synchronously inside the call that changed the active config. */
  override on(event: 'rotate', listener: (event: RotationEvent) => void): this {
    return super.on(event, listener);
  }

  override once(event: 'rotate', listener: (event: RotationEvent) => void): this {
    return super.once(event, listener);
  }

  override off(event: 'rotate', listener: (event: RotationEvent) => void): this {
    return super.off(event, listener);
  }

  private slotOf(configId: number): Slot {
    const slot = this.slots.find((s) => s.config.configId === configId);
    if (slot === undefined) {
      throw new QuicLbError('ERR_UNKNOWN_CONFIG', 'configId', `the encoder has no config ${String(configId)}`);
    }
    return slot;
  }

  /** The config CIDs are minted with now, or undefined when minting 0b111 CIDs. */
  get activeConfig(): QuicLbConfig | undefined {
    return this.active?.config;
  }

  /** Length of the CIDs generate() returns now (config CID + extra octets, or the 0b111 length). */
  get connectionIdLength(): number {
    return this.active !== null ? this.active.cidLength : this.unroutableLength;
  }

  /** CIDs the active config can still mint; 0n when minting 0b111 CIDs. */
  get noncesRemaining(): bigint {
    const s = this.active;
    return s === null ? 0n : s.limit - BigInt(s.issued);
  }

  /**
   * Whether the QUIC stack may offer CIDs beyond the handshake one (NEW_CONNECTION_ID,
   * preferred_address). False for plaintext configs (linkable, draft-21 §9.2) and for 0b111
   * (draft-21 §3.2: exactly one CID).
   */
  get allowsAdditionalCids(): boolean {
    return this.active !== null && !this.active.plaintext;
  }

  /** Every config the encoder holds, in preference order. */
  listConfigs(): QuicLbConfig[] {
    return this.slots.map((s) => s.config);
  }

  /**
   * Mints the next CID into out[offset ..] and returns its length. No allocation.
   * @throws QuicLbError ERR_BUFFER when out is too small.
   */
  generateInto(out: Uint8Array, offset = 0): number {
    let s = this.active;
    if (s !== null && s.issued >= s.limitNumber) {
      this.exhaust(s);
      s = this.active;
    }
    const length = s !== null ? s.cidLength : this.unroutableLength;
    if (!Number.isInteger(offset) || offset < 0 || offset + length > out.length) {
      throw new QuicLbError('ERR_BUFFER', 'out', `need ${length} octets at offset ${offset}`);
    }
    if (s === null) {
      // draft-21 §3.2: 0b111, self-encoded length, the rest random.
      out[offset] = (UNROUTABLE_CONFIG_ID << CONFIG_ROTATION_SHIFT) | (length - FIRST_OCTET_LENGTH);
      this.random.fill(out, offset + FIRST_OCTET_LENGTH, length - FIRST_OCTET_LENGTH);
      return length;
    }
    const nonce = s.nonce;
    if (s.plaintext) {
      this.random.fill(nonce, 0, nonce.length);
    }
    let low: number;
    if (s.selfEncodeLength) {
      low = length - FIRST_OCTET_LENGTH;
    } else {
      this.random.fill(this.octet, 0, 1);
      low = this.octet[0] & LENGTH_BITS_MASK;
    }
    out[offset] = s.firstOctetBase | low;
    s.codec.encode(s.serverId, nonce, out, offset + FIRST_OCTET_LENGTH);
    const blockEnd = offset + FIRST_OCTET_LENGTH + nonce.length + s.serverId.length;
    if (this.extraOctets > 0) this.random.fill(out, blockEnd, this.extraOctets);
    s.issued++;
    if (!s.plaintext) {
      // Big-endian counter increment, wrapping (draft-21 §9.6).
      for (let i = nonce.length - 1; i >= 0; i--) {
        nonce[i] = (nonce[i] + 1) & BYTE_MASK;
        if (nonce[i] !== 0) break;
      }
    }
    return length;
  }

  /** Mints the next CID (see generateInto). */
  generate(): Uint8Array {
    const out = new Uint8Array(this.connectionIdLengthForNext());
    this.generateInto(out, 0);
    return out;
  }

  private connectionIdLengthForNext(): number {
    const s = this.active;
    if (s !== null && s.issued >= s.limitNumber) this.exhaust(s);
    return this.connectionIdLength;
  }

  /**
   * Makes `configId` the active config. A server that got a new config MUST NOT mint CIDs with
   * the old one (draft-21 §3.1): listen for 'rotate' and re-issue CIDs with Retire Prior To.
   * @throws QuicLbError ERR_UNKNOWN_CONFIG | ERR_NONCE_LIMIT (that config has used its nonces)
   */
  setActiveConfig(configId: number): void {
    const slot = this.slotOf(configId);
    if (slot.exhausted) {
      throw new QuicLbError('ERR_NONCE_LIMIT', 'configId', `config ${configId} has used its nonces; give it a new key`);
    }
    this.switchTo(slot, 'manual');
  }

  /**
   * Adds a config (e.g. delivered by the config agent); `activate` makes it the active one.
   * @throws as the constructor for one entry.
   */
  addConfig(entry: EncoderConfigEntry, activate = false): void {
    const slot = this.makeSlot(entry);
    this.slots.push(slot);
    if (slot.cidLength > this.unroutableLength) this.unroutableLength = slot.cidLength;
    if (activate || this.active === null) this.switchTo(slot, 'added');
  }

  /** Removes a config; if it was active, moves to the next usable one (or 0b111). Returns whether it existed. */
  removeConfig(configId: number): boolean {
    const index = this.slots.findIndex((s) => s.config.configId === configId);
    if (index < 0) return false;
    const [slot] = this.slots.splice(index, 1);
    if (slot === this.active) this.switchTo(this.nextUsable(index), 'removed');
    return true;
  }

  private exhaust(slot: Slot): void {
    slot.exhausted = true;
    const index = this.slots.indexOf(slot);
    this.switchTo(this.nextUsable(index + 1), 'exhausted');
  }

  /** First non-exhausted slot at or after `start`, wrapping around; null if none. */
  private nextUsable(start: number): Slot | null {
    const n = this.slots.length;
    for (let i = 0; i < n; i++) {
      const s = this.slots[(start + i) % n];
      if (!s.exhausted && s !== this.active) return s;
    }
    return null;
  }

  private switchTo(slot: Slot | null, reason: RotationReason): void {
    const previous = this.active;
    if (previous === slot) return;
    this.active = slot;
    const event: RotationEvent = {
      previous: previous?.config,
      current: slot?.config,
      reason,
      connectionIdLength: this.connectionIdLength,
    };
    this.emit('rotate', event);
  }
}

/** The connection-ID generator shape QUIC stacks take (cf. quic-go's ConnectionIDGenerator). */
export interface CidGenerator {
  /** A fresh CID from the encoder. */
  generate(): Uint8Array;
  /** Length of the CIDs generate() returns now. */
  readonly length: number;
}

/** Adapts an encoder to the two-member generator interface. */
export function createCidGenerator(encoder: QuicLbEncoder): CidGenerator {
  return {
    generate: () => encoder.generate(),
    get length(): number {
      return encoder.connectionIdLength;
    },
  };
}
