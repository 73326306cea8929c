// The demo server's answers that need no connection: stateless resets for short-header packets
// with an unknown CID (RFC 9000 §10.3) and Version Negotiation (RFC 9000 §17.2.1). Both are
// smaller than the datagram that triggered them, so neither amplifies a spoofed source.
import { randomBytes } from 'node:crypto';
import type { PacketHeader } from '../wire/index.js';
import type { NetPath } from './paths.js';

/** RFC 9000 §10.3: a stateless reset is at least 21 octets and shorter than what triggered it. */
const MIN_STATELESS_RESET = 21;
const STATELESS_RESET_SIZE = 42;
const RESETS_PER_SECOND = 100;

/** What the stateless answers need from the server. */
export interface StatelessHost {
  now(): number;
  send(datagram: Buffer, path: NetPath): void;
  /** Length of a CID this server issued, from its first octet (-1 if unknown). */
  cidLength(firstOctet: number): number;
  /** RFC 9000 §10.3.2 token of `cid`. */
  resetToken(cid: Uint8Array): Uint8Array;
  event(name: string, fields: Record<string, unknown>): void;
  readonly stats: { statelessResets: number; versionNegotiations: number };
}

export class StatelessReplies {
  private resetWindowStart = 0;
  private resetsInWindow = 0;

  constructor(private readonly host: StatelessHost) {}

  /** RFC 9000 §10.3: reply to a packet for an unknown CID so the client stops quickly (at most RESETS_PER_SECOND). */
  maybeStatelessReset(buf: Buffer, path: NetPath): void {
    const len = this.host.cidLength(buf[1]);
    if (len <= 0 || buf.length < 1 + len) return;
    const size = Math.min(buf.length - 1, STATELESS_RESET_SIZE);
    if (size < MIN_STATELESS_RESET) return; // never loop with another endpoint's reset
    const now = this.host.now();
    if (now - this.resetWindowStart > 1000) {
      this.resetWindowStart = now;
      this.resetsInWindow = 0;
    }
    if (++this.resetsInWindow > RESETS_PER_SECOND) return;
    const out = randomBytes(size);
    out[0] = 0x40 | (out[0] & 0x3f); // looks like a short header: 0b01xxxxxx
    out.set(this.host.resetToken(buf.subarray(1, 1 + len)), size - 16);
    this.host.stats.statelessResets++;
    this.host.send(out, path);
    this.host.event('stateless-reset', {
      cid: buf.toString('hex', 1, 1 + len),
      client: `${path.address}:${path.port}`,
      via: path.via.name,
    });
  }

  /** RFC 9000 §17.2.1: Version Negotiation listing QUIC v1. */
  sendVersionNegotiation(buf: Buffer, h: PacketHeader, path: NetPath): void {
    const dcid = buf.subarray(h.scidOffset, h.scidOffset + h.scidLength);
    const scid = buf.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength);
    const out = Buffer.concat([
      Buffer.of(0x80 | 0x40),
      Buffer.alloc(4),
      Buffer.of(dcid.length),
      dcid,
      Buffer.of(scid.length),
      scid,
      Buffer.of(0, 0, 0, 1),
    ]);
    this.host.stats.versionNegotiations++;
    this.host.send(out, path);
  }
}
