// The routing table of decide(): one row per reason, with the backend and the counters each
// datagram must produce (docs/design.md §5).
import { describe, expect, it } from 'vitest';
import {
  CID_RESULT_COUNT,
  Counters,
  FourTuple,
  REASON_COUNT,
  REASON_NAMES,
  Reason,
  SipHash24,
  buildMaglevTable,
  buildRouterState,
  decide,
  route,
  withHealth,
} from '../../src/lb/index.js';
import { FALLBACK_KEY, QUIC_V1, SIDS, V1, cid, configDoc, longHeader, shortHeader, testConfig } from './fixtures.js';
import { validateConfig } from '../../src/lb/index.js';
import { ALL_UP, ROUTER_ROWS } from './router-rows.js';

const config = testConfig();
const names = config.backends.map((b) => b.name);
const idx = (name: string): number => names.indexOf(name);

function tuple(client = '198.51.100.7', port = 40000, vip = '127.0.1.1', vipPort = 20001): FourTuple {
  const t = new FourTuple();
  t.family = 4;
  t.client.set(client.split('.').map(Number));
  t.clientPort = port;
  t.vip.set(vip.split('.').map(Number));
  t.vipPort = vipPort;
  return t;
}

/** Independent fallback reference: SipHash-2-4(key, client|cport|vip|vport) mod M into Maglev over healthy backends sorted by name. */
function expectedFallback(t: FourTuple, up: string[]): string {
  const input = Buffer.concat([
    Buffer.from(t.client.subarray(0, 4)),
    u16(t.clientPort),
    Buffer.from(t.vip.subarray(0, 4)),
    u16(t.vipPort),
  ]);
  const h = new SipHash24(Buffer.from(FALLBACK_KEY, 'hex'));
  h.hash(input, 0, input.length);
  const big = (BigInt(h.hi) << 32n) | BigInt(h.lo);
  const slot = Number(big % 65537n);
  const healthy = [...up].sort();
  const table = buildMaglevTable(
    healthy.map((name) => ({ name, weight: 1 })),
    65537,
  );
  return healthy[table[slot]];
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

describe('decide(): the routing fixture table', () => {
  it('covers every reason', () => {
    const covered = new Set(ROUTER_ROWS.map((r) => r.reason));
    for (let r = 0; r < REASON_COUNT; r++) expect(covered.has(r), REASON_NAMES[r]).toBe(true);
  });

  for (const row of ROUTER_ROWS) {
    it(`${row.desc} -> ${REASON_NAMES[row.reason]}`, () => {
      const counters = new Counters();
      const up = ALL_UP.filter((n) => !row.down?.includes(n));
      const state = buildRouterState(config, new Map(names.map((n) => [n, up.includes(n) ? 'up' : 'down'])), counters);
      const t = row.tuple ?? tuple();
      const d = route(row.datagram, t, state);
      expect(REASON_NAMES[d.reason]).toBe(REASON_NAMES[row.reason]);
      const expectedBackend = row.backend === 'fallback' ? expectedFallback(t, up) : row.backend;
      expect(d.backend >= 0 ? names[d.backend] : null).toBe(expectedBackend);
      if (row.codepoint !== undefined) expect(d.codepoint).toBe(row.codepoint);
      if (row.cidResult !== undefined) expect(d.cidResult).toBe(row.cidResult);
      // Counters: exactly one packet under the reason, bytes = datagram length.
      expect(Array.from(counters.reasonPackets)).toEqual(
        Array.from({ length: REASON_COUNT }, (_, i) => (i === row.reason ? 1 : 0)),
      );
      expect(counters.reasonBytes[row.reason]).toBe(row.datagram.length);
      const cidCounts = Array.from(counters.cid);
      const expectedCid = new Array(cidCounts.length).fill(0);
      if (row.cidResult !== undefined && row.cidResult >= 0)
        expectedCid[(row.codepoint as number) * CID_RESULT_COUNT + row.cidResult] = 1;
      expect(cidCounts).toEqual(expectedCid);
      for (const name of names) {
        const s = counters.backend(name);
        const hit = name === expectedBackend ? 1 : 0;
        expect(s.packetsIn, name).toBe(hit);
        expect(s.bytesIn, name).toBe(hit * row.datagram.length);
        expect(s.packetsRouted, name).toBe(row.reason === Reason.ROUTED ? hit : 0);
      }
    });
  }

  it('the fallback is keyed: another key moves flows', () => {
    const other = validateConfig(configDoc({ fallback: { key: 'ff0102030405060708090a0b0c0d0e0f' } }));
    const s1 = buildRouterState(config);
    const s2 = buildRouterState(other);
    let moved = 0;
    for (let p = 1; p <= 400; p++) {
      const dg = shortHeader(Buffer.from('e7aabbccddeeff0011', 'hex'));
      const a = decide(dg, tuple('203.0.113.9', p), s1).backend;
      const b = decide(dg, tuple('203.0.113.9', p), s2).backend;
      if (a !== b) moved++;
    }
    // 4 equal backends: a different key should move about 3/4 of the flows.
    expect(moved).toBeGreaterThan(200);
  });

  it('fallback is pinned: these 4-tuples go to these backends in every version of this LB', () => {
    // Golden values: a change here breaks "two LBs with the same config choose the same backend"
    // across a rolling upgrade. Computed once with SipHash-2-4 + Maglev(65537) as documented.
    const s = buildRouterState(config);
    const dg = longHeader(QUIC_V1, V1.INITIAL, Buffer.from('a1b2c3d4e5f60718', 'hex'), undefined, 1200);
    const got = [40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007].map(
      (p) => names[decide(dg, tuple('198.51.100.7', p), s).backend],
    );
    expect(got).toEqual(GOLDEN);
  });

  it('IPv6 4-tuples hash all 36 octets', () => {
    const s = buildRouterState(config);
    const t = new FourTuple();
    t.family = 6;
    t.client.set(Buffer.from('20010db8000000000000000000000001', 'hex'));
    t.vip.set(Buffer.from('00000000000000000000000000000001', 'hex'));
    t.clientPort = 5000;
    t.vipPort = 443;
    const dg = shortHeader(Buffer.from('e7aabbccddeeff0011', 'hex'));
    const seen = new Set<number>();
    for (let i = 0; i < 64; i++) {
      t.client[15] = i;
      seen.add(decide(dg, t, s).backend);
    }
    expect(seen.size).toBe(4);
  });

  it('withHealth() rebuilds only the fallback table; CID routing for live backends is unchanged', () => {
    const s = buildRouterState(config);
    const s2 = withHealth(s, new Map([['b', 'down']]));
    expect(decide(shortHeader(cid(0, SIDS.a[0])), tuple(), s2).backend).toBe(idx('a'));
    expect(REASON_NAMES[decide(shortHeader(cid(0, SIDS.b[0])), tuple(), s2).reason]).toBe('fallback_backend_down');
    for (let i = 0; i < s2.table.length; i += 97) expect(s2.table[i]).not.toBe(idx('b'));
  });

  // The drain policy: only `down` detours a connection; `draining` and `unreachable` keep their
  // CID-routed datagrams and take no new flows.
  for (const st of ['draining', 'unreachable'] as const) {
    it(`${st}: its CID-routed datagrams still reach it (routed), the fallback table has no slot of it`, () => {
      const counters = new Counters();
      const s = buildRouterState(config, new Map([['b', st]]), counters);
      const d = route(shortHeader(cid(0, SIDS.b[0])), tuple(), s);
      expect(REASON_NAMES[d.reason]).toBe('routed');
      expect(d.backend).toBe(idx('b'));
      expect(s.table.length).toBeGreaterThan(0);
      expect(s.table.includes(idx('b'))).toBe(false);
      expect(counters.backend('b').packetsRouted).toBe(1);
      // A client Initial never lands on it.
      for (let port = 1; port < 400; port++) {
        const t = tuple();
        t.clientPort = port;
        expect(decide(longHeader(QUIC_V1, V1.INITIAL, Buffer.alloc(8, 0x5a), undefined, 1200), t, s).backend).not.toBe(
          idx('b'),
        );
      }
    });
  }

  it('weight 0 keeps CID routing but takes the backend out of the fallback table', () => {
    const doc = configDoc();
    (doc.backends as { weight?: number }[])[0].weight = 0;
    const s = buildRouterState(validateConfig(doc));
    expect(decide(shortHeader(cid(0, SIDS.a[0])), tuple(), s).backend).toBe(idx('a'));
    expect(s.table.includes(idx('a'))).toBe(false);
  });
});

const GOLDEN = ['a', 'a', 'b', 'b', 'c', 'c', 'a', 'a'];
