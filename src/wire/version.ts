/**
 * QUIC versions and long-header packet types, normalised across QUIC v1 (RFC 9000) and
 * QUIC v2 (RFC 9369).
 */

/** QUIC version 1 (RFC 9000 §15). */
export const QUIC_V1 = 0x00000001;
/** QUIC version 2 (RFC 9369 §3.1). */
export const QUIC_V2 = 0x6b3343cf;
/** Provisional codepoint used by QUIC v2 drafts (RFC 9369 §3.1 notes it); treated as unknown. */
export const QUIC_V2_DRAFT = 0x709a50c4;
/** Version 0 marks a Version Negotiation packet (RFC 9000 §17.2.1, RFC 8999 §6). */
export const VERSION_NEGOTIATION = 0x00000000;

/**
 * Packet types, normalised across versions. Long-header types are only known for v1 and v2;
 * other versions give `UNKNOWN_VERSION_LONG` (RFC 8999: only the invariants are version-independent).
 */
export const PacketType = {
  INITIAL: 0,
  ZERO_RTT: 1,
  HANDSHAKE: 2,
  RETRY: 3,
  VERSION_NEGOTIATION: 4,
  /** Short header (RFC 8999 §5.2); for v1/v2 a 1-RTT packet. */
  ONE_RTT: 5,
  /** Long header of a version this code does not know: route it on the invariants alone. */
  UNKNOWN_VERSION_LONG: 6,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** Names of {@link PacketType} values, indexable by the value (for logs and counters). */
export const PACKET_TYPE_NAMES: readonly string[] = [
  'initial',
  '0rtt',
  'handshake',
  'retry',
  'version_negotiation',
  '1rtt',
  'unknown_version_long',
];

/** RFC 8999 §5.1: header form bit of the first octet (1 = long header). */
export const HEADER_FORM_BIT = 0x80;
/** RFC 9000 §17.2: the fixed bit (v1/v2 only; not an invariant, do not filter on it). */
export const FIXED_BIT = 0x40;
/** RFC 9000 §17.2: long packet type bits of the first octet (v1 and v2). */
export const LONG_PACKET_TYPE_MASK = 0x30;
export const LONG_PACKET_TYPE_SHIFT = 4;

// Wire type bits -> PacketType. RFC 9000 §17.2 table 5: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry.
const V1_TYPES: readonly PacketType[] = [
  PacketType.INITIAL,
  PacketType.ZERO_RTT,
  PacketType.HANDSHAKE,
  PacketType.RETRY,
];
// RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
const V2_TYPES: readonly PacketType[] = [
  PacketType.RETRY,
  PacketType.INITIAL,
  PacketType.ZERO_RTT,
  PacketType.HANDSHAKE,
];

/** True for the versions whose long-header types this module knows (v1, v2). */
export function isKnownVersion(version: number): boolean {
  return version === QUIC_V1 || version === QUIC_V2;
}

/** True for reserved "greasing" versions 0x?a?a?a?a (RFC 9000 §15). */
export function isReservedVersion(version: number): boolean {
  return (version & 0x0f0f0f0f) === 0x0a0a0a0a;
}

/**
 * Normalised packet type of a packet with this first octet and version.
 * Short header -> ONE_RTT; version 0 -> VERSION_NEGOTIATION; v1/v2 long header -> its type;
 * other versions -> UNKNOWN_VERSION_LONG. Never throws.
 */
export function packetTypeOf(version: number, firstByte: number): PacketType {
  if ((firstByte & HEADER_FORM_BIT) === 0) return PacketType.ONE_RTT;
  if (version === VERSION_NEGOTIATION) return PacketType.VERSION_NEGOTIATION;
  const bits = (firstByte & LONG_PACKET_TYPE_MASK) >> LONG_PACKET_TYPE_SHIFT;
  if (version === QUIC_V1) return V1_TYPES[bits];
  if (version === QUIC_V2) return V2_TYPES[bits];
  return PacketType.UNKNOWN_VERSION_LONG;
}

/**
 * True when a packet with this version and first octet is an Initial: long header and type bits
 * 0b00 under v1, 0b01 under v2 (RFC 9369 §3.2). False for every other version.
 */
export function isInitial(version: number, firstByte: number): boolean {
  return packetTypeOf(version, firstByte) === PacketType.INITIAL;
}

/** Wire type bits (0..3) for `type` under `version` (v1 or v2), or -1 if not a long-header type there. */
export function longPacketTypeBits(version: number, type: PacketType): number {
  const table = version === QUIC_V1 ? V1_TYPES : version === QUIC_V2 ? V2_TYPES : undefined;
  if (table === undefined) return -1;
  return table.indexOf(type);
}
