// Endpoints: an IP literal and a UDP port, as config files, the LB and the backend kit name them.
// Per-packet address parsing is the allocation-free parseIPv4Into/parseIPv6Into (ip.ts).
import net from 'node:net';

/** An IP literal (never a host name) and a UDP port. */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/** An Endpoint read from text by parseEndpoint: the literal in canonical form and its family. */
export interface ParsedEndpoint extends Endpoint {
  readonly family: 4 | 6;
}

/**
 * Parses `a.b.c.d:port` or `[v6]:port` into a ParsedEndpoint, or returns undefined. Port 0 is
 * accepted only when `allowZero` (listen sockets that let the kernel choose).
 */
export function parseEndpoint(text: string, allowZero = false): ParsedEndpoint | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return undefined;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return undefined; // bare IPv6 needs brackets
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowZero)) return undefined;
  const family = net.isIP(host);
  if (family !== 4 && family !== 6) return undefined;
  return { address: normaliseIp(host, family), port, family };
}

/** Canonical text form of an IP literal (so `::0001` and `::1` compare equal). */
export function normaliseIp(host: string, family: 4 | 6): string {
  return new net.SocketAddress({ address: host, family: family === 4 ? 'ipv4' : 'ipv6' }).address;
}

/** `a.b.c.d:port` / `[v6]:port`. */
export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}
