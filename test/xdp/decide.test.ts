// Differential test of the XDP fast path (xdp/quic_lb.bpf.c, issue 15): the same datagrams
// through the BPF program (BPF_PROG_TEST_RUN, through the agent quic-lb serve runs, with the maps
// written by src/lb/xdp-maps.ts as quic-lb serve writes them) and through decide() built from the
// same config and health view. The program must give every datagram decide()'s reason and
// backend: CID-routed under every config (plaintext, single-pass, four-pass: the BPF AES of
// xdp/aes.h), the fallback (SipHash-2-4 of the 4-tuple into the Maglev table, xdp/fallback.h) and
// the drops. No outer sources are given here, so what it would send passes up as
// no_source_address (test/xdp/encap.test.ts sends it).
// Needs root (BPF_PROG_TEST_RUN), clang, cc and libbpf-dev: scripts/system-deps.sh. No skip.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendState,
  type Decision,
  type LbConfig,
  MAX_MAGLEV_TABLE_SIZE,
  REASON_COUNT,
  REASON_NAMES,
  Reason,
  buildRouterState,
  decide,
  fallbackSlot,
  validateConfig,
} from '../../src/lb/index.js';
import { SIDS, cid, rng, shortHeader, testConfig } from '../lb/fixtures.js';
import { ROUTER_ROWS } from '../lb/router-rows.js';
import { configFromSpec, encodeConnectionId } from '../../src/cid/index.js';
import { loadVectors } from '../cid/vectors.js';
import { AES_TABLES_PATH, aesTablesHeader } from '../../scripts/xdp-aes-tables.js';
import { XDP_MAPS } from '../../src/lb/xdp-maps.js';
import { type Frame, PASS_UP_ONLY, XdpRunner, type XdpResult, cleanup, generator, xdpFixture } from './harness.js';

const RANDOM_DATAGRAMS = 100_000;
const LISTEN = ['127.0.1.1:20001', '[::1]:20001'];
/** The fixture config with an IPv6 VIP beside the IPv4 one: the XDP maps and decide() both come from it. */
const fx = xdpFixture(testConfig({ listen: LISTEN }));
const { config, names, encrypted, frameOf, tupleOf, healthOf, checkAgainst } = fx;
const VIP_PORT = fx.vipOf(4).port;

/** Backend name of an index, null for -1 (dropped or passed up). */
const nameOf = (backend: number): string | null => (backend < 0 ? null : (names[backend] ?? `#${backend}`));

afterAll(cleanup);

/** A fresh runner with `cfg` under `health` loaded; closed after `body`. */
async function withRunner<T>(
  cfg: LbConfig,
  health: ReadonlyMap<string, BackendState>,
  body: (x: XdpRunner) => Promise<T>,
): Promise<T> {
  const x = await XdpRunner.start();
  try {
    await x.load(cfg, health);
    return await body(x);
  } finally {
    await x.close();
  }
}

describe('XDP reasons and limits are those of src/lb', () => {
  it('reason names by value = REASON_NAMES, then the pass-ups; the maps as xdp-maps.ts writes them', async () => {
    const x = await XdpRunner.start();
    try {
      expect(x.reasons.slice(0, REASON_COUNT)).toEqual(REASON_NAMES);
      expect(x.reasons.slice(REASON_COUNT, REASON_COUNT + PASS_UP_ONLY.length)).toEqual(PASS_UP_ONLY);
      // Every map of the object has the layout the encoder writes; the Maglev one holds two
      // generations of the largest table the config accepts.
      const names = Object.keys(XDP_MAPS) as (keyof typeof XDP_MAPS)[];
      const info = await x.agent.apply(names.map((m) => `info ${m}`));
      expect(info).toEqual(names.map((m) => `info ${XDP_MAPS[m].key} ${XDP_MAPS[m].value} ${XDP_MAPS[m].entries}`));
      expect(XDP_MAPS.maglev.entries).toBe(2 * MAX_MAGLEV_TABLE_SIZE);
    } finally {
      await x.close();
    }
  });
});

describe('XDP fallback slot = fallbackSlot(): SipHash-2-4 of the 4-tuple', () => {
  it('400 4-tuples, IPv4 and IPv6, another key, the largest table', { timeout: 120_000 }, async () => {
    // An identity Maglev table (slot i -> "backend" i) makes the program report its slot. The
    // config's maps are written as usual (all backends down: an empty table), then the active
    // generation's table and fallback entry are overwritten by hand.
    const r = rng(0x51f4a5);
    const key = Buffer.from(Array.from({ length: 16 }, () => r() & 0xff)).toString('hex');
    const cfg = testConfig({ listen: LISTEN, fallback: { key, tableSize: MAX_MAGLEV_TABLE_SIZE } });
    const down = healthOf(names);
    const state = buildRouterState(cfg, down);
    const datagram = shortHeader(Buffer.from('e0112233445566778899', 'hex')); // codepoint 0b111
    const frames: Buffer[] = [];
    const expected: number[] = [];
    for (let i = 0; i < 400; i++) {
      const family = i & 1 ? 6 : 4;
      const client = Buffer.from(Array.from({ length: family === 4 ? 4 : 16 }, () => r() & 0xff));
      const f: Frame = { family, client, clientPort: r() & 0xffff, vipPort: VIP_PORT, datagram };
      frames.push(frameOf(f));
      expected.push(fallbackSlot(tupleOf(f), state));
    }
    const results = await withRunner(cfg, down, async (x) => {
      const gen = 1; // the first write goes to generation 1 (xdp-maps.ts MapWriter)
      const identity = Int32Array.from({ length: MAX_MAGLEV_TABLE_SIZE }, (_, i) => i);
      const fb = Buffer.alloc(XDP_MAPS.fallback.value);
      fb.write(key, 0, 'hex');
      fb.writeUInt32LE(MAX_MAGLEV_TABLE_SIZE, 16);
      fb.writeUInt32LE(1, 20);
      const u32 = (n: number): string => Buffer.from(Uint32Array.of(n).buffer).toString('hex');
      await x.agent.apply([
        `fill maglev ${gen * MAX_MAGLEV_TABLE_SIZE} ${Buffer.from(identity.buffer).toString('hex')}`,
        `update fallback ${u32(gen)} ${fb.toString('hex')}`,
      ]);
      return x.run(frames);
    });
    expect(results.map((x) => ({ name: x.name, backend: x.backend }))).toEqual(
      expected.map((slot) => ({ name: 'fallback_unroutable_0b111', backend: slot })),
    );
    // Not vacuous: the slots spread over the whole table.
    expect(new Set(expected).size).toBeGreaterThan(390);
    expect(Math.max(...expected)).toBeGreaterThan(MAX_MAGLEV_TABLE_SIZE * 0.9);
  });
});

describe('XDP decision = decide(): the router fixture table', () => {
  it('every row, IPv4 and IPv6', { timeout: 120_000 }, async () => {
    const results: XdpResult[] = [];
    const expected: { d: Decision; what: string }[] = [];
    const x = await XdpRunner.start();
    try {
      let view = '';
      for (const row of ROUTER_ROWS) {
        const health = healthOf(row.down);
        const state = buildRouterState(config, health);
        // A new generation only when the health view changes (a Maglev table is 0.5 MB of hex).
        const key = JSON.stringify([...health]);
        if (key !== view) await x.load(config, health);
        view = key;
        const frames: Buffer[] = [];
        for (const family of [4, 6] as const) {
          const f: Frame = { family, clientPort: 40000, vipPort: VIP_PORT, datagram: row.datagram };
          frames.push(frameOf(f));
          expected.push({ d: { ...decide(row.datagram, tupleOf(f), state) }, what: `${row.desc} (IPv${family})` });
        }
        results.push(...(await x.run(frames)));
      }
    } finally {
      await x.close();
    }
    expect(results.length).toBe(expected.length);
    expected.forEach((e, i) => checkAgainst(e.d, results[i], e.what));
    // Rows routed under every config are routed by XDP too, encrypted ones included.
    const routed = results.filter((r) => r.name === 'routed').length;
    expect(routed).toBe(expected.filter((e) => e.d.reason === Reason.ROUTED).length);
    const encryptedRouted = expected.filter((e, i) => encrypted.has(e.d.configId) && results[i].name === 'routed');
    expect(encryptedRouted.length).toBeGreaterThanOrEqual(10); // 5 encrypted rows x 2 families
    // Not vacuous: most rows take the fallback in BPF, to a backend; the all-down rows drop.
    const fellBack = results.filter((r) => r.name.startsWith('fallback_') && r.backend >= 0).length;
    expect(fellBack).toBeGreaterThanOrEqual(30);
    expect(results.filter((r) => r.name === 'dropped_no_backend').length).toBeGreaterThanOrEqual(2);
    // Nothing was sent (no outer sources in these maps); what decide() drops is dropped here.
    for (const r of results) {
      expect(r.verdict).toBe(r.name.startsWith('dropped_') ? 'drop' : 'pass');
      expect(r.out).toBeUndefined();
      if (r.backend >= 0) expect(r.outcome).toBe('no_source_address');
    }
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
      name: 'dropped_malformed',
    },
    {
      desc: 'UDP length under 8',
      frame: frameOf({ family: 6, clientPort: 1, vipPort: VIP_PORT, datagram: dg }, (b) => b.writeUInt16BE(7, 58)),
      name: 'dropped_malformed',
    },
    {
      desc: 'frame cut inside the datagram (IP and UDP lengths claim more)',
      frame: frameOf({ family: 4, clientPort: 1, vipPort: VIP_PORT, datagram: dg }).subarray(0, 14 + 20 + 8 + 4),
      name: 'dropped_malformed',
    },
  ];
  it('not a VIP, fragments, options, bad UDP lengths', { timeout: 120_000 }, async () => {
    const results = await withRunner(config, healthOf(), (x) => x.run(cases.map((c) => c.frame)));
    expect(results.map((r) => r.name)).toEqual(cases.map((c) => c.name));
  });
});

// ---- the AES in BPF: known answers, the draft's vectors, every config shape ----------------

/** A short-header frame to the IPv4 VIP carrying `dcid`. */
function cidFrame(dcid: Uint8Array): Buffer {
  return frameOf({ family: 4, clientPort: 4433, vipPort: VIP_PORT, datagram: shortHeader(dcid) });
}

/** A config of the fixture's VIPs with `quicLb` configs and one backend per server ID (health checks off). */
function cidConfig(quicLb: object[], backends: { configId: number; serverId: string }[]): LbConfig {
  return validateConfig({
    listen: LISTEN,
    quicLb,
    backends: backends.map((b, i) => ({
      name: `s${i}`,
      address: `127.0.1.${10 + (i % 200)}:${20010 + Math.floor(i / 200)}`,
      serverIds: { [b.configId]: [b.serverId] },
      health: { type: 'none' },
    })),
    // A small table: these tests are about the CIDs (every backend is `unreachable`, below).
    fallback: { key: '000102030405060708090a0b0c0d0e0f', tableSize: 13 },
    returnPath: { mode: 'direct' },
  });
}

/** Every backend `unreachable`: CID routing still reaches them, the fallback table is empty. */
const unreachable = (cfg: LbConfig): Map<string, BackendState> =>
  new Map(cfg.backends.map((b) => [b.name, 'unreachable' as BackendState]));

describe('XDP AES: known answers and the draft-21 vectors', () => {
  it('xdp/aes_tables.h is what scripts/xdp-aes-tables.ts generates from src/cid/aes.ts', () => {
    expect(readFileSync(AES_TABLES_PATH, 'utf8')).toBe(aesTablesHeader());
  });

  it('FIPS-197 C.1 through a single-pass CID: the decrypted block names the server', { timeout: 120_000 }, async () => {
    // Key 000102..0f, ciphertext 69c4e0d8...: plaintext 00112233445566778899aabbccddeeff
    // (FIPS-197 Appendix C.1), read as server ID || nonce for two splits.
    const key = '000102030405060708090a0b0c0d0e0f';
    const ct = Buffer.from('69c4e0d86a7b0430d8cdb78070b4c55a', 'hex');
    const cfg = cidConfig(
      [
        { configId: 1, serverIdLength: 8, nonceLength: 8, key },
        { configId: 2, serverIdLength: 12, nonceLength: 4, key },
      ],
      [
        { configId: 1, serverId: '0011223344556677' },
        { configId: 2, serverId: '00112233445566778899aabb' },
      ],
    );
    const frames = [
      cidFrame(Buffer.concat([Buffer.of(1 << 5), ct])),
      cidFrame(Buffer.concat([Buffer.of(2 << 5), ct])),
      cidFrame(Buffer.concat([Buffer.of(2 << 5), ct.map((b, i) => (i === 15 ? b ^ 1 : b))])), // one bit off
    ];
    const results = await withRunner(cfg, unreachable(cfg), (x) => x.run(frames));
    expect(results.map((r) => ({ name: r.name, backend: r.backend }))).toEqual([
      { name: 'routed', backend: 0 },
      { name: 'routed', backend: 1 },
      // No backend takes new flows (all unreachable): an unknown server ID is dropped, as decide() does.
      { name: 'dropped_no_backend', backend: -1 },
    ]);
  });

  it('draft-21 Appendix B and §5.4.2.4 encrypted vectors route to their server ID', { timeout: 120_000 }, async () => {
    // test/vectors/draft-21.json, read-only. The draft-15..17 four-pass CIDs must not decode to
    // their server ID under draft-21's algorithm (negative tests, as test/cid/vectors.test.ts).
    const vectors = loadVectors('draft-21.json').filter(
      (v) => v.algorithm !== 'plaintext' && v.self_consistent !== false && v.key !== null,
    );
    expect(vectors.filter((v) => v.algorithm === 'single_pass').length).toBeGreaterThanOrEqual(1);
    expect(vectors.filter((v) => v.algorithm === 'four_pass').length).toBeGreaterThanOrEqual(4);
    const x = await XdpRunner.start();
    try {
      for (const v of vectors) {
        // One config per vector (two vectors may share a config id): a new generation each.
        const cfg = cidConfig(
          [{ configId: v.cr_bits, serverIdLength: v.sid_len, nonceLength: v.nonce_len, key: v.key as string }],
          [{ configId: v.cr_bits, serverId: v.server_id as string }],
        );
        await x.load(cfg, unreachable(cfg));
        const [r] = await x.run([cidFrame(Buffer.from(v.cid, 'hex'))]);
        const want = v.algorithm === 'four_pass_legacy_d15_d17' ? 'dropped_no_backend' : 'routed';
        expect({ name: r.name, backend: r.backend }, `${v.algorithm} ${v.cid}`).toEqual({
          name: want,
          backend: want === 'routed' ? 0 : -1,
        });
      }
    } finally {
      await x.close();
    }
  });

  it(
    'every config shape (server ID 1..15 octets, nonce 4..19-sid): library-minted CIDs route',
    { timeout: 120_000 },
    async () => {
      // draft-21 §5.3 allows serverIdLength + nonceLength <= 19: 120 shapes, single-pass at 16,
      // four-pass (three passes when the server ID is no longer than the nonce) elsewhere. Seven
      // shapes per generation (config ids 0..6), two CIDs each.
      const r = rng(0x4e5);
      const shapes: { sidLength: number; nonceLength: number }[] = [];
      for (let sidLength = 1; sidLength <= 15; sidLength++)
        for (let nonceLength = 4; sidLength + nonceLength <= 19; nonceLength++) shapes.push({ sidLength, nonceLength });
      expect(shapes.length).toBe(120);
      const x = await XdpRunner.start();
      let routed = 0;
      try {
        for (let first = 0; first < shapes.length; first += 7) {
          const group = shapes.slice(first, first + 7);
          const specs = group.map((s, configId) => ({
            configId,
            serverIdLength: s.sidLength,
            nonceLength: s.nonceLength,
            key: Buffer.from(Array.from({ length: 16 }, () => r() & 0xff)).toString('hex'),
          }));
          const sids: { configId: number; serverId: string }[] = [];
          const frames: Buffer[] = [];
          specs.forEach((spec) => {
            const lib = configFromSpec(spec);
            for (let k = 0; k < 2; k++) {
              const sid = Buffer.from(Array.from({ length: spec.serverIdLength }, () => r() & 0xff));
              sid[0] = (sid[0] & 0xfe) | k; // the two server IDs of a config differ
              const nonce = Buffer.from(Array.from({ length: spec.nonceLength }, () => r() & 0xff));
              sids.push({ configId: spec.configId, serverId: sid.toString('hex') });
              frames.push(cidFrame(encodeConnectionId(lib, sid, nonce)));
            }
          });
          const cfg = cidConfig(specs, sids);
          await x.load(cfg, unreachable(cfg));
          const results = await x.run(frames);
          results.forEach((res, i) => {
            expect({ name: res.name, backend: res.backend }, `shape ${first + (i >> 1)}`).toEqual({
              name: 'routed',
              backend: i,
            });
            routed++;
          });
        }
      } finally {
        await x.close();
      }
      expect(routed).toBe(240);
    },
  );
});

// ---- random and mutated datagrams ----------------------------------------------------------

describe('XDP decision = decide(): random and mutated datagrams', () => {
  it(`${RANDOM_DATAGRAMS} seeded datagrams, two health views, IPv4 and IPv6`, async () => {
    const next = generator(0x15c0ffee, fx);
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
    const results: XdpResult[] = [];
    const decisions: Decision[] = [];
    const tally = new Map<string, number>();
    const outcomes = new Map<string, number>();
    const fallbackBackends = [new Set<number>(), new Set<number>()];
    const routedBy = new Map<number, number>();
    const x = await XdpRunner.start();
    let counters: Map<string, number>;
    try {
      for (const health of views) {
        const state = buildRouterState(config, health);
        await x.load(config, health);
        const frames: Buffer[] = [];
        for (let i = 0; i < RANDOM_DATAGRAMS / views.length; i++) {
          const f: Frame = {
            family: r() & 1 ? 6 : 4,
            clientPort: 1 + (r() % 65535),
            vipPort: VIP_PORT,
            datagram: next(),
          };
          frames.push(frameOf(f));
          decisions.push({ ...decide(f.datagram, tupleOf(f), state) });
        }
        results.push(...(await x.run(frames)));
      }
      counters = await x.counters();
    } finally {
      await x.close();
    }
    expect(results.length).toBe(RANDOM_DATAGRAMS);
    let mismatches = 0;
    results.forEach((res, i) => {
      tally.set(res.name, (tally.get(res.name) ?? 0) + 1);
      outcomes.set(res.outcome, (outcomes.get(res.outcome) ?? 0) + 1);
      if (res.name.startsWith('fallback_')) fallbackBackends[i < RANDOM_DATAGRAMS / 2 ? 0 : 1].add(res.backend);
      if (res.name === 'routed') routedBy.set(decisions[i].configId, (routedBy.get(decisions[i].configId) ?? 0) + 1);
      try {
        checkAgainst(decisions[i], res, `datagram ${i}`);
      } catch (e) {
        if (++mismatches <= 5) console.error(e);
      }
    });
    expect(mismatches).toBe(0);
    // Not vacuous: a large share is routed in BPF, and the corpus reaches every QUIC reason.
    expect(tally.get('routed') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 4);
    for (const name of REASON_NAMES.slice(Reason.FALLBACK_INITIAL, Reason.FALLBACK_BACKEND_DOWN)) {
      expect(tally.get(name) ?? 0, name).toBeGreaterThan(100);
    }
    for (const name of [
      'fallback_backend_down',
      'fallback_unknown_version',
      'fallback_version_negotiation',
      'dropped_malformed',
    ]) {
      expect(tally.get(name) ?? 0, name).toBeGreaterThan(10);
    }
    // The fallback spreads over the Maglev table of each view: all four backends `up` in the
    // first; only `a` is `up` in the second (b draining, c down, d unreachable take no new flows).
    expect([...fallbackBackends[0]].map(nameOf).sort()).toEqual(['a', 'b', 'c', 'd']);
    expect([...fallbackBackends[1]].map(nameOf)).toEqual(['a']);
    // Every encrypted config routes thousands of CIDs through the BPF AES: a wrong table entry or
    // round key scrambles a share of them, which then mismatch decide() above.
    for (const id of encrypted) expect(routedBy.get(id) ?? 0, `routed under config ${id}`).toBeGreaterThan(1000);
    // The per-CPU counters count each datagram once, by outcome: with no outer sources, what
    // has a backend passes up as no_source_address; the rest keeps its reason.
    for (const name of x.reasons) expect(counters.get(name), name).toBe(outcomes.get(name) ?? 0);
    for (const res of results) expect(res.verdict).toBe(res.name.startsWith('dropped_') ? 'drop' : 'pass');
    expect(outcomes.get('no_source_address') ?? 0).toBe(results.filter((res) => res.backend >= 0).length);
    console.log(`xdp differential: ${JSON.stringify(Object.fromEntries(tally))}`);
    console.log(`xdp routed by config: ${JSON.stringify(Object.fromEntries(routedBy))}`);
  }, 300_000);
});
