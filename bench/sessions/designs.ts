// The designs the session benchmark compares: each is a forwarding tier (a router of the routing
// benchmark, bench/harness/routers.ts) and what the clients do after the handshake.
import { nginxRouter, quicLbRouter, redisRouter, type Algorithm, type RouterSpec } from '../harness/routers.js';

export interface Design {
  id: string;
  label: string;
  /** The forwarding tier; none for the direct path (clients talk to their backend only). */
  router?: RouterSpec;
  /**
   * After the handshake the client sends to its backend's own address (it took the server's
   * preferred_address, RFC 9000 §9.6 / §18.2): the tier carries only the handshake.
   */
  preferredAddress: boolean;
}

/** CID scheme of the quic-lb designs: four-pass AES (draft-21 §5.4.2), an encrypted 9-octet CID. */
export const SESSION_SCHEME: Algorithm = 'four-pass';

export function allDesigns(): Design[] {
  const quicLb = quicLbRouter(SESSION_SCHEME);
  return [
    { id: 'direct', label: 'direct path (no tier)', preferredAddress: true },
    {
      id: 'quic-lb-preferred',
      label: 'quic-lb, clients take preferred_address',
      router: quicLb,
      preferredAddress: true,
    },
    { id: 'quic-lb-vip', label: 'quic-lb, clients stay on the VIP', router: quicLb, preferredAddress: false },
    {
      id: 'redis-per-packet',
      label: 'Redis-mapped, lookup per packet',
      router: redisRouter('per-packet'),
      preferredAddress: false,
    },
    { id: 'redis-cache', label: 'Redis-mapped, local cache', router: redisRouter('cache'), preferredAddress: false },
    { id: 'nginx', label: 'nginx stream UDP proxy', router: nginxRouter(), preferredAddress: false },
  ];
}
