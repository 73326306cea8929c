// Network paths of the demo connection (RFC 9000 §8, §9): the paths a client used, path
// validation with PATH_CHALLENGE / PATH_RESPONSE, migration, and the anti-amplification budget
// of addresses not yet validated.
import { randomBytes, timingSafeEqual } from 'node:crypto';

/** Datagram size the server sends (RFC 9000 §14: every QUIC path carries 1200). */
export const MAX_DATAGRAM_SIZE = 1200;
/**
 * Octets the server may send to an address it has not validated, per octet received from it.
 * RFC 9000 §8.1 allows up to 3; this server uses 1, so a spoofed Initial is never amplified
 * (its whole first flight fits in one 1200-octet datagram, and a lost flight is resent when the
 * client's anti-deadlock probe, RFC 9002 §6.2.2.1, brings more budget).
 */
export const UNVALIDATED_SEND_FACTOR = 1;
/** Paths remembered per connection; the oldest one that is not in use goes first. */
const MAX_PATHS = 4;
/** PATH_CHALLENGE attempts before a path counts as failed (RFC 9000 §8.2.4). */
const PATH_CHALLENGE_TRIES = 5;
/** RFC 9000 §8.2.1: PATH_CHALLENGE data is 8 octets. */
export const PATH_DATA_LENGTH = 8;

/** The socket's handle for the local side of a path (compared by identity). */
export interface PathVia {
  readonly name: string;
}

/** A network path as the server sees it: the client's address plus the local side. */
export interface NetPath {
  address: string;
  port: number;
  via: PathVia;
}

export interface PathState extends NetPath {
  /** Path validation (RFC 9000 §8.2) completed: a PATH_RESPONSE echoed our challenge. */
  validated: boolean;
  /**
   * The peer address is validated (RFC 9000 §8): no anti-amplification limit. True once the path
   * is validated, and from the start for a new local address the client reaches from an address
   * already validated (the move to the preferred address keeps the client's address).
   */
  addressValidated: boolean;
  challenge?: Buffer;
  /** The challenge is to go out (again) in the next packet on this path (the current path). */
  challengeDue: boolean;
  challengeSentAt: number;
  challengeTries: number;
  bytesReceived: number;
  bytesSent: number;
}

const samePath = (a: NetPath, b: NetPath): boolean => a.port === b.port && a.via === b.via && a.address === b.address;

/** Octets `path` may still carry: unlimited once its address is validated, else the anti-amplification budget (RFC 9000 §8.1). */
export function sendBudget(path: PathState): number {
  return path.addressValidated ? Infinity : UNVALIDATED_SEND_FACTOR * path.bytesReceived - path.bytesSent;
}

/** The paths of one connection and the one it sends on (`current`). */
export class Paths {
  private readonly list: PathState[] = [];
  current: PathState;

  /** `validated`: the client's address is already proven (RFC 9000 §8.1.2: it came back with a valid Retry token). */
  constructor(first: NetPath, validated = false) {
    this.current = this.add(first);
    if (validated) this.validateCurrent();
  }

  /** The state of path `p`, created (and the oldest unused path forgotten) if new. */
  add(p: NetPath): PathState {
    const existing = this.list.find((q) => samePath(q, p));
    if (existing) return existing;
    const known = this.list.some((q) => q.addressValidated && q.address === p.address && q.port === p.port);
    const state: PathState = {
      address: p.address,
      port: p.port,
      via: p.via,
      validated: false,
      addressValidated: known,
      challengeDue: false,
      challengeSentAt: 0,
      challengeTries: 0,
      bytesReceived: 0,
      bytesSent: 0,
    };
    this.list.push(state);
    if (this.list.length > MAX_PATHS) {
      const victim = this.list.findIndex((q) => q !== this.current && q !== state);
      if (victim >= 0) this.list.splice(victim, 1);
    }
    return state;
  }

  /** RFC 9000 §8.1: a Handshake packet from the client validates its address. */
  validateCurrent(): void {
    this.current.validated = true;
    this.current.addressValidated = true;
  }

  /**
   * The challenge to send with a PATH_RESPONSE on `path` when it is not validated yet (RFC 9000
   * §8.2, §9.6.2: validate the new path in the same datagram), else undefined.
   */
  challengeWithResponse(path: PathState, now: number): Buffer | undefined {
    if (path.validated) return undefined;
    if (!path.challenge) path.challenge = randomBytes(PATH_DATA_LENGTH);
    path.challengeSentAt = now;
    path.challengeTries++;
    return path.challenge;
  }

  /** PATH_RESPONSE (RFC 9000 §8.2.2): the path whose challenge it echoes is now validated, else undefined. */
  onResponse(data: Buffer): PathState | undefined {
    for (const p of this.list) {
      if (p.challenge && timingSafeEqual(p.challenge, data)) {
        p.validated = true;
        p.addressValidated = true;
        p.challenge = undefined;
        return p;
      }
    }
    return undefined;
  }

  /**
   * Makes `p` the current path (RFC 9000 §9.3) and, when it is not validated, queues a challenge
   * on it: it rides in the next packet on the path, ahead of stream data, so the
   * anti-amplification budget never starves it. Returns the path left.
   */
  migrateTo(p: PathState): PathState {
    const from = this.current;
    this.current = p;
    if (!p.validated && !p.challenge) {
      p.challenge = randomBytes(PATH_DATA_LENGTH);
      p.challengeDue = true;
      p.challengeTries = 1;
    }
    return from;
  }

  /**
   * Path validation retries (RFC 9000 §8.2.4): a challenge unanswered for `timeout` ms is sent
   * again (`probe` for a path other than the current one; the current one's rides in its next
   * packet), up to PATH_CHALLENGE_TRIES; then the path failed (`failed`; a failed current path
   * falls back to the last validated one, RFC 9000 §9.3.2).
   */
  retryChallenges(
    now: number,
    timeout: number,
    probe: (p: PathState, challenge: Buffer) => void,
    failed: (p: PathState, revertedTo: PathState | undefined) => void,
  ): void {
    for (const p of this.list) {
      if (!p.challenge || p.validated || p.challengeDue || now - p.challengeSentAt <= timeout) continue;
      if (p.challengeTries >= PATH_CHALLENGE_TRIES) {
        p.challenge = undefined;
        const fallback = p === this.current ? this.list.find((q) => q !== p && q.validated) : undefined;
        if (fallback) this.current = fallback;
        failed(p, fallback);
        continue;
      }
      p.challengeTries++;
      if (p === this.current) {
        p.challengeDue = true;
      } else {
        p.challengeSentAt = now;
        probe(p, p.challenge);
      }
    }
  }
}
