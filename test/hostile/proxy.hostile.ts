// Forged, truncated, oversized and replayed PROXY v2 headers at a backend's public address and at
// the LB's return port, health probes from strangers, and a flood of real Initials from random
// sources (issue 10, finding 2). The LB signs what it forwards (returnPath.hmacKey +
// signForward) and the backends name the LB (--allow-lb), as the fixed backend kit requires.
// A header naming a victim must never make anyone send to the victim, except a replay of a
// genuinely signed header within its window, which src/wire/proxy-v2.ts documents as accepted:
// the return port then sends the victim less than it received (1:1 minus the header), a backend
// answers a replayed Initial with at most the octets received (the demo backend's 1x limit
// before address validation; RFC 9000 §8.1 would allow 3x).
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ProxyDirection } from '../../src/wire/proxy-v2.js';
import { VICTIM, VIP_PORT, blast, restartBackends, startHostile, useHostile } from './harness.js';
import {
  captureInitial,
  probeRequest,
  proxyForgeries,
  resealInitial,
  shortHeader,
  type ProxyForgery,
} from './payloads.js';

const HMAC_KEY = randomBytes(32);
const KINDS: ProxyForgery[] = ['forged', 'truncated', 'oversized', 'replayed'];
/** Initial flood: bounded count and rate. */
const FLOOD_COUNT = 20_000;
const FLOOD_RATE = 2500;

describe('hostile PROXY headers and Initial flood', () => {
  let initial: Buffer;
  const { ready } = useHostile(
    async () => {
      initial = await captureInitial();
      return startHostile({ workers: 1, hmacKeys: [HMAC_KEY.toString('hex')], signForward: true });
    },
    { reviveEach: true },
  );

  for (const kind of KINDS) {
    it(`${kind} PROXY headers at a backend's public address, from the LB's (spoofed) address`, async () => {
      const name = `${kind} PROXY -> backend address, LB address spoofed`;
      const hh = ready(name);
      // the payload is a real Initial: a backend that obeys the header starts a handshake with the victim
      const payloads = proxyForgeries(kind, {
        victims: [VICTIM],
        victimPort: 443,
        vip: hh.fleet.vip,
        vipPort: VIP_PORT,
        payload: resealInitial(initial, 1)[0],
        direction: ProxyDirection.TO_BACKEND,
        signedWith: HMAC_KEY,
      });
      const replay = kind === 'replayed';
      const { result } = await blast(hh, {
        name,
        target: 'backend',
        payloads,
        sport: 40000,
        src: hh.lbNs.address,
        count: 100,
        rate: 500,
        victimsGetNothing: !replay,
        settleMs: replay ? 3000 : 1500,
      });
      // A replayed genuine header opened a handshake with its client: end it before the next case counts.
      if (replay) await restartBackends(hh);
      expect(result.violations).toEqual([]);
    });

    it(`${kind} PROXY headers at the return port, from a backend's (spoofed) address`, async () => {
      const name = `${kind} PROXY -> return port, backend address spoofed`;
      const hh = ready(name);
      const payloads = proxyForgeries(kind, {
        victims: [VICTIM],
        victimPort: 443,
        vip: hh.fleet.vip,
        vipPort: VIP_PORT,
        payload: shortHeader(randomBytes(8), 200),
        direction: ProxyDirection.TO_CLIENT,
        signedWith: HMAC_KEY,
      });
      const { result } = await blast(hh, {
        name,
        target: 'return',
        payloads,
        sport: 4434,
        src: hh.fleet.backends[0].address,
        count: 200,
        rate: 1000,
        victimsGetNothing: kind !== 'replayed',
      });
      expect(result.violations).toEqual([]);
    });
  }

  it('forged PROXY headers at a backend from 5000 random sources', async () => {
    const name = 'forged PROXY -> backend address, 5000 sources';
    const hh = ready(name);
    const payloads = proxyForgeries('forged', {
      victims: [VICTIM],
      victimPort: 443,
      vip: hh.fleet.vip,
      vipPort: VIP_PORT,
      payload: resealInitial(initial, 1)[0],
      direction: ProxyDirection.TO_BACKEND,
    });
    const { result } = await blast(hh, {
      name,
      target: 'backend',
      payloads,
      sport: 'random',
      sources: 5000,
      count: 5000,
      rate: 2500,
      victimsGetNothing: true,
    });
    expect(result.violations).toEqual([]);
  });

  it('health probe requests at a backend from sources that are not the LB get no answer', async () => {
    const name = 'health probes -> backend address, 1000 sources';
    const payloads = Array.from({ length: 32 }, () => probeRequest());
    const { result } = await blast(ready(name), {
      name,
      target: 'backend',
      payloads,
      sport: 'random',
      sources: 1000,
      count: 2000,
      rate: 1000,
      nothingBack: true,
    });
    expect(result.violations).toEqual([]);
  });

  it(`a flood of ${FLOOD_COUNT} real Initials from 5000 random sources at the VIP`, async () => {
    const name = `${FLOOD_COUNT} Initials -> VIP, 5000 sources`;
    const payloads = resealInitial(initial, 2000);
    const { result } = await blast(ready(name), {
      name,
      target: 'vip',
      payloads,
      sport: 'random',
      sources: 5000,
      count: FLOOD_COUNT,
      rate: FLOOD_RATE,
      settleMs: 4000,
    });
    expect(result.violations).toEqual([]);
  }, 120_000);
});
