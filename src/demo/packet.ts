// QUIC v1 packet protection around a header the caller built (RFC 9001 §5.3, §5.4) and
// packet-number recovery (RFC 9000 §A.3). The server always writes 4-octet packet numbers, so
// the header-protection sample starts right after them.
import { HP_SAMPLE_LEN, type PacketKeys } from './crypto.js';

/** Octets of the packet numbers the server writes (RFC 9000 §17.1 allows 1..4). */
export const PN_LEN = 4;
// RFC 9001 §5.4.1: header-protection masks of the first octet (long / short header).
const LONG_HP_MASK = 0x0f;
const SHORT_HP_MASK = 0x1f;
const LONG_HEADER_BIT = 0x80;

/** RFC 9000 §A.3: recovers a full packet number from its truncated encoding. */
export function decodePacketNumber(largest: number, truncated: number, bits: number): number {
  const expected = largest + 1;
  const win = 2 ** bits;
  const hwin = win / 2;
  const cand = Math.floor(expected / win) * win + truncated;
  if (cand <= expected - hwin && cand < 2 ** 62 - win) return cand + win;
  if (cand > expected + hwin && cand >= win) return cand - win;
  return cand;
}

export interface OpenedPacket {
  pn: number;
  /** The first octet with header protection removed. */
  first: number;
  payload: Buffer;
}

/** RFC 9000 §17.3.1: the Key Phase bit of a short header. */
export const KEY_PHASE_BIT = 0x04;

/**
 * Removes header protection and decrypts the packet at the start of `pkt` (which ends where the
 * packet ends). `pnOffset`: offset of the protected packet number. `largestPn`: largest packet
 * number received in this space (-1: none). Undefined when too short or authentication fails.
 */
export function openPacket(
  keys: PacketKeys,
  pkt: Buffer,
  pnOffset: number,
  largestPn: number,
  /** Picks the packet-protection keys from the unprotected first octet and the packet number (1-RTT key phase). */
  aead: (first: number, pn: number) => PacketKeys | undefined = () => keys,
): OpenedPacket | undefined {
  if (pnOffset + PN_LEN + HP_SAMPLE_LEN > pkt.length) return undefined;
  const mask = keys.mask(pkt.subarray(pnOffset + PN_LEN, pnOffset + PN_LEN + HP_SAMPLE_LEN));
  const first = pkt[0] ^ (mask[0] & (pkt[0] & LONG_HEADER_BIT ? LONG_HP_MASK : SHORT_HP_MASK));
  const pnLen = (first & 0x03) + 1;
  const header = Buffer.from(pkt.subarray(0, pnOffset + pnLen));
  header[0] = first;
  let truncated = 0;
  for (let i = 0; i < pnLen; i++) {
    header[pnOffset + i] ^= mask[1 + i];
    truncated = truncated * 256 + header[pnOffset + i];
  }
  const pn = decodePacketNumber(largestPn, truncated, pnLen * 8);
  const payload = aead(first, pn)?.open(pn, header, pkt.subarray(pnOffset + pnLen));
  return payload ? { pn, first, payload } : undefined;
}

/**
 * Seals a packet: `header` ends with the PN_LEN-octet packet number field at `pnOffset` (its
 * first octet's low bits already say PN_LEN); writes `pn`, encrypts `payload` (at least
 * 4 octets, so the sample fits) and applies header protection.
 */
export function sealPacket(keys: PacketKeys, header: Buffer, pnOffset: number, pn: number, payload: Buffer): Buffer {
  header.writeUInt32BE(pn >>> 0, pnOffset);
  const pkt = Buffer.concat([header, keys.seal(pn, header, payload)]);
  const mask = keys.mask(pkt.subarray(pnOffset + PN_LEN, pnOffset + PN_LEN + HP_SAMPLE_LEN));
  pkt[0] ^= mask[0] & (pkt[0] & LONG_HEADER_BIT ? LONG_HP_MASK : SHORT_HP_MASK);
  for (let i = 0; i < PN_LEN; i++) pkt[pnOffset + i] ^= mask[1 + i];
  return pkt;
}
