// Hostile source ports and address floods at the VIP and the return port (issue 10, finding 1):
// datagrams from UDP source ports 0, 1 and 65535, short and long headers, HMAC off and on, one
// and two workers; thousands of source addresses. Each case asserts (harness.ts `blast`): every
// process up, no amplification toward the spoofed sources, every datagram counted.
import { beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ProxyDirection } from '../../src/wire/proxy-v2.js';
import { QUIC_LB_KEYS, ROOT, VICTIM, blast, startHostile, useHostile, type LbOptions } from './harness.js';
import {
  captureInitial,
  longHeader,
  mintedCid,
  proxyForgeries,
  resealInitial,
  shortHeader,
  unknownVersion,
} from './payloads.js';

const PORTS = [0, 1, 65535] as const;
/** Per case: datagrams and rate (bounded: the whole file stays well under a minute per variant). */
const COUNT = 200;
const RATE = 1000;

let initial: Buffer;
beforeAll(async () => {
  if (!ROOT) throw new Error('test:hostile needs root (network namespaces, raw sockets); CI runs it as root');
  initial = await captureInitial();
});

/** Short headers: random (unroutable, fallback) CIDs and CIDs minted for be1 (routed). */
function shortHeaders(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) =>
    i % 2 === 0
      ? shortHeader(randomBytes(8), 40 + (i % 200))
      : shortHeader(mintedCid(0, QUIC_LB_KEYS[0], Uint8Array.of(0, 1)), 40 + (i % 200)),
  );
}

/** Long headers: undecryptable v1 Initials, unknown versions (Version Negotiation), real Initials. */
function longHeaders(n: number): Buffer[] {
  const real = resealInitial(initial, Math.ceil(n / 3));
  return Array.from({ length: n }, (_, i) =>
    i % 3 === 0 ? longHeader() : i % 3 === 1 ? unknownVersion() : real[Math.floor(i / 3)],
  );
}

const VARIANTS: { name: string; lb: LbOptions }[] = [
  { name: 'HMAC off, 1 worker', lb: { workers: 1 } },
  { name: 'HMAC on, 2 workers', lb: { workers: 2, hmacKeys: [randomBytes(32).toString('hex')] } },
];

for (const v of VARIANTS) {
  describe(`hostile ports (${v.name})`, () => {
    const { ready } = useHostile(() => startHostile(v.lb), { reviveEach: true });

    for (const port of PORTS) {
      it(`source port ${port}: short headers to the VIP (${v.name})`, async () => {
        const name = `port ${port} short headers -> VIP (${v.name})`;
        const { result } = await blast(ready(name), {
          name,
          target: 'vip',
          payloads: shortHeaders(64),
          sport: port,
          sources: 16,
          count: COUNT,
          rate: RATE,
        });
        expect(result.violations).toEqual([]);
      });

      it(`source port ${port}: long headers and real Initials to the VIP (${v.name})`, async () => {
        const name = `port ${port} long headers -> VIP (${v.name})`;
        // real Initials start handshakes: the demo backend sends at most 1x before validation (RFC 9000 §8.1 allows 3x)
        const { result } = await blast(ready(name), {
          name,
          target: 'vip',
          payloads: longHeaders(30),
          sport: port,
          sources: 16,
          count: COUNT / 2,
          rate: RATE,
          settleMs: 3000,
        });
        expect(result.violations).toEqual([]);
      });

      it(`source port ${port}: return-path headers naming port ${port} at the return port (${v.name})`, async () => {
        const name = `port ${port} PROXY -> return port (${v.name})`;
        const hh = ready(name);
        // spoofed from a backend's address (passes the source check): only HMAC stops it, and a
        // destination port 0 must never reach socket.send
        const payloads = proxyForgeries('forged', {
          victims: [VICTIM],
          victimPort: port,
          vip: hh.fleet.vip,
          vipPort: 4433,
          payload: shortHeader(randomBytes(8), 60),
          direction: ProxyDirection.TO_CLIENT,
        });
        const { result } = await blast(hh, {
          name,
          target: 'return',
          payloads,
          sport: port,
          src: hh.fleet.backends[0].address,
          count: COUNT / 2,
          rate: RATE,
          victimsGetNothing: v.lb.hmacKeys !== undefined,
        });
        expect(result.violations).toEqual([]);
      });
    }

    it(`5000 source addresses to the VIP (${v.name})`, async () => {
      const name = `5000 sources -> VIP (${v.name})`;
      const { result } = await blast(ready(name), {
        name,
        target: 'vip',
        payloads: shortHeaders(256),
        sport: 'random',
        sources: 5000,
        count: 10_000,
        rate: 4000,
      });
      expect(result.violations).toEqual([]);
    });

    it(`5000 source addresses to the return port (${v.name})`, async () => {
      const name = `5000 sources -> return port (${v.name})`;
      const hh = ready(name);
      const payloads = proxyForgeries('forged', {
        victims: [VICTIM],
        victimPort: 443,
        vip: hh.fleet.vip,
        vipPort: 4433,
        payload: shortHeader(randomBytes(8), 60),
        direction: ProxyDirection.TO_CLIENT,
      });
      const { result } = await blast(hh, {
        name,
        target: 'return',
        payloads,
        sport: 'random',
        sources: 5000,
        count: 10_000,
        rate: 4000,
        victimsGetNothing: true,
      });
      expect(result.violations).toEqual([]);
    });
  });
}
