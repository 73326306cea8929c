// Which client Initials open a connection at the demo server, and with which handshake CIDs.
// Behind a load balancer doing Retry offload (draft-ietf-quic-retry-offload-00 §4) the client's
// Initial carries the LB's token and a DCID the LB chose (the Retry's SCID): the server opens
// the token with the shared keys (quic-lb-ts/backend RetryTokenValidator) to learn the client's
// original DCID, which it must echo in its transport parameters (RFC 9000 §7.3). The demo never
// sends a Retry itself: that is the LB's job for every version it offloads.
import {
  MIN_CLIENT_INITIAL_DCID_LENGTH,
  MIN_INITIAL_DATAGRAM_SIZE,
  PacketType,
  type PacketHeader,
} from '../wire/index.js';
import { isNewTokenToken, type RetryTokenValidator } from '../backend/index.js';
import type { HandshakeCids } from './handshake.js';
import type { NetPath } from './paths.js';

/** Refused-token events written per second at most (every refusal is counted regardless). */
const REFUSAL_EVENTS_PER_SECOND = 10;

/** What admission needs from the server. */
export interface AdmissionHost {
  now(): number;
  event(name: string, fields: Record<string, unknown>): void;
}

/** `admit` results other than a connection: not an opening Initial (skip the packet) / a refused token (drop the datagram). */
export const SKIP = 'skip';
export const REFUSED = 'refused';

export class InitialAdmission {
  /** Datagrams dropped for a Retry token that did not open (also counted by result in the validator's stats). */
  refused = 0;
  private windowStart = -Infinity;
  private eventsInWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly host: AdmissionHost,
    /** Opens the LB's Retry tokens; without it tokens are ignored (no LB Retry in front). */
    public validator?: RetryTokenValidator,
    /** Whether a CID decodes to this server (DemoServerOptions.ownsCid). */
    private readonly ownsCid?: (cid: Uint8Array) => boolean,
  ) {}

  /**
   * For a long-header packet `buf` (parsed into `h`) whose DCID names no connection: the
   * handshake CIDs of the connection it opens, SKIP when it cannot open one (not an Initial, a
   * datagram under 1200 octets (RFC 9000 §14.1), a DCID under 8 octets without a Retry token
   * (§7.2)), REFUSED when it carries a Retry token (type 0) that does not open: invalid, expired,
   * another client address or port, an unknown key sequence; or, with a validator, when it has no
   * Retry token but a DCID of this server's own. Otherwise (no token, a NEW_TOKEN one (type 1)):
   * a connection as without an LB. Never throws.
   */
  admit(
    buf: Buffer,
    h: PacketHeader,
    tokenOffset: number,
    tokenLength: number,
    datagramSize: number,
    path: NetPath,
  ): HandshakeCids | typeof SKIP | typeof REFUSED {
    if (h.packetType !== PacketType.INITIAL || datagramSize < MIN_INITIAL_DATAGRAM_SIZE) return SKIP;
    const dcid = buf.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength);
    if (this.validator && tokenLength > 0) {
      const v = this.validator.validate(buf, tokenOffset, tokenLength, path.address, path.port, dcid);
      if (v.ok) {
        // After a Retry the DCID is the Retry's SCID, which may be shorter than 8 (§7.2 binds
        // only the first Initial); an empty one could not tell connections apart.
        if (h.dcidLength === 0) return SKIP;
        return { initialDcid: v.rscid, originalDcid: v.odcid, retrySourceCid: v.rscid, retryKeySequence: v.sequence };
      }
      if (!isNewTokenToken(v)) {
        this.refuse(v.reason, path);
        return REFUSED;
      }
    }
    // A client's first DCID is random (RFC 9000 §7.2): one that names this server is a CID it
    // (or an LB's Retry for it) handed out, which the LB forwards without opening a token (its
    // docs/retry.md "Routed DCIDs"). Without a valid token such an Initial is a replay of a
    // learnt CID (spoofed sources flooding one backend), or chance (about 2^-(8 x server ID length)).
    if (this.validator && this.ownsCid?.(dcid)) {
      this.refuse('missing', path);
      return REFUSED;
    }
    if (h.dcidLength < MIN_CLIENT_INITIAL_DCID_LENGTH) return SKIP;
    const initialDcid = Buffer.from(dcid);
    return { initialDcid, originalDcid: initialDcid };
  }

  /** Counts a refusal; logs it unless more than REFUSAL_EVENTS_PER_SECOND came this second (a forged-token flood must not become a disk flood). */
  private refuse(reason: string, path: NetPath): void {
    this.refused++;
    const now = this.host.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.eventsInWindow = 0;
    }
    if (++this.eventsInWindow > REFUSAL_EVENTS_PER_SECOND) {
      this.suppressed++;
      return;
    }
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.host.event('error', {
      code: 'retry-token',
      reason,
      client: `${path.address}:${path.port}`,
      via: path.via.name,
      ...(suppressed > 0 ? { suppressed } : {}),
    });
  }
}
