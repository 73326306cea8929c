// LB side: up to 7 live configs, indexed by the CID's config rotation codepoint (draft-21 §3.1, §5.5).

import { codecOf, type QuicLbConfig } from './config.js';
import type { Codec } from './codec.js';
import {
  CONFIG_ROTATION_CODEPOINTS,
  CONFIG_ROTATION_SHIFT,
  FIRST_OCTET_LENGTH,
  MAX_CONFIG_ID,
  TOO_SHORT,
  UNKNOWN_CONFIG,
  UNROUTABLE,
  UNROUTABLE_CONFIG_ID,
} from './constants.js';
import { QuicLbError } from './errors.js';

/** Mask for the 3 codepoint bits once shifted down. */
const MAX_CONFIG_ID_MASK = CONFIG_ROTATION_CODEPOINTS - 1;

/**
 * Reads server IDs out of connection IDs for a load balancer. The hot path, decode(), never
 * throws and never allocates; a CID it cannot route (draft-21 §4.1) gives a negative result that
 * says why: UNROUTABLE (codepoint 0b111), UNKNOWN_CONFIG (a codepoint with no config), TOO_SHORT.
 */
export class QuicLbDecoder {
  /** Codec per codepoint; slot 7 (0b111) is always null. */
  private readonly codecs: (Codec | null)[] = new Array<Codec | null>(CONFIG_ROTATION_CODEPOINTS).fill(null);
  /** Minimum CID length per codepoint (1 + plaintextLength); -1 where no config is set. */
  private readonly minLengths = new Int32Array(CONFIG_ROTATION_CODEPOINTS).fill(-1);
  private readonly configs: (QuicLbConfig | undefined)[] = new Array<QuicLbConfig | undefined>(
    CONFIG_ROTATION_CODEPOINTS,
  );

  constructor(configs: Iterable<QuicLbConfig> = []) {
    for (const c of configs) this.setConfig(c);
  }

  /**
   * Installs `config` on its codepoint, replacing any config there. Deliver new configs to LBs
   * before servers (draft-21 §3.1). @throws QuicLbError ERR_CONFIG for a foreign object.
   */
  setConfig(config: QuicLbConfig): void {
    const codec = codecOf(config);
    const id = config.configId;
    this.codecs[id] = codec;
    this.minLengths[id] = config.cidLength;
    this.configs[id] = config;
  }

  /** Removes the config on codepoint `configId`; returns whether one was there. */
  removeConfig(configId: number): boolean {
    if (!Number.isInteger(configId) || configId < 0 || configId > MAX_CONFIG_ID) {
      throw new QuicLbError('ERR_CONFIG_ID', 'configId', `configId must be an integer 0..${MAX_CONFIG_ID}`);
    }
    const had = this.codecs[configId] !== null;
    this.codecs[configId] = null;
    this.minLengths[configId] = -1;
    this.configs[configId] = undefined;
    return had;
  }

  /** The config on codepoint `configId`, if any. */
  getConfig(configId: number): QuicLbConfig | undefined {
    return this.configs[configId];
  }

  /** Every installed config, by ascending codepoint. */
  listConfigs(): QuicLbConfig[] {
    return this.configs.filter((c): c is QuicLbConfig => c !== undefined);
  }

  /**
   * Octets of CID a short-header packet must carry for the config its first octet names
   * (1 + serverIdLength + nonceLength), or -1 when that codepoint has no config (incl. 0b111).
   */
  cidLength(firstOctet: number): number {
    return this.minLengths[(firstOctet >>> CONFIG_ROTATION_SHIFT) & MAX_CONFIG_ID_MASK];
  }

  /**
   * Decodes the CID starting at buf[offset]. `available` is how many octets from offset may belong
   * to the CID (long header: DCID length; short header: rest of the datagram). Octets beyond the
   * config's cidLength are ignored (draft-21 §5.5). Returns the config ID (0..6) with the server ID
   * written to out[0 .. serverIdLength), or a negative result (out untouched): UNROUTABLE (the
   * codepoint is 0b111), UNKNOWN_CONFIG (no config on that codepoint) or TOO_SHORT (fewer than
   * cidLength octets; also no octet at all and NaN, fractional or negative arguments). One call
   * per CID answers both "which server" and "why not". Never throws, never allocates.
   */
  decode(buf: Uint8Array, offset: number, available: number, out: Uint8Array): number {
    const room = buf.length - offset;
    if (available > room) available = room;
    // Written so that NaN, fractional or negative arguments are TOO_SHORT too.
    if (!(available >= FIRST_OCTET_LENGTH) || (offset | 0) !== offset || offset < 0) return TOO_SHORT;
    const id = buf[offset] >>> CONFIG_ROTATION_SHIFT;
    const codec = this.codecs[id];
    if (codec === null) return id === UNROUTABLE_CONFIG_ID ? UNROUTABLE : UNKNOWN_CONFIG;
    if (available < this.minLengths[id]) return TOO_SHORT;
    codec.decode(buf, offset + FIRST_OCTET_LENGTH, out);
    return id;
  }
}
