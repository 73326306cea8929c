// Differential test of the XDP fast path (xdp/quic_lb.bpf.c, issue 15): the same datagrams
// through the BPF program (BPF_PROG_TEST_RUN, via xdp/test-run.c) and through decide() built
// from the same config and health view. The XDP program must route exactly what decide()
// CID-routes under a plaintext config, to the same backend, and pass everything else up with the
// reason decide() gives (its fallback_/dropped_ prefix dropped) or encrypted_config.
// Needs root (BPF_PROG_TEST_RUN), clang, cc and libbpf-dev: scripts/system-deps.sh. No skip.
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendState,
  type Decision,
  Reason,
  type RouterState,
  buildRouterState,
  decide,
} from '../../src/lb/index.js';
import { SIDS, cid, rng, shortHeader, testConfig } from '../lb/fixtures.js';
import { ROUTER_ROWS } from '../lb/router-rows.js';
import { type Frame, cleanup, generator, runXdp, xdpFixture } from './harness.js';

const RANDOM_DATAGRAMS = 100_000;

/** The fixture config with an IPv6 VIP beside the IPv4 one: the XDP maps and decide() both come from it.
 *  Its backends have no "backends" map entry here: routed datagrams pass up as no_backend_address
 *  (test/xdp/encap.test.ts sends them). */
const fx = xdpFixture(testConfig({ listen: ['127.0.1.1:20001', '[::1]:20001'] }));
const { frameOf, tupleOf, healthOf, checkAgainst, encrypted } = fx;
const VIP_PORT = fx.vipOf(4).port;
const config = fx.config;

afterAll(cleanup);

describe('XDP decision = decide(): the router fixture table', () => {
  it('every row, IPv4 and IPv6', { timeout: 120_000 }, () => {
    const lines: string[] = [];
    const expected: { d: Decision; what: string }[] = [];
    let first = true;
    for (const row of ROUTER_ROWS) {
      const health = healthOf(row.down);
      lines.push(...(first ? fx.mapLines(health) : fx.serverLines(health)));
      first = false;
      const state = buildRouterState(config, health);
      for (const family of [4, 6] as const) {
        const f: Frame = { family, clientPort: 40000, vipPort: VIP_PORT, datagram: row.datagram };
        lines.push(`frame ${frameOf(f).toString('hex')}`);
        expected.push({ d: { ...decide(row.datagram, tupleOf(f), state) }, what: `${row.desc} (IPv${family})` });
      }
    }
    const { results } = runXdp(lines);
    expect(results.length).toBe(expected.length);
    expected.forEach((e, i) => checkAgainst(e.d, results[i], e.what));
    // Rows routed under the plaintext config are routed by XDP too.
    const routed = results.filter((r) => r.name === 'routed').length;
    const plainRouted = expected.filter((e) => e.d.reason === Reason.ROUTED && !encrypted.has(e.d.configId)).length;
    expect(routed).toBe(plainRouted);
    expect(routed).toBeGreaterThanOrEqual(14); // 7 plaintext rows x 2 families
  });
});

describe('XDP passes up what it does not decide', () => {
  const dg = shortHeader(cid(0, SIDS.a[0]));
  const cases: { desc: string; frame: Buffer; name: string }[] = [
    {
      desc: 'control: plaintext CID of a',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }),
      name: 'routed',
    },
    {
      desc: 'control IPv6',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }),
      name: 'routed',
    },
    {
      desc: 'another port',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT + 1, datagram: dg }),
      name: 'not_vip',
    },
    {
      desc: 'another address',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[33] = 2)),
      name: 'not_vip',
    },
    {
      desc: 'IPv6 another address',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[53] = 2)),
      name: 'not_vip',
    },
    {
      desc: 'TCP',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[23] = 6)),
      name: 'not_vip',
    },
    {
      desc: 'ARP',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => b.writeUInt16BE(0x0806, 12)),
      name: 'not_vip',
    },
    { desc: 'runt frame', frame: Buffer.alloc(20), name: 'not_vip' },
    {
      desc: 'IPv4 more-fragments',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[20] = 0x20)),
      name: 'fragment',
    },
    {
      desc: 'IPv4 fragment offset',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[21] = 1)),
      name: 'fragment',
    },
    {
      desc: 'IPv4 DF alone is no fragment',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[20] = 0x40)),
      name: 'routed',
    },
    {
      desc: 'IPv6 fragment header',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[20] = 44)),
      name: 'fragment',
    },
    {
      desc: 'IPv4 options',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[14] = 0x46)),
      name: 'ip_options',
    },
    {
      desc: 'IPv6 hop-by-hop header',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => (b[20] = 0)),
      name: 'ip_options',
    },
    {
      desc: 'UDP length past the IP payload',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) =>
        b.writeUInt16BE(9 + dg.length, 38),
      ),
      name: 'malformed',
    },
    {
      desc: 'UDP length under 8',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => b.writeUInt16BE(7, 58)),
      name: 'malformed',
    },
    {
      desc: 'frame cut inside the datagram (IP and UDP lengths claim more)',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }).subarray(0, 14 + 20 + 8 + 4),
      name: 'malformed',
    },
  ];
  it('not a VIP, fragments, options, bad UDP lengths', { timeout: 120_000 }, () => {
    const lines = [...fx.mapLines(healthOf()), ...cases.map((c) => `frame ${c.frame.toString('hex')}`)];
    const { results } = runXdp(lines);
    expect(results.map((r) => r.name)).toEqual(cases.map((c) => c.name));
  });
});

describe('XDP decision = decide(): random and mutated datagrams', () => {
  it(`${RANDOM_DATAGRAMS} seeded datagrams, two health views, IPv4 and IPv6`, () => {
    const next = generator(0x15c0ffee);
    const r = rng(77);
    const views: Map<string, BackendState>[] = [
      healthOf(),
      new Map<string, BackendState>([
        ['a', 'up'],
        ['b', 'draining'],
        ['c', 'down'],
        ['d', 'unreachable'],
      ]),
    ];
    const lines: string[] = [];
    const decisions: Decision[] = [];
    const tally = new Map<string, number>();
    const outcomes = new Map<string, number>();
    views.forEach((health, v) => {
      lines.push(...(v === 0 ? fx.mapLines(health) : fx.serverLines(health)));
      const state: RouterState = buildRouterState(config, health);
      for (let i = 0; i < RANDOM_DATAGRAMS / views.length; i++) {
        const f: Frame = {
          family: r() & 1 ? 6 : 4,
          clientPort: 1 + (r() % 65535),
          vipPort: VIP_PORT,
          datagram: next(),
        };
        lines.push(`frame ${frameOf(f).toString('hex')}`);
        decisions.push({ ...decide(f.datagram, tupleOf(f), state) });
      }
    });
    const { results, counters } = runXdp(lines);
    expect(results.length).toBe(RANDOM_DATAGRAMS);
    let mismatches = 0;
    results.forEach((x, i) => {
      tally.set(x.name, (tally.get(x.name) ?? 0) + 1);
      outcomes.set(x.outcome, (outcomes.get(x.outcome) ?? 0) + 1);
      // No "backends" entries here: nothing is sent, every frame passes up unchanged.
      const outcome = x.name === 'routed' ? 'no_backend_address' : x.name;
      if (x.outcome !== outcome || x.verdict !== 'pass' || x.out !== undefined) {
        if (++mismatches <= 5) console.error(`datagram ${i}: ${JSON.stringify(x)}`);
      }
      try {
        checkAgainst(decisions[i], x, `datagram ${i}`);
      } catch (e) {
        if (++mismatches <= 5) console.error(e);
      }
    });
    expect(mismatches).toBe(0);
    // Not vacuous: a large share is routed in BPF, and the corpus reaches every QUIC reason.
    expect(tally.get('routed') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 4);
    for (const name of ['initial', 'unroutable_0b111', 'unknown_config', 'unknown_server_id', 'too_short']) {
      expect(tally.get(name) ?? 0, name).toBeGreaterThan(100);
    }
    for (const name of ['backend_down', 'unknown_version', 'version_negotiation', 'malformed', 'encrypted_config']) {
      expect(tally.get(name) ?? 0, name).toBeGreaterThan(10);
    }
    // The per-CPU counters count each datagram once, by its outcome.
    for (const [name, n] of counters) expect(n, name).toBe(outcomes.get(name) ?? 0);
    expect(counters.get('no_backend_address')).toBe(tally.get('routed'));
    console.log(`xdp differential: ${JSON.stringify(Object.fromEntries(tally))}`);
  }, 300_000);
});
