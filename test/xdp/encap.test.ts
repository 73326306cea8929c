// Encapsulation and transmit of the XDP fast path (xdp/encap.h, issue 15): every datagram the
// program routes leaves as the Node forwarder would send it (src/lb/forwarder.ts forward()):
// outer IP/UDP from the LB's source and return port to the backend, the PROXY v2 header the
// forwarder's ProxyHeaderTemplate writes, the untouched datagram; Ethernet addresses and egress
// from the neighbour entries; XDP_TX on the ingress interface, XDP_REDIRECT to another one. What
// cannot be sent passes up unchanged with its reason.
// The program's fib lookup runs in the runner's network namespace: this test creates its own
// (`qlbxenc-<pid>`, deleted at the end) with two veth pairs, addresses, routes and permanent
// neighbour entries, and runs the runner in it. Needs root, ip, clang, cc, libbpf-dev. No skip.
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { type Decision, type LbConfig, buildRouterState, decide } from '../../src/lb/index.js';
import { ProxyHeaderTemplate } from '../../src/wire/index.js';
import { SIDS, backendDocs, cid, rng, shortHeader, testConfig } from '../lb/fixtures.js';
import { ROUTER_ROWS } from '../lb/router-rows.js';
import {
  CLIENT4_TEXT,
  CLIENT6_TEXT,
  type Frame,
  type XdpResult,
  cleanup,
  generator,
  octetsOf,
  onesSum,
  pseudoHeader,
  runXdp,
  setup,
  xdpFixture,
} from './harness.js';

const RANDOM_DATAGRAMS = 100_000;
const NS = `qlbxenc-${process.pid}`;

/** The LB's interfaces in the namespace: frames come in on qx0; backends a, b are behind qx0
 *  (XDP_TX), c, d behind qx2 (XDP_REDIRECT). Backend families: a, c IPv4; b, d IPv6. */
const IFACES = [
  { name: 'qx0', peer: 'qx1', mac: '02:00:00:00:00:a0', v4: '10.77.0.1/24', v6: 'fd77::1/64' },
  { name: 'qx2', peer: 'qx3', mac: '02:00:00:00:00:a2', v4: '10.78.0.1/24', v6: 'fd78::1/64' },
];
const INGRESS = 'qx0';
const BACKENDS = [
  { address: '10.77.0.10', port: 4433, family: 4, dev: 'qx0', mac: '02:00:00:00:0b:0a' },
  { address: 'fd77::10', port: 4434, family: 6, dev: 'qx0', mac: '02:00:00:00:0b:0b' },
  { address: '10.78.0.10', port: 4435, family: 4, dev: 'qx2', mac: '02:00:00:00:0b:0c' },
  { address: 'fd78::10', port: 4436, family: 6, dev: 'qx2', mac: '02:00:00:00:0b:0d' },
] as const;
/** The LB's own addresses toward the backends: the outer sources. */
const SOURCE = { 4: '10.77.0.1', 6: 'fd77::1' } as const;
const RETURN_PORT = 4999;
const HMAC_KEY = '00112233445566778899aabbccddeeff';

const doc = {
  listen: ['203.0.113.1:443', '[2001:db8:1::1]:443'],
  backends: backendDocs(BACKENDS.map((b) => (b.family === 4 ? `${b.address}:${b.port}` : `[${b.address}]:${b.port}`))),
  returnPath: { mode: 'via-lb', listen: `${SOURCE[4]}:${RETURN_PORT}` },
};
const fx = xdpFixture(testConfig(doc));
const signing = testConfig({ ...doc, returnPath: { ...doc.returnPath, hmacKey: HMAC_KEY, signForward: true } });
const VIP_PORT = fx.vipOf(4).port;

/** The transmit maps from a config, as the control side fills them: each backend's forwarding
 *  address, the outer source per family (the LB's address, port returnPath.listen) and the
 *  signForward flag. */
function xmitLines(cfg: LbConfig): string[] {
  const port = cfg.returnPath.listen?.port ?? 0;
  return [
    ...cfg.backends.map(
      (b, i) =>
        `backend ${i} ${b.address.family} ${octetsOf(b.address.address, b.address.family).toString('hex')} ${b.address.port}`,
    ),
    ...([4, 6] as const).map((f) => `source ${f} ${octetsOf(SOURCE[f], f).toString('hex')} ${port}`),
    `flags ${cfg.returnPath.signForward ? 1 : 0}`,
    `ingress ${INGRESS}`,
  ];
}

// ---- the namespace -------------------------------------------------------------------------

let nsUp = false;

function ip(...args: string[]): void {
  execFileSync('ip', ['-n', NS, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Creates the namespace once (after setup() checked root and the tools). */
function namespace(): string {
  setup();
  if (nsUp) return NS;
  execFileSync('ip', ['netns', 'add', NS]);
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
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  return NS;
}

afterAll(() => {
  if (nsUp) execFileSync('ip', ['netns', 'delete', NS]);
  cleanup();
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

/** Asserts `x` is datagram `f` sent to backend `index`: every octet of the frame, and both
 *  checksums verified by summing (RFC 1071). `zeroCheck`: the incoming UDP checksum was 0. */
function checkSent(x: XdpResult, f: Frame, index: number, what: string, zeroCheck = false): void {
  const b = BACKENDS[index];
  const iface = IFACES.find((i) => i.name === b.dev) as (typeof IFACES)[number];
  expect({ outcome: x.outcome, verdict: x.verdict, egress: x.egress }, what).toEqual({
    outcome: 'routed',
    verdict: b.dev === INGRESS ? 'tx' : 'redirect',
    egress: b.dev,
  });
  const out = x.out as Buffer;
  const payload = nodePayload(f);
  const src = octetsOf(SOURCE[b.family], b.family);
  const dst = octetsOf(b.address, b.family);
  const ipLen = b.family === 4 ? 20 : 40;
  const udpAt = 14 + ipLen;
  // Ethernet: neighbour entry -> egress interface's address.
  const eth = Buffer.concat([mac(b.mac), mac(iface.mac), Buffer.from(b.family === 4 ? '0800' : '86dd', 'hex')]);
  const ipHeader = Buffer.alloc(ipLen);
  if (b.family === 4) {
    ipHeader[0] = 0x45;
    ipHeader.writeUInt16BE(20 + 8 + payload.length, 2);
    ipHeader.writeUInt16BE(0x4000, 6); // DF, ID 0
    ipHeader[8] = 64;
    ipHeader[9] = 17;
    src.copy(ipHeader, 12);
    dst.copy(ipHeader, 16);
  } else {
    ipHeader[0] = 0x60;
    ipHeader.writeUInt16BE(8 + payload.length, 4);
    ipHeader[6] = 17;
    ipHeader[7] = 64;
    src.copy(ipHeader, 8);
    dst.copy(ipHeader, 24);
  }
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(RETURN_PORT, 0);
  udp.writeUInt16BE(b.port, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  // Every octet but the two checksums, then the checksums by summing.
  const seen = Buffer.from(out);
  if (b.family === 4) seen.writeUInt16BE(0, 14 + 10);
  seen.writeUInt16BE(0, udpAt + 6);
  const expected = Buffer.concat([eth, ipHeader, udp, payload]);
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
  expect({ outcome: x.outcome, verdict: x.verdict, egress: x.egress, out: x.out }, what).toEqual({
    outcome,
    verdict: 'pass',
    egress: '-',
    out: undefined,
  });
}

/** Sent when decide() CID-routes it under a plaintext config, else passed up with the decision. */
function checkXmit(d: Decision, x: XdpResult, f: Frame, what: string): boolean {
  fx.checkAgainst(d, x, what);
  if (x.name === 'routed') {
    checkSent(x, f, x.backend, what);
    return true;
  }
  checkPassed(x, x.name, what);
  return false;
}

// ---- the tests -----------------------------------------------------------------------------

describe('XDP encapsulation = the Node forwarder: the router fixture table', () => {
  it('every row, IPv4 and IPv6 clients, to IPv4 and IPv6 backends', { timeout: 120_000 }, () => {
    const ns = namespace();
    const lines = [...xmitLines(fx.config)];
    const expected: { d: Decision; f: Frame; what: string }[] = [];
    let first = true;
    for (const row of ROUTER_ROWS) {
      const health = fx.healthOf(row.down);
      lines.push(...(first ? fx.mapLines(health) : fx.serverLines(health)));
      first = false;
      const state = buildRouterState(fx.config, health);
      for (const family of [4, 6] as const) {
        const f: Frame = { family, clientPort: 40000 + expected.length, vipPort: VIP_PORT, datagram: row.datagram };
        lines.push(`frame ${fx.frameOf(f).toString('hex')}`);
        expected.push({ d: { ...decide(row.datagram, fx.tupleOf(f), state) }, f, what: `${row.desc} (IPv${family})` });
      }
    }
    const { results, counters } = runXdp(lines, ns);
    expect(results.length).toBe(expected.length);
    const sent = expected.filter((e, i) => checkXmit(e.d, results[i], e.f, e.what));
    expect(sent.length).toBeGreaterThanOrEqual(14); // 7 plaintext rows x 2 families
    expect(counters.get('routed')).toBe(sent.length);
    // Both client families reach both backend families, through both verdicts.
    const combos = new Set(sent.map((e) => `${e.f.family}>${BACKENDS[e.d.backend].family}`));
    expect([...combos].sort()).toEqual(['4>4', '4>6', '6>4', '6>6']);
  });
});

describe('XDP encapsulation = the Node forwarder: random and mutated datagrams', () => {
  it(`${RANDOM_DATAGRAMS} seeded datagrams, IPv4 and IPv6 clients`, { timeout: 600_000 }, () => {
    const ns = namespace();
    const next = generator(0x15e4cab);
    const r = rng(78);
    const health = fx.healthOf();
    const state = buildRouterState(fx.config, health);
    const lines = [...xmitLines(fx.config), ...fx.mapLines(health)];
    const frames: { d: Decision; f: Frame }[] = [];
    for (let i = 0; i < RANDOM_DATAGRAMS; i++) {
      const f: Frame = { family: r() & 1 ? 6 : 4, clientPort: 1 + (r() % 65535), vipPort: VIP_PORT, datagram: next() };
      lines.push(`frame ${fx.frameOf(f).toString('hex')}`);
      frames.push({ d: { ...decide(f.datagram, fx.tupleOf(f), state) }, f });
    }
    const { results, counters } = runXdp(lines, ns);
    expect(results.length).toBe(RANDOM_DATAGRAMS);
    let mismatches = 0;
    const verdicts = new Map<string, number>();
    results.forEach((x, i) => {
      const key = `${x.verdict}:${x.egress}`;
      verdicts.set(key, (verdicts.get(key) ?? 0) + 1);
      try {
        checkXmit(frames[i].d, x, frames[i].f, `datagram ${i}`);
      } catch (e) {
        if (++mismatches <= 5) console.error(e);
      }
    });
    expect(mismatches).toBe(0);
    // Not vacuous: a large share is sent, through both verdicts, and counted.
    const sent = results.filter((x) => x.outcome === 'routed').length;
    expect(sent).toBeGreaterThan(RANDOM_DATAGRAMS / 4);
    expect(verdicts.get('tx:qx0') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 10);
    expect(verdicts.get('redirect:qx2') ?? 0).toBeGreaterThan(RANDOM_DATAGRAMS / 20);
    expect(counters.get('routed')).toBe(sent);
    console.log(`xdp encapsulation: ${JSON.stringify(Object.fromEntries(verdicts))}`);
  });
});

describe('XDP passes up what it cannot send, unchanged', () => {
  const to = (name: keyof typeof SIDS, family: 4 | 6, datagram?: Buffer): Frame => ({
    family,
    clientPort: 5555,
    vipPort: VIP_PORT,
    datagram: datagram ?? shortHeader(cid(0, SIDS[name][0])),
  });
  const hex = (address: string, family: 4 | 6): string => octetsOf(address, family).toString('hex');
  const noChecksum = (b: Buffer): void => {
    b.writeUInt16BE(0, b.readUInt16BE(12) === 0x0800 ? 40 : 60);
  };
  /** Lines (map changes and frames) with what each frame must give. */
  const cases: { line?: string; f?: Frame; mutate?: (b: Buffer) => void; expect?: string; backend?: number }[] = [
    { f: to('a', 4), expect: 'routed', backend: 0 },
    { f: to('d', 6), expect: 'routed', backend: 3 },
    // Ethernet padding after the UDP payload is not forwarded.
    { f: to('a', 4), expect: 'padded', backend: 0 },
    // IPv4 checksum 0 (none): kept to an IPv4 backend; an IPv6 one needs a checksum.
    { f: to('a', 6), expect: 'routed', backend: 0 },
    { f: to('c', 4), mutate: noChecksum, expect: 'zero-check', backend: 2 },
    { f: to('b', 4), mutate: noChecksum, expect: 'no_udp_checksum' },
    { f: to('a', 6), mutate: noChecksum, expect: 'no_udp_checksum' },
    // MTU 1500 on qx2: 20 + 8 + 28 + 1444 = 1500 fits, one more octet does not.
    { f: to('c', 4, shortHeader(cid(0, SIDS.c[0]), 1444 - 10)), expect: 'routed', backend: 2 },
    { f: to('c', 4, shortHeader(cid(0, SIDS.c[0]), 1445 - 10)), expect: 'too_big' },
    // A backend address without a neighbour entry, then without a route, then none at all.
    { line: `backend 0 4 ${hex('10.77.0.99', 4)} 4433` },
    { f: to('a', 4), expect: 'fib_no_neighbour' },
    { line: `backend 0 4 ${hex('10.99.0.1', 4)} 4433` },
    { f: to('a', 4), expect: 'fib_no_route' },
    { line: `backend 0 0 00 0` },
    { f: to('a', 4), expect: 'no_backend_address' },
    // No IPv6 source: IPv6 backends pass up, IPv4 ones are still sent.
    { line: `source 0 00 0` },
    { f: to('b', 4), expect: 'no_source_address' },
    { f: to('c', 4), expect: 'routed', backend: 2 },
    // signForward: the Node forwarder signs, XDP passes up.
    ...xmitLines(signing).map((line) => ({ line })),
    { f: to('d', 6), expect: 'sign_forward' },
    ...xmitLines(fx.config).map((line) => ({ line })),
    { f: to('d', 6), expect: 'routed', backend: 3 },
  ];
  it('no neighbour, no route, no address, no source, too big, no checksum, signForward', { timeout: 120_000 }, () => {
    const ns = namespace();
    const lines = [...xmitLines(fx.config), ...fx.mapLines(fx.healthOf())];
    for (const c of cases) {
      if (c.line !== undefined) lines.push(c.line);
      else if (c.expect === 'padded') lines.push(`frame ${fx.frameOf(c.f as Frame).toString('hex')}${'00'.repeat(10)}`);
      else lines.push(`frame ${fx.frameOf(c.f as Frame, c.mutate).toString('hex')}`);
    }
    const { results } = runXdp(lines, ns);
    const frames = cases.filter((c) => c.f !== undefined);
    expect(results.length).toBe(frames.length);
    frames.forEach((c, i) => {
      const what = `case ${i} (${c.expect})`;
      const x = results[i];
      expect({ name: x.name, backend: x.backend }, what).toEqual({ name: 'routed', backend: x.backend });
      if (c.backend !== undefined) {
        expect(x.backend, what).toBe(c.backend);
        checkSent(x, c.f as Frame, c.backend, what, c.expect === 'zero-check');
      } else {
        checkPassed(x, c.expect as string, what);
      }
    });
  });
});

describe('XDP needs forwarding on the ingress interface', () => {
  it('passes up as fib_forwarding_off when it is off, sends when it is on', { timeout: 120_000 }, () => {
    const ns = namespace();
    const f: Frame = { family: 4, clientPort: 6000, vipPort: VIP_PORT, datagram: shortHeader(cid(0, SIDS.a[0])) };
    const lines = [...xmitLines(fx.config), ...fx.mapLines(fx.healthOf()), `frame ${fx.frameOf(f).toString('hex')}`];
    const sysctl = (on: 0 | 1): void => {
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.conf.all.forwarding=${on}`]);
    };
    sysctl(0);
    let off: XdpResult;
    try {
      off = runXdp(lines, ns).results[0];
    } finally {
      sysctl(1);
    }
    checkPassed(off, 'fib_forwarding_off', 'forwarding off');
    checkSent(runXdp(lines, ns).results[0], f, 0, 'forwarding on');
  });
});
