// A fixed set of IP addresses matched against `rinfo.address` strings without allocation: the
// load balancers allowed to deliver encapsulated datagrams and health probes to a backend, the
// backends allowed to send to an LB's return port.
import { QuicWireError } from './errors.js';
import { parseIPv4Into, parseIPv6Into } from './ip.js';

/** Octets 0..11 of an IPv4-mapped IPv6 address, ::ffff:0:0/96 (RFC 4291 §2.5.5.2). */
const V4_MAPPED_PREFIX = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff);

/** True when octets 0..11 of `b` are the IPv4-mapped prefix. */
function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 12; i++) if (b[i] !== V4_MAPPED_PREFIX[i]) return false;
  return true;
}

/**
 * IPv4 and IPv6 addresses compared as octets, so `10.0.0.1` in the set matches a datagram a
 * dual-stack `[::]` socket reports from `::ffff:10.0.0.1` (and the reverse). Parsed once at
 * construction; `has()` never allocates and never throws.
 */
export class AddressSet {
  /** IPv4 members, 4 octets each (IPv4-mapped IPv6 members are stored here too). */
  private readonly v4: Uint8Array;
  /** Other IPv6 members, 16 octets each. */
  private readonly v6: Uint8Array;
  private readonly scratch = new Uint8Array(16);
  /** Number of distinct members. */
  readonly size: number;

  /** Throws QuicWireError ERR_ADDRESS_LITERAL (field `${field}[i]`) for an entry that is not an IP literal. */
  constructor(addresses: readonly string[], field: string) {
    const v4: number[][] = [];
    const v6: number[][] = [];
    const b = new Uint8Array(16);
    addresses.forEach((a, i) => {
      if (typeof a === 'string' && parseIPv4Into(a, b, 0)) v4.push([...b.subarray(0, 4)]);
      else if (typeof a === 'string' && parseIPv6Into(a, b, 0)) {
        if (isV4Mapped(b)) v4.push([...b.subarray(12, 16)]);
        else v6.push([...b]);
      } else
        throw new QuicWireError('ERR_ADDRESS_LITERAL', `expected an IP literal, got '${String(a)}'`, `${field}[${i}]`);
    });
    const uniq = (xs: number[][]): number[][] => [...new Map(xs.map((x) => [x.join('.'), x])).values()];
    const u4 = uniq(v4);
    const u6 = uniq(v6);
    this.v4 = Uint8Array.from(u4.flat());
    this.v6 = Uint8Array.from(u6.flat());
    this.size = u4.length + u6.length;
  }

  /** True when `address` (an IP literal as node:dgram reports it; a `%zone` is ignored) is a member. */
  has(address: string): boolean {
    const b = this.scratch;
    if (parseIPv4Into(address, b, 0)) return this.hasV4(b, 0);
    if (!parseIPv6Into(address, b, 0)) return false;
    if (isV4Mapped(b)) return this.hasV4(b, 12);
    const set = this.v6;
    for (let m = 0; m < set.length; m += 16) {
      let same = true;
      for (let i = 0; i < 16 && same; i++) same = set[m + i] === b[i];
      if (same) return true;
    }
    return false;
  }

  private hasV4(b: Uint8Array, at: number): boolean {
    const set = this.v4;
    for (let m = 0; m < set.length; m += 4) {
      if (set[m] === b[at] && set[m + 1] === b[at + 1] && set[m + 2] === b[at + 2] && set[m + 3] === b[at + 3])
        return true;
    }
    return false;
  }
}
