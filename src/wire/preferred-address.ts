/**
 * The preferred_address transport parameter (RFC 9000 §18.2, id 0x0d):
 *
 *   IPv4 Address (32) | IPv4 Port (16) | IPv6 Address (128) | IPv6 Port (16) |
 *   Connection ID Length (8) | Connection ID (8..160) | Stateless Reset Token (128)
 *
 * Exactly 41 + L octets. An absent family is sent as the all-zero address and port. The CID
 * must not be empty (a client MUST treat that as TRANSPORT_PARAMETER_ERROR) and, under QUIC-LB,
 * must be a routable CID on every path: RFC 9000 §9.6.3 lets a client use it on any path, the
 * load-balanced VIP included.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { QuicWireError } from './errors.js';
import { formatIPv4, formatIPv6, parseIPv4Into, parseIPv6Into } from './ip.js';
import { MAX_CID_LENGTH } from './header.js';
import type { Endpoint } from './endpoint.js';

/** RFC 9000 §18.2: octets before the CID (4 + 2 + 16 + 2 + 1). */
export const PREFERRED_ADDRESS_FIXED_PREFIX = 25;
/** RFC 9000 §18.2: total size without the CID = 41. */
export const PREFERRED_ADDRESS_MIN_LENGTH_WITHOUT_CID = 41;
/** RFC 9000 §10.3: stateless reset token length. */
export const STATELESS_RESET_TOKEN_LENGTH = 16;

const V4_ADDR = 0;
const V4_PORT = 4;
const V6_ADDR = 6;
const V6_PORT = 22;
const CID_LEN = 24;

/** Decoded / to-be-encoded preferred_address. At least one family when encoding. */
export interface PreferredAddress {
  ipv4?: Endpoint;
  ipv6?: Endpoint;
  /** 1..20 octets; sequence number 1 (RFC 9000 §5.1.1). */
  connectionId: Uint8Array;
  /** 16 octets. */
  statelessResetToken: Uint8Array;
}

function checkPort(port: unknown, field: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new QuicWireError('ERR_PREFERRED_ADDRESS_PORT', `${field} must be an integer in 0..65535`, field);
  }
  return port;
}

/** Encoded size of a preferred_address whose CID has `cidLength` octets: 41 + cidLength. */
export function preferredAddressLength(cidLength: number): number {
  return PREFERRED_ADDRESS_MIN_LENGTH_WITHOUT_CID + cidLength;
}

/**
 * Encodes `pa` (41 + CID length octets). Throws QuicWireError:
 * ERR_PREFERRED_ADDRESS_NO_ADDRESS (neither family), ERR_PREFERRED_ADDRESS_ADDRESS (field
 * `ipv4.address` / `ipv6.address` not a literal of that family), ERR_PREFERRED_ADDRESS_PORT,
 * ERR_PREFERRED_ADDRESS_CID_EMPTY, ERR_PREFERRED_ADDRESS_CID_LENGTH, ERR_PREFERRED_ADDRESS_TOKEN.
 */
export function encodePreferredAddress(pa: PreferredAddress): Buffer {
  const cid = pa.connectionId;
  const token = pa.statelessResetToken;
  if (!(cid instanceof Uint8Array) || cid.length === 0) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_CID_EMPTY',
      'preferred_address connection ID must not be empty',
      'connectionId',
    );
  }
  if (cid.length > MAX_CID_LENGTH) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_CID_LENGTH',
      `preferred_address connection ID has ${cid.length} octets (max 20)`,
      'connectionId',
    );
  }
  if (!(token instanceof Uint8Array) || token.length !== STATELESS_RESET_TOKEN_LENGTH) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_TOKEN',
      'stateless reset token must be 16 octets',
      'statelessResetToken',
    );
  }
  if (pa.ipv4 === undefined && pa.ipv6 === undefined) {
    throw new QuicWireError('ERR_PREFERRED_ADDRESS_NO_ADDRESS', 'preferred_address needs ipv4 or ipv6', 'ipv4');
  }
  const out = Buffer.alloc(preferredAddressLength(cid.length));
  if (pa.ipv4 !== undefined) {
    const { address } = pa.ipv4;
    if (typeof address !== 'string' || !isIPv4(address) || !parseIPv4Into(address, out, V4_ADDR)) {
      throw new QuicWireError(
        'ERR_PREFERRED_ADDRESS_ADDRESS',
        `ipv4.address ${String(address)} is not an IPv4 literal`,
        'ipv4.address',
      );
    }
    out.writeUInt16BE(checkPort(pa.ipv4.port, 'ipv4.port'), V4_PORT);
  }
  if (pa.ipv6 !== undefined) {
    const { address } = pa.ipv6;
    if (
      typeof address !== 'string' ||
      !isIPv6(address) ||
      address.includes('%') ||
      !parseIPv6Into(address, out, V6_ADDR)
    ) {
      throw new QuicWireError(
        'ERR_PREFERRED_ADDRESS_ADDRESS',
        `ipv6.address ${String(address)} is not an IPv6 literal`,
        'ipv6.address',
      );
    }
    out.writeUInt16BE(checkPort(pa.ipv6.port, 'ipv6.port'), V6_PORT);
  }
  out[CID_LEN] = cid.length;
  out.set(cid, CID_LEN + 1);
  out.set(token, CID_LEN + 1 + cid.length);
  return out;
}

function allZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Decodes a preferred_address value (the transport parameter's value, without id and length).
 * A family whose address and port are all zero is reported absent (undefined); if both are
 * absent the result has neither (RFC 9000 does not forbid it; the caller decides).
 * The CID and token are copies. Throws QuicWireError: ERR_PREFERRED_ADDRESS_TRUNCATED,
 * ERR_PREFERRED_ADDRESS_LENGTH (not exactly 41 + L), ERR_PREFERRED_ADDRESS_CID_EMPTY,
 * ERR_PREFERRED_ADDRESS_CID_LENGTH.
 */
export function decodePreferredAddress(buf: Uint8Array): PreferredAddress {
  if (buf.length < PREFERRED_ADDRESS_FIXED_PREFIX) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_TRUNCATED',
      `preferred_address has ${buf.length} octets, needs at least 41`,
      'preferred_address',
    );
  }
  const cidLength = buf[CID_LEN];
  if (cidLength === 0) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_CID_EMPTY',
      'preferred_address connection ID is empty',
      'connectionId',
    );
  }
  if (cidLength > MAX_CID_LENGTH) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_CID_LENGTH',
      `preferred_address connection ID length ${cidLength} > 20`,
      'connectionId',
    );
  }
  const expected = preferredAddressLength(cidLength);
  if (buf.length < expected) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_TRUNCATED',
      `preferred_address has ${buf.length} octets, needs ${expected}`,
      'preferred_address',
    );
  }
  if (buf.length > expected) {
    throw new QuicWireError(
      'ERR_PREFERRED_ADDRESS_LENGTH',
      `preferred_address has ${buf.length} octets, expected exactly ${expected}`,
      'preferred_address',
    );
  }
  const pa: PreferredAddress = {
    connectionId: Uint8Array.prototype.slice.call(buf, CID_LEN + 1, CID_LEN + 1 + cidLength),
    statelessResetToken: Uint8Array.prototype.slice.call(buf, CID_LEN + 1 + cidLength, expected),
  };
  const port4 = (buf[V4_PORT] << 8) | buf[V4_PORT + 1];
  if (port4 !== 0 || !allZero(buf, V4_ADDR, V4_ADDR + 4)) {
    pa.ipv4 = { address: formatIPv4(buf, V4_ADDR), port: port4 };
  }
  const port6 = (buf[V6_PORT] << 8) | buf[V6_PORT + 1];
  if (port6 !== 0 || !allZero(buf, V6_ADDR, V6_ADDR + 16)) {
    pa.ipv6 = { address: formatIPv6(buf, V6_ADDR), port: port6 };
  }
  return pa;
}
