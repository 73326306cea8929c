// preferred_address (RFC 9000 §18.2, §9.6) for a backend behind the LB: the backend's own
// unicast address(es), a CID minted by the QUIC-LB encoder (sequence number 1; routable at the
// LB too, since a client may use it on any path, RFC 9000 §9.6.3) and that CID's reset token.
import { isIPv4, isIPv6 } from 'node:net';
import { encodePreferredAddress, type Endpoint, type PreferredAddress } from '../wire/index.js';
import { BackendError } from './errors.js';
import type { BackendCids } from './cids.js';

export interface PreferredAddressInput {
  /** The backend's unicast IPv4 address and port (what clients move to). */
  ipv4?: Endpoint;
  ipv6?: Endpoint;
  /** Mints the CID and its token (see createBackendCids). */
  cids: Pick<BackendCids, 'generate' | 'resetToken'>;
}

/** The transport parameter value and its parts; register `connectionId` with your stack as CID seq 1. */
export interface BuiltPreferredAddress {
  preferredAddress: PreferredAddress;
  /** Encoded value of transport parameter 0x0d. */
  encoded: Buffer;
}

/**
 * Builds a preferred_address. Throws BackendError ERR_BACKEND_ADDRESS (no address, or an
 * address of the wrong family) and the QuicWireError codes of encodePreferredAddress.
 */
export function buildPreferredAddress(input: PreferredAddressInput): BuiltPreferredAddress {
  const { ipv4, ipv6 } = input;
  if (!ipv4 && !ipv6) throw new BackendError('ERR_BACKEND_ADDRESS', 'ipv4', 'give ipv4 and/or ipv6');
  if (ipv4 && !isIPv4(ipv4.address))
    throw new BackendError('ERR_BACKEND_ADDRESS', 'ipv4.address', `${ipv4.address} is not an IPv4 literal`);
  if (ipv6 && !isIPv6(ipv6.address))
    throw new BackendError('ERR_BACKEND_ADDRESS', 'ipv6.address', `${ipv6.address} is not an IPv6 literal`);
  const connectionId = input.cids.generate();
  const preferredAddress: PreferredAddress = {
    ipv4,
    ipv6,
    connectionId,
    statelessResetToken: input.cids.resetToken(connectionId),
  };
  return { preferredAddress, encoded: encodePreferredAddress(preferredAddress) };
}
