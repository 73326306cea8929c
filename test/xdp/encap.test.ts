// Encapsulation and transmit of the XDP fast path (xdp/encap.h, issue 15): every datagram the
// program gives a backend (CID-routed or the fallback's) leaves as the Node forwarder would send
// it (src/lb/forwarder.ts forward()): outer IP/UDP from the local end of the forwarder's socket to
// that backend (map "sources", per backend) to the backend's address, the PROXY v2 header the
// forwarder's ProxyHeaderTemplate writes, the untouched datagram; Ethernet addresses and egress
// from the neighbour entries; XDP_TX on the ingress interface, XDP_REDIRECT to another one. What
// decide() drops is dropped (XDP_DROP, frame unchanged); what cannot be sent passes up unchanged
// with its reason.
// The program runs in the agent quic-lb serve runs (XdpRunner, test/xdp/harness.ts), its maps
// written from a real config by src/lb/xdp-maps.ts. Its fib lookup runs in the agent's network
// namespace: this test creates its own (`qlbxenc-<pid>`, deleted at the end) with two veth pairs,
// addresses, routes and permanent neighbour entries, and runs the agent in it. Needs root, ip,
// clang, cc, libbpf-dev. No skip.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Decision, type LbConfig, REASON_NAMES, Reason, buildRouterState, decide } from '../../src/lb/index.js';
import { XDP_MAPS } from '../../src/lb/xdp-maps.js';
import {
  type ParsedEndpoint,
  ProxyHeaderTemplate,
  formatRetryTokenKey,
  generateRetryTokenKey,
} from '../../src/wire/index.js';
import {
  QUIC_V1,
  QUIC_V2,
  SIDS,
  V1,
  V2,
  backendDocs,
  cid,
  longHeader,
  rng,
  shortHeader,
  testConfig,
} from '../lb/fixtures.js';
import { ROUTER_ROWS } from '../lb/router-rows.js';
import {
  CLIENT4_TEXT,
  CLIENT6_TEXT,
  type Frame,
  type XdpResult,
  XdpRunner,
  cleanup,
  generator,
  ipHeader,
  octetsOf,
  onesSum,
  pseudoHeader,
  xdpFixture,
} from './harness.js';

const RANDOM_DATAGRAMS = 100_000;
/** Frames per agent request in the random test. */
const CHUNK = 5_000;
const NS = `qlbxenc-${process.pid}`;

/** The LB's interfaces in the namespace: frames come in on qx0; backends a, b are behind qx0
 *  (XDP_TX), c, d behind qx2 (XDP_REDIRECT). Backend families: a, c IPv4; b, d IPv6. */
const IFACES = [
  { name: 'qx0', peer: 'qx1', mac: '02:00:00:00:00:a0', v4: '10.77.0.1/24', v6: 'fd77::1/64' },
  { name: 'qx2', peer: 'qx3', mac: '02:00:00:00:00:a2', v4: '10.78.0.1/24', v6: 'fd78::1/64' },
];
const INGRESS = 'qx0';
/** `source`: the LB's address toward the backend and the (distinct) port of the Node forwarder's
 *  socket to it: the outer source of what XDP sends there. */
const BACKENDS = [
  { address: '10.77.0.10', port: 4433, family: 4, dev: 'qx0', mac: '02:00:00:00:0b:0a', source: '10.77.0.1' },
  { address: 'fd77::10', port: 4434, family: 6, dev: 'qx0', mac: '02:00:00:00:0b:0b', source: 'fd77::1' },
  { address: '10.78.0.10', port: 4435, family: 4, dev: 'qx2', mac: '02:00:00:00:0b:0c', source: '10.78.0.1' },
  { address: 'fd78::10', port: 4436, family: 6, dev: 'qx2', mac: '02:00:00:00:0b:0d', source: 'fd78::1' },
] as const;
/** MapInputs.sources: per backend index, as XdpPlane takes them from Forwarder.upstreamSources(). */
const SOURCES: ParsedEndpoint[] = BACKENDS.map((b, i) => ({ address: b.source, port: 41001 + i, family: b.family }));
const RETURN_PORT = 4999;
const HMAC_KEY = '00112233445566778899aabbccddeeff';

const text = (address: string, port: number, family: 4 | 6): string =>
  family === 4 ? `${address}:${port}` : `[${address}]:${port}`;
const doc = {
  listen: ['203.0.113.1:443', '[2001:db8:1::1]:443'],
  backends: backendDocs(BACKENDS.map((b) => text(b.address, b.port, b.family))),
  returnPath: { mode: 'via-lb', listen: `${BACKENDS[0].source}:${RETURN_PORT}` },
};
const fx = xdpFixture(testConfig(doc));
const signing = testConfig({ ...doc, returnPath: { ...doc.returnPath, hmacKey: HMAC_KEY, signForward: true } });
/** The config with backend a (index 0) at another address. */
const movingA = (address: string): LbConfig =>
  testConfig({
    ...doc,
    backends: backendDocs(BACKENDS.map((b, i) => text(i === 0 ? address : b.address, b.port, b.family))),
  });
const VIP_PORT = fx.vipOf(4).port;
const FALLBACK_NAMES = REASON_NAMES.filter((n) => n.startsWith('fallback_'));

// ---- the namespace and the runner ----------------------------------------------------------

let nsUp = false;

function ip(...args: string[]): void {
  execFileSync('ip', ['-n', NS, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Creates the namespace once; throws naming what it needs when it cannot. */
function namespace(): string {
  if (nsUp) return NS;
  try {
    execFileSync('ip', ['netns', 'add', NS], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`cannot create network namespace ${NS}: needs root and ip (iproute2): ${(e as Error).message}`);
  }
  nsUp = true;
  ip('link', 'set', 'lo', 'up');
  for (const i of IFACES) {
    ip('link', 'add', i.name, 'type', 'veth', 'peer', 'name', i.peer);
    ip('link', 'set', i.name, 'address', i.mac);
    ip('link', 'set', i.name, 'up');
    ip('link', 'set', i.peer, 'up');
    ip('addr', 'add', i.v4, 'dev', i.name);
    ip('-6', 'addr', 'add', i.v6, 'dev', i.name, 'nodad');
  }
  for (const b of BACKENDS) ip('neigh', 'replace', b.address, 'lladdr', b.mac, 'dev', b.dev, 'nud', 'permanent');
  // bpf_fib_lookup forwards from the ingress interface: forwarding must be on (xdp/README.md).
  forwarding(1);
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  return NS;
}

function forwarding(on: 0 | 1): void {
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', `net.ipv4.conf.all.forwarding=${on}`]);
}

/** An agent in the namespace with `config` (all up) loaded, for the length of `body`. */
async function withRunner(
  body: (r: XdpRunner) => Promise<void>,
  config: LbConfig = fx.config,
  sources: readonly (ParsedEndpoint | undefined)[] = SOURCES,
): Promise<void> {
  const r = await XdpRunner.start(namespace());
  try {
    await r.load(config, fx.healthOf(), { sources });
    await body(r);
  } finally {
    await r.close();
  }
}

/** Frames through the program, arriving on INGRESS, in requests of CHUNK. */
async function runAll(r: XdpRunner, frames: readonly Buffer[]): Promise<XdpResult[]> {
  const out: XdpResult[] = [];
  for (let i = 0; i < frames.length; i += CHUNK) out.push(...(await r.run(frames.slice(i, i + CHUNK), INGRESS)));
  return out;
}

afterAll(async () => {
  await cleanup();
  if (nsUp) execFileSync('ip', ['netns', 'delete', NS]);
});

// ---- the expected frame --------------------------------------------------------------------

const templates = new Map(
  ([4, 6] as const).map((f) => {
    const v = fx.vipOf(f);
    return [f, new ProxyHeaderTemplate({ fixedAddr: v.address, fixedPort: v.port, fixedSide: 'dst', ringSize: 1 })];
  }),
);

/** [PROXY v2 header, datagram] exactly as the Node forwarder hands them to its socket. */
function nodePayload(f: Frame): Buffer {
  const tpl = templates.get(f.family) as ProxyHeaderTemplate;
  const header = Buffer.alloc(tpl.length);
  expect(tpl.write(header, 0, f.family === 4 ? CLIENT4_TEXT : CLIENT6_TEXT, f.clientPort)).toBe(tpl.length);
  return Buffer.concat([header, f.datagram]);
}

const mac = (s: string): Buffer => Buffer.from(s.replaceAll(':', ''), 'hex');

/** Asserts `x` is datagram `f` sent to backend `index` with `outcome` (its decision): every
 *  octet of the frame, and both checksums verified by summing (RFC 1071). `zeroCheck`: the
 *  incoming UDP checksum was 0. */
function checkSent(x: XdpResult, f: Frame, index: number, outcome: string, what: string, zeroCheck = false): void {
  const b = BACKENDS[index];
  const iface = IFACES.find((i) => i.name === b.dev) as (typeof IFACES)[number];
  expect({ outcome: x.outcome, verdict: x.verdict, egress: x.egress }, what).toEqual({
    outcome,
    verdict: b.dev === INGRESS ? 'tx' : 'redirect',
    egress: b.dev,
  });
  expect(x.out, `${what}: an output frame`).toBeDefined();
  const out = x.out as Buffer;
  const payload = nodePayload(f);
  const src = octetsOf(b.source, b.family);
  const dst = octetsOf(b.address, b.family);
  const ipLen = b.family === 4 ? 20 : 40;
  const udpAt = 14 + ipLen;
  // Ethernet: neighbour entry -> egress interface's address.
  const eth = Buffer.concat([mac(b.mac), mac(iface.mac), Buffer.from(b.family === 4 ? '0800' : '86dd', 'hex')]);
  const ip = ipHeader(src, dst, 8 + payload.length, true); // DF, ID 0
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(SOURCES[index].port, 0);
  udp.writeUInt16BE(b.port, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  // Every octet but the two checksums, then the checksums by summing.
  const seen = Buffer.from(out);
  if (b.family === 4) seen.writeUInt16BE(0, 14 + 10);
  seen.writeUInt16BE(0, udpAt + 6);
  const expected = Buffer.concat([eth, ip, udp, payload]);
  if (!seen.equals(expected)) {
    let at = 0;
    while (at < seen.length && seen[at] === expected[at]) at++;
    const around = (b: Buffer): string => b.subarray(Math.max(0, at - 4), at + 8).toString('hex');
    expect(`length ${seen.length}, from octet ${at}: ${around(seen)}`, `${what}: frame`).toBe(
      `length ${expected.length}, from octet ${at}: ${around(expected)}`,
    );
  }
  if (b.family === 4) expect(onesSum(out.subarray(14, 34)), `${what}: IPv4 header checksum`).toBe(0xffff);
  const check = out.readUInt16BE(udpAt + 6);
  if (zeroCheck) {
    expect(check, `${what}: no UDP checksum in, none out`).toBe(0);
  } else {
    expect(check, `${what}: UDP checksum present`).not.toBe(0);
    const sum = onesSum(pseudoHeader(src, dst, 8 + payload.length), out.subarray(udpAt));
    expect(sum, `${what}: UDP checksum`).toBe(0xffff);
  }
}

/** Asserts `x` passed up unchanged with `outcome`. */
function checkPassed(x: XdpResult, outcome: string, what: string): void {
  checkKept(x, outcome, 'pass', what);
}

/** Asserts `x` left the frame as it came, with `outcome` and `verdict` (pass or drop). */
function checkKept(x: XdpResult, outcome: string, verdict: 'pass' | 'drop', what: string): void {
  expect({ outcome: x.outcome, verdict: x.verdict, egress: x.egress, out: x.out }, what).toEqual({
    outcome,
    verdict,
    egress: '-',
    out: undefined,
  });
}

/** decide()'s decision: sent (outcome: the decision) when it has a backend, else dropped as
 *  decide() drops it (dropped_malformed, dropped_no_backend). True when sent. */
function checkXmit(d: Decision, x: XdpResult, f: Frame, what: string): boolean {
  fx.checkAgainst(d, x, what);
  const name = REASON_NAMES[d.reason];
  if (d.backend >= 0) {
    checkSent(x, f, d.backend, name, what);
    return true;
  }
  expect(name, `${what}: decide() gives a backend unless it drops`).toMatch(/^dropped_/);
  checkKept(x, name, 'drop', what);
  return false;
}

/** Map "counters" counts each datagram once, by its outcome: exactly the tally of `results`. */
async function checkCounters(r: XdpRunner, results: readonly XdpResult[]): Promise<void> {
  const tally = new Map<string, number>();
  for (const x of results) tally.set(x.outcome, (tally.get(x.outcome) ?? 0) + 1);
  const counted = [...(await r.counters())].filter(([, n]) => n > 0);
  expect(Object.fromEntries(counted), 'counters').toEqual(Object.fromEntries(tally));
}

// ---- the tests -----------------------------------------------------------------------------

describe('XDP encapsulation = the Node forwarder: the router fixture table', () => {
  it('every row, IPv4 and IPv6 clients, to IPv4 and IPv6 backends', { timeout: 180_000 }, async () => {
    await withRunner(async (r) => {
      const results: XdpResult[] = [];
      const expected: { d: Decision; f: Frame; what: string }[] = [];
      for (const row of ROUTER_ROWS) {
        const health = fx.healthOf(row.down);
        await r.load(fx.config, health, { sources: SOURCES });
        const state = buildRouterState(fx.config, health);
        const frames: Buffer[] = [];
        for (const family of [4, 6] as const) {
          const f: Frame = { family, clientPort: 40000 + expected.length, vipPort: VIP_PORT, datagram: row.datagram };
          frames.push(fx.frameOf(f));
          expected.push({
            d: { ...decide(row.datagram, fx.tupleOf(f), state) },
            f,
            what: `${row.desc} (IPv${family})`,
          });
        }
        results.push(...(await r.run(frames, INGRESS)));
      }
      expect(results.length).toBe(expected.length);
      const sent = expected.filter((e, i) => checkXmit(e.d, results[i], e.f, e.what));
      // CID-routed (every routed row, both families) and every fallback reason are sent.
      const outcomes = sent.map((e) => REASON_NAMES[e.d.reason]);
      const routedRows = ROUTER_ROWS.filter((row) => row.reason === Reason.ROUTED).length;
      expect(routedRows).toBeGreaterThanOrEqual(13);
      expect(outcomes.filter((o) => o === 'routed').length).toBe(2 * routedRows);
      expect([...new Set(outcomes)].sort()).toEqual(['routed', ...FALLBACK_NAMES].sort());
      await checkCounters(r, results);
      // Both client families reach both backend families, through both verdicts.
      const combos = new Set(sent.map((e) => `${e.f.family}>${BACKENDS[e.d.backend].family}`));
      expect([...combos].sort()).toEqual(['4>4', '4>6', '6>4', '6>6']);
      expect(new Set(results.map((x) => x.verdict))).toEqual(new Set(['tx', 'redirect', 'drop']));
    });
  });
});

describe('XDP encapsulation = the Node forwarder: random and mutated datagrams', () => {
  it(`${RANDOM_DATAGRAMS} seeded datagrams, IPv4 and IPv6 clients`, { timeout: 600_000 }, async () => {
    const next = generator(0x15e4cab, fx);
    const r = rng(78);
    const state = buildRouterState(fx.config, fx.healthOf());
    const cases: { d: Decision; f: Frame }[] = [];
    for (let i = 0; i < RANDOM_DATAGRAMS; i++) {
      const f: Frame = { family: r() & 1 ? 6 : 4, clientPort: 1 + (r() % 65535), vipPort: VIP_PORT, datagram: next() };
      cases.push({ d: { ...decide(f.datagram, fx.tupleOf(f), state) }, f });
    }
    await withRunner(async (runner) => {
      const results = await runAll(
        runner,
        cases.map((c) => fx.frameOf(c.f)),
      );
      expect(results.length).toBe(RANDOM_DATAGRAMS);
      let mismatches = 0;
      const verdicts = new Map<string, number>();
      results.forEach((x, i) => {
        const key = `${x.verdict}:${x.egress}`;
        verdicts.set(key, (verdicts.get(key) ?? 0) + 1);
        try {
          checkXmit(cases[i].d, x, cases[i].f, `datagram ${i}`);
        } catch (e) {
          if (++mismatches <= 5) console.error(e);
        }
      });
      expect(mismatches).toBe(0);
      // Not vacuous: a large share is sent, CID-routed and fallback, through both verdicts.
      const routed = results.filter((x) => x.outcome === 'routed' && x.out !== undefined).length;
      const fallback = results.filter((x) => FALLBACK_NAMES.includes(x.outcome) && x.out !== undefined).length;
      expect(routed).toBeGreaterThan(RANDOM_DATAGRAMS / 4);
      expect(fallback).toBeGreaterThan(RANDOM_DATAGRAMS / 4);
      expect(verdicts.get('tx:qx0') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 10);
      expect(verdicts.get('redirect:qx2') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 20);
      await checkCounters(runner, results);
      console.log(
        `xdp encapsulation: ${JSON.stringify(Object.fromEntries(verdicts))}, routed ${routed}, fallback ${fallback}`,
      );
    });
  });
});

describe('XDP passes up what it cannot send, unchanged', () => {
  const NAMES = Object.keys(SIDS) as (keyof typeof SIDS)[];
  const noChecksum = (b: Buffer): void => {
    b.writeUInt16BE(0, b.readUInt16BE(12) === 0x0800 ? 40 : 60);
  };
  /** The steps, in order: a change of the maps, or a datagram CID-routed to backend `to` (from
   *  an IPv`family` client) with its outcome (`zero-check`: routed, no UDP checksum in or out). */
  type Step =
    | { change: string; apply: (r: XdpRunner) => Promise<void> }
    | {
        to: keyof typeof SIDS;
        family: 4 | 6;
        expect: string;
        payload?: number;
        mutate?: (b: Buffer) => void;
        pad?: boolean;
      };
  const load =
    (config: LbConfig, sources: readonly (ParsedEndpoint | undefined)[] = SOURCES) =>
    (r: XdpRunner): Promise<void> =>
      r.load(config, fx.healthOf(), { sources });
  /** Clears backend 0's "backends" entry in both generations behind MapWriter's back: a state it
   *  never writes (every backend of a config has an address), the program's guard for it. */
  const clearBackend0 = async (r: XdpRunner): Promise<void> => {
    const perGen = XDP_MAPS.backends.entries / 2;
    const empty = '00'.repeat(XDP_MAPS.backends.value);
    await r.agent.apply([0, 1].map((g) => `fill backends ${g * perGen} ${empty}`));
  };
  const steps: Step[] = [
    { to: 'a', family: 4, expect: 'routed' },
    { to: 'd', family: 6, expect: 'routed' },
    // Ethernet padding after the UDP payload is not forwarded.
    { to: 'a', family: 4, pad: true, expect: 'routed' },
    // IPv4 checksum 0 (none): kept to an IPv4 backend; an IPv6 one needs a checksum.
    { to: 'a', family: 6, expect: 'routed' },
    { to: 'c', family: 4, mutate: noChecksum, expect: 'zero-check' },
    { to: 'b', family: 4, mutate: noChecksum, expect: 'no_udp_checksum' },
    { to: 'a', family: 6, mutate: noChecksum, expect: 'no_udp_checksum' },
    // MTU 1500 on qx2: 20 + 8 + 28 + 1444 = 1500 fits, one more octet does not.
    { to: 'c', family: 4, payload: 1444 - 10, expect: 'routed' },
    { to: 'c', family: 4, payload: 1445 - 10, expect: 'too_big' },
    // Backend a at an address without a neighbour entry, then without a route.
    { change: 'a without a neighbour', apply: load(movingA('10.77.0.99')) },
    { to: 'a', family: 4, expect: 'fib_no_neighbour' },
    { to: 'c', family: 4, expect: 'routed' },
    { change: 'a without a route', apply: load(movingA('10.99.0.1')) },
    { to: 'a', family: 4, expect: 'fib_no_route' },
    // No source for b (no socket to it yet), one of the wrong family for d: they pass up, the
    // others are still sent, each from its own source.
    {
      change: 'sources of b and d missing or wrong',
      apply: load(fx.config, [SOURCES[0], undefined, SOURCES[2], SOURCES[0]]),
    },
    { to: 'b', family: 4, expect: 'no_source_address' },
    { to: 'd', family: 6, expect: 'no_source_address' },
    { to: 'c', family: 4, expect: 'routed' },
    { to: 'a', family: 6, expect: 'routed' },
    // signForward: the Node forwarder signs, XDP passes up.
    { change: 'signForward', apply: load(signing) },
    { to: 'd', family: 6, expect: 'sign_forward' },
    { to: 'a', family: 4, expect: 'sign_forward' },
    { change: 'no signForward', apply: load(fx.config) },
    { to: 'd', family: 6, expect: 'routed' },
    // No backend address at all; the next write restores it.
    { change: 'backend 0 entry cleared', apply: clearBackend0 },
    { to: 'a', family: 4, expect: 'no_backend_address' },
    { to: 'b', family: 4, expect: 'routed' },
    { change: 'reload', apply: load(fx.config) },
    { to: 'a', family: 4, expect: 'routed' },
  ];
  it(
    'no neighbour, no route, no address, no source, too big, no checksum, signForward',
    { timeout: 120_000 },
    async () => {
      await withRunner(async (r) => {
        const results: XdpResult[] = [];
        let change = 'initial maps';
        for (const [i, s] of steps.entries()) {
          if ('change' in s) {
            change = s.change;
            await s.apply(r);
            continue;
          }
          const what = `step ${i} (${change}: ${s.to} from IPv${s.family}, ${s.expect})`;
          const f: Frame = {
            family: s.family,
            clientPort: 5555,
            vipPort: VIP_PORT,
            datagram: shortHeader(cid(0, SIDS[s.to][0]), s.payload),
          };
          const frame = fx.frameOf(f, s.mutate);
          const [x] = await r.run([s.pad ? Buffer.concat([frame, Buffer.alloc(10)]) : frame], INGRESS);
          results.push(x);
          const backend = NAMES.indexOf(s.to);
          expect({ name: x.name, backend: x.backend }, what).toEqual({ name: 'routed', backend });
          if (s.expect === 'routed' || s.expect === 'zero-check') {
            checkSent(x, f, backend, 'routed', what, s.expect === 'zero-check');
          } else {
            checkPassed(x, s.expect, what);
          }
        }
        await checkCounters(r, results);
      });
    },
  );
});

describe('XDP needs forwarding on the ingress interface', () => {
  it('passes up as fib_forwarding_off when it is off, sends when it is on', { timeout: 120_000 }, async () => {
    const f: Frame = { family: 4, clientPort: 6000, vipPort: VIP_PORT, datagram: shortHeader(cid(0, SIDS.a[0])) };
    await withRunner(async (r) => {
      forwarding(0);
      let off: XdpResult;
      try {
        [off] = await r.run([fx.frameOf(f)], INGRESS);
      } finally {
        forwarding(1);
      }
      checkPassed(off, 'fib_forwarding_off', 'forwarding off');
      const [on] = await r.run([fx.frameOf(f)], INGRESS);
      checkSent(on, f, 0, 'routed', 'forwarding on');
    });
  });
});

describe('XDP leaves client Initials to the Retry offload', () => {
  it('retry on: Initials of no backend pass up as retry_offload, the rest is sent', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qlbxenc-'));
    try {
      const keyFile = join(dir, 'retry-1.key');
      writeFileSync(keyFile, formatRetryTokenKey(generateRetryTokenKey(1)), { mode: 0o600 });
      const retrying = testConfig({ ...doc, retry: { mode: 'always', keyFiles: [keyFile] } });
      const unroutable = Buffer.from('1122334455667788', 'hex'); // codepoint 0, no such server ID
      const frame = (family: 4 | 6, datagram: Buffer): Frame => ({
        family,
        clientPort: 7000,
        vipPort: VIP_PORT,
        datagram,
      });
      const initial1 = frame(4, longHeader(QUIC_V1, V1.INITIAL, unroutable));
      const initial2 = frame(6, longHeader(QUIC_V2, V2.INITIAL, unroutable));
      const routedInitial = frame(4, longHeader(QUIC_V1, V1.INITIAL, cid(0, SIDS.b[0])));
      const shortUnknown = frame(6, shortHeader(unroutable));
      const state = buildRouterState(retrying, fx.healthOf());
      const decided = (f: Frame): Decision => ({ ...decide(f.datagram, fx.tupleOf(f), state) });
      // The cases are what they claim (decide() does not look at retry).
      expect([initial1, initial2, routedInitial, shortUnknown].map((f) => REASON_NAMES[decided(f).reason])).toEqual([
        'fallback_initial',
        'fallback_initial',
        'routed',
        'fallback_unknown_server_id',
      ]);
      await withRunner(async (r) => {
        const results = await r.run(
          [initial1, initial2, routedInitial, shortUnknown].map((f) => fx.frameOf(f)),
          INGRESS,
        );
        [initial1, initial2].forEach((f, i) => {
          fx.checkAgainst(decided(f), results[i], `Initial v${i + 1}`);
          expect(results[i].backend, `Initial v${i + 1}: the fallback's backend`).toBeGreaterThanOrEqual(0);
          checkPassed(results[i], 'retry_offload', `Initial v${i + 1}`);
        });
        expect(checkXmit(decided(routedInitial), results[2], routedInitial, 'routed Initial')).toBe(true);
        expect(checkXmit(decided(shortUnknown), results[3], shortUnknown, 'short header, fallback')).toBe(true);
        await checkCounters(r, results);
        // Retry off again: the same Initial is sent to its fallback backend.
        await r.load(fx.config, fx.healthOf(), { sources: SOURCES });
        const [off] = await r.run([fx.frameOf(initial1)], INGRESS);
        expect(checkXmit(decided(initial1), off, initial1, 'Initial, retry off')).toBe(true);
      }, retrying);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
