// 10^6 random and mutated datagrams through decide(): no exception, every datagram counted under
// exactly one reason, every decision well-formed.
import { describe, expect, it } from 'vitest';
import {
  Counters,
  FourTuple,
  REASON_COUNT,
  Reason,
  buildRouterState,
  isForwarded,
  route,
  withHealth,
} from '../../src/lb/index.js';
import { fuzzSeeds, rng, testConfig } from './fixtures.js';

describe('decide() fuzz', () => {
  it('10^6 random and mutated datagrams: no throw, all counted, decisions well-formed', () => {
    const N = 1_000_000;
    const config = testConfig();
    const counters = new Counters();
    const full = buildRouterState(config, new Map(), counters);
    const states = [
      full,
      withHealth(
        full,
        new Map([
          ['a', 'down'],
          ['c', 'draining'],
          ['d', 'unreachable'],
        ] as const),
      ),
      withHealth(full, new Map(config.backends.map((b) => [b.name, 'down'] as const))),
    ];
    const newFlowBackends = states.map((st) => new Set(st.table));
    const seeds = fuzzSeeds();
    const buf = Buffer.alloc(1500);
    const views = Array.from({ length: 1501 }, (_, n) => buf.subarray(0, n));
    const next = rng(0xc0ffee);
    const t = new FourTuple();
    t.family = 4;
    t.vip.set([127, 0, 1, 1]);
    t.vipPort = 443;
    let forwarded = 0;
    let dropped = 0;
    const nBackends = config.backends.length;
    for (let i = 0; i < N; i++) {
      const r = next();
      let len: number;
      const mode = r & 7;
      if (mode < 3) {
        // random bytes, random length (short lengths more often)
        len = (r >>> 3) % (mode === 0 ? 64 : 1500);
        for (let j = 0; j < len; j += 4) {
          const w = next();
          buf[j] = w;
          buf[j + 1] = w >>> 8;
          buf[j + 2] = w >>> 16;
          buf[j + 3] = w >>> 24;
        }
      } else {
        // a valid packet, then mutations: bit flips, truncation, length-octet changes
        const s = seeds[(r >>> 3) % seeds.length];
        s.copy(buf, 0);
        len = s.length;
        const flips = (r >>> 8) & 3;
        for (let k = 0; k < flips; k++) {
          const w = next();
          buf[w % Math.min(len, 40)] ^= 1 << ((w >>> 16) & 7);
        }
        if ((r >>> 12) & 1) len = next() % (len + 1);
        if ((r >>> 13) & 1 && len > 5) buf[5] = next() & 0xff; // DCIL
      }
      t.client[0] = r >>> 24;
      t.client[3] = r;
      t.clientPort = (r >>> 5) & 0xffff;
      const which = i % 97 === 0 ? 2 : i % 13 === 0 ? 1 : 0;
      const state = states[which];
      const d = route(views[len], t, state);
      if (d.reason < 0 || d.reason >= REASON_COUNT) throw new Error(`bad reason ${d.reason}`);
      if (isForwarded(d.reason)) {
        if (d.backend < 0 || d.backend >= nBackends) throw new Error(`bad backend ${d.backend} for reason ${d.reason}`);
        if (state.routable[d.backend] !== 1) throw new Error('forwarded to a down backend');
        if (d.reason !== Reason.ROUTED && !newFlowBackends[which].has(d.backend))
          throw new Error('a new flow on a backend that is not up');
        forwarded++;
      } else {
        if (d.backend !== -1) throw new Error('dropped with a backend');
        dropped++;
      }
    }
    expect(counters.totalPackets()).toBe(N);
    expect(forwarded + dropped).toBe(N);
    let backendPackets = 0;
    for (const b of config.backends) backendPackets += counters.backend(b.name).packetsIn;
    expect(backendPackets).toBe(forwarded);
    // The mix reaches every reason.
    for (let r = 0; r < REASON_COUNT; r++) expect(counters.reasonPackets[r], `reason ${r}`).toBeGreaterThan(0);
    expect(counters.reasonPackets[Reason.ROUTED]).toBeGreaterThan(10_000);
  });
});
