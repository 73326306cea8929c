/**
 * QUIC header invariants parser (RFC 8999), with v1/v2 knowledge for packet types and CID limits.
 *
 *   long:  1 | 7 version-specific bits | Version(32) | DCIL(8) | DCID(0..255 octets) | SCIL(8) | SCID | ...
 *   short: 0 | 7 version-specific bits | DCID (length implied by the receiver's config) | ...
 *
 * Allocation-free: results go into a caller-owned {@link PacketHeader}, offsets only, no
 * `subarray` views. Coalesced datagrams are routed on their first packet (RFC 9000 §12.2: all
 * packets of a datagram share one DCID), so only the first header is parsed.
 */
import { HEADER_FORM_BIT, PacketType, QUIC_V1, QUIC_V2, packetTypeOf } from './version.js';

/** RFC 8999 §5.1: offset of the 32-bit version in a long header. */
export const LONG_HEADER_VERSION_OFFSET = 1;
/** RFC 8999 §5.1: offset of the DCID length octet in a long header. */
export const LONG_HEADER_DCID_LENGTH_OFFSET = 5;
/** RFC 8999 §5.1: offset of the DCID in a long header. */
export const LONG_HEADER_DCID_OFFSET = 6;
/** RFC 8999 §5.2: offset of the DCID in a short header. */
export const SHORT_HEADER_DCID_OFFSET = 1;
/** RFC 9000 §17.2 / RFC 9369: CID lengths above 20 are invalid in v1 and v2. */
export const MAX_CID_LENGTH = 20;
/** RFC 8999 §5.1: the invariants allow CID lengths up to 255 for other versions. */
export const MAX_CID_LENGTH_INVARIANT = 255;
/** RFC 9000 §14.1: minimum UDP payload of a datagram carrying a client Initial. */
export const MIN_INITIAL_DATAGRAM_SIZE = 1200;
/** RFC 9000 §7.2: minimum length of the client's first Destination Connection ID. */
export const MIN_CLIENT_INITIAL_DCID_LENGTH = 8;

/** Header form values of {@link PacketHeader.form}. */
export const HeaderForm = { SHORT: 0, LONG: 1 } as const;
export type HeaderForm = (typeof HeaderForm)[keyof typeof HeaderForm];

/**
 * Reusable parse result; allocate once (`new PacketHeader()`) and pass to every `parseHeader`.
 * After a successful parse:
 * - long header: `version`, `dcidOffset` (6), `dcidLength`, `scidOffset`, `scidLength`,
 *   `payloadOffset` (first octet after the SCID), `packetType`;
 * - short header: `version` 0 (not on the wire), `dcidOffset` 1, `dcidLength` -1 (implied by
 *   config), `scidOffset` and `scidLength` -1, `payloadOffset` 1, `packetType` ONE_RTT.
 */
export class PacketHeader {
  form: HeaderForm = HeaderForm.SHORT;
  version = 0;
  dcidOffset = -1;
  dcidLength = -1;
  scidOffset = -1;
  scidLength = -1;
  payloadOffset = -1;
  packetType: PacketType = PacketType.ONE_RTT;
}

/**
 * Parses the invariant header fields of the first packet of `buf` into `out`.
 * Returns false (out then undefined) when: the buffer is empty; a long header is truncated
 * before the end of its SCID; a v1/v2 long header has a CID length above 20. Unknown versions
 * accept CID lengths up to 255 (they must still be forwarded). The fixed bit is not checked
 * (RFC 9287 greasing, Version Negotiation). Never throws, never allocates.
 */
export function parseHeader(buf: Uint8Array, out: PacketHeader): boolean {
  const n = buf.length;
  if (n < 1) return false;
  const first = buf[0];
  if ((first & HEADER_FORM_BIT) === 0) {
    out.form = HeaderForm.SHORT;
    out.version = 0;
    out.dcidOffset = SHORT_HEADER_DCID_OFFSET;
    out.dcidLength = -1;
    out.scidOffset = -1;
    out.scidLength = -1;
    out.payloadOffset = SHORT_HEADER_DCID_OFFSET;
    out.packetType = PacketType.ONE_RTT;
    return true;
  }
  if (n < LONG_HEADER_DCID_OFFSET) return false;
  // >>> 0 keeps the version unsigned (0x80000000 and above).
  const version = ((buf[1] << 24) | (buf[2] << 16) | (buf[3] << 8) | buf[4]) >>> 0;
  const dcil = buf[LONG_HEADER_DCID_LENGTH_OFFSET];
  const scilOffset = LONG_HEADER_DCID_OFFSET + dcil;
  if (scilOffset >= n) return false;
  const scil = buf[scilOffset];
  const end = scilOffset + 1 + scil;
  if (end > n) return false;
  if ((version === QUIC_V1 || version === QUIC_V2) && (dcil > MAX_CID_LENGTH || scil > MAX_CID_LENGTH)) {
    return false;
  }
  out.form = HeaderForm.LONG;
  out.version = version;
  out.dcidOffset = LONG_HEADER_DCID_OFFSET;
  out.dcidLength = dcil;
  out.scidOffset = scilOffset + 1;
  out.scidLength = scil;
  out.payloadOffset = end;
  out.packetType = packetTypeOf(version, first);
  return true;
}
