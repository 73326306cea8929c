// Differential test of the XDP fast path (xdp/quic_lb.bpf.c, issue 15): the same datagrams
// through the BPF program (BPF_PROG_TEST_RUN, via xdp/test-run.c) and through decide() built
// from the same config and health view. The XDP program must give every datagram decide()'s
// reason and backend: CID-routed under every config (plaintext, single-pass, four-pass: the BPF
// AES of xdp/aes.h), the fallback (SipHash-2-4 of the 4-tuple into the Maglev table,
// xdp/fallback.h) and the drops.
// Needs root (BPF_PROG_TEST_RUN), clang, cc and libbpf-dev: scripts/system-deps.sh. No skip.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendState,
  type Decision,
  FourTuple,
  type LbConfig,
  MAX_MAGLEV_TABLE_SIZE,
  REASON_COUNT,
  REASON_NAMES,
  Reason,
  type RouterState,
  buildRouterState,
  decide,
  fallbackSlot,
} from '../../src/lb/index.js';
import { QUIC_V1, QUIC_V2, SIDS, cid, fuzzSeeds, longHeader, rng, shortHeader, testConfig } from '../lb/fixtures.js';
import { ROUTER_ROWS } from '../lb/router-rows.js';
import { parseIPv4Into, parseIPv6Into } from '../../src/wire/index.js';
import { configFromSpec, encodeConnectionId } from '../../src/cid/index.js';
import { expandDecryptKey, expandEncryptKey } from '../../src/cid/aes.js';
import { loadVectors } from '../cid/vectors.js';
import { AES_TABLES_PATH, aesTablesHeader } from '../../scripts/xdp-aes-tables.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RANDOM_DATAGRAMS = 100_000;
const CLIENT4 = [198, 51, 100, 7];
const CLIENT6 = Buffer.from('20010db8000000000000000000000007', 'hex');

/** Names the XDP program gives (xdp/quic_lb.h QLB_REASON_NAME_LIST) after decide()'s reasons:
 *  what it leaves to Node. */
const PASS_UP_ONLY = ['not_vip', 'fragment', 'ip_options'];

const LISTEN = ['127.0.1.1:20001', '[::1]:20001'];
/** The fixture config with an IPv6 VIP beside the IPv4 one: the XDP maps and decide() both come from it. */
const config = testConfig({ listen: LISTEN });
/** VIP address octets per family, from the config's listen list. */
const VIPS = new Map(
  config.listen.map((e) => {
    const octets = new Uint8Array(e.family === 4 ? 4 : 16);
    const ok = e.family === 4 ? parseIPv4Into(e.address, octets, 0) : parseIPv6Into(e.address, octets, 0);
    if (!ok) throw new Error(`bad VIP ${e.address}`);
    return [e.family, { octets: Buffer.from(octets), port: e.port }] as const;
  }),
);
const vipOf = (family: 4 | 6): { octets: Buffer; port: number } => VIPS.get(family) as { octets: Buffer; port: number };
const VIP_PORT = vipOf(4).port;
const names = config.backends.map((b) => b.name);
const encrypted = new Set(config.quicLb.filter((s) => s.key !== undefined).map((s) => s.configId));
/** [config id, server ID hex] of every server ID of an encrypted config in the fixture. */
const ENCRYPTED_SIDS = Object.values(SIDS).flatMap((sids) =>
  Object.entries(sids)
    .filter(([id]) => encrypted.has(Number(id)))
    .map(([id, sid]) => [Number(id), sid] as const),
);

/** Backend name of an index, null for -1 (dropped or passed up). */
const nameOf = (backend: number): string | null => (backend < 0 ? null : (names[backend] ?? `#${backend}`));

// ---- frames -------------------------------------------------------------------------------

interface Frame {
  family: 4 | 6;
  /** Client address octets (4 or 16); default CLIENT4 / CLIENT6. */
  client?: Uint8Array;
  clientPort: number;
  vipPort: number;
  datagram: Buffer;
}

/** Ethernet + IPv4/IPv6 + UDP around the datagram; `mutate` edits the frame (IP at 14). */
function frameOf(f: Frame, mutate?: (frame: Buffer) => void): Buffer {
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(f.clientPort, 0);
  udp.writeUInt16BE(f.vipPort, 2);
  udp.writeUInt16BE(8 + f.datagram.length, 4);
  const eth = Buffer.alloc(14);
  let ip: Buffer;
  if (f.family === 4) {
    eth.writeUInt16BE(0x0800, 12);
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + 8 + f.datagram.length, 2);
    ip[8] = 64;
    ip[9] = 17;
    ip.set(f.client ?? CLIENT4, 12);
    vipOf(4).octets.copy(ip, 16);
  } else {
    eth.writeUInt16BE(0x86dd, 12);
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(8 + f.datagram.length, 4);
    ip[6] = 17;
    ip[7] = 64;
    ip.set(f.client ?? CLIENT6, 8);
    vipOf(6).octets.copy(ip, 24);
  }
  const frame = Buffer.concat([eth, ip, udp, f.datagram]);
  mutate?.(frame);
  return frame;
}

function tupleOf(f: Frame): FourTuple {
  const t = new FourTuple();
  t.family = f.family;
  t.client.set(f.client ?? (f.family === 4 ? CLIENT4 : CLIENT6));
  t.vip.set(vipOf(f.family).octets);
  t.clientPort = f.clientPort;
  t.vipPort = f.vipPort;
  return t;
}

// ---- the maps, from the config and health view --------------------------------------------

/** Every map of the program from the router state decide() uses: VIPs, configs, then viewLines(). */
function mapLines(state: RouterState): string[] {
  const cfg = state.config;
  const lines = cfg.listen.map((e) => `vip ${e.family} ${vipOf(e.family).octets.toString('hex')} ${e.port}`);
  for (const s of cfg.quicLb) lines.push(configLine(s.configId, s.serverIdLength, s.nonceLength, s.key));
  lines.push(...viewLines(state));
  return lines;
}

/** 44 round-key words, 8 hex digits each (the word's value; test-run stores it in host order). */
function wordsHex(words: Int32Array): string {
  return Array.from(words, (w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
}

/** test-run's `config` line; an encrypted config carries the library's round keys (src/cid/aes.ts):
 *  the XDP program runs no key schedule, and the TS control plane will fill the map from these. */
function configLine(id: number, sidLength: number, nonceLength: number, key?: string): string {
  const head = `config ${id} ${sidLength} ${nonceLength}`;
  if (key === undefined) return `${head} 0`;
  const ek = expandEncryptKey(Buffer.from(key, 'hex'));
  return `${head} 1 ${wordsHex(ek)} ${wordsHex(expandDecryptKey(ek))}`;
}

/** What a health view changes: server-ID entries of every config (routable as in
 *  state.routable) and the fallback key, size and Maglev table (state.table). */
function viewLines(state: RouterState): string[] {
  const lines: string[] = [];
  state.config.backends.forEach((b, index) => {
    for (const { configId, serverId } of b.serverIds)
      lines.push(`server ${configId} ${serverId} ${index} ${state.routable[index]}`);
  });
  return [...lines, ...fallbackLines(state.config, state.table)];
}

/** The "fallback" and "maglev" lines of xdp/test-run.c: the config's key and table size, and
 *  `table` as its int32 octets in host order ("-": empty, no backend to fall back to). */
function fallbackLines(cfg: LbConfig, table: Int32Array): string[] {
  const hex = table.length === 0 ? '-' : Buffer.from(table.buffer, table.byteOffset, table.byteLength).toString('hex');
  return [`fallback ${cfg.fallback.key} ${cfg.fallback.tableSize}`, `maglev ${hex}`];
}

// ---- the runner ----------------------------------------------------------------------------

let dir = '';
let runner = '';
let object = '';

interface XdpResult {
  name: string;
  backend: number;
}

/** Runs `lines` through one test-run process; returns one result per frame and the counters. */
function runXdp(lines: string[]): { results: XdpResult[]; counters: Map<string, number> } {
  const outLines = runRaw(lines);
  const last = outLines.pop() as string;
  expect(last.startsWith('counters ')).toBe(true);
  const counters = new Map(
    last
      .split(' ')
      .slice(1)
      .map((kv) => {
        const [k, v] = kv.split('=');
        return [k, Number(v)] as const;
      }),
  );
  const results = outLines.map((l) => {
    const [name, backend] = l.split(' ');
    return { name, backend: Number(backend) };
  });
  return { results, counters };
}

/** test-run's output lines for `lines` (one process). */
function runRaw(lines: string[]): string[] {
  setup();
  const input = join(dir, `input-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(input, lines.join('\n') + '\n');
  const out = execFileSync(runner, [object, input], { maxBuffer: 1 << 28, encoding: 'utf8' });
  rmSync(input);
  return out.trimEnd().split('\n');
}

/** What the XDP program must say about a datagram decide() decided as `d`: decide()'s reason
 *  (same name, xdp/quic_lb.h) and backend, routed, fallback or dropped, under every config. */
function checkAgainst(d: Decision, x: XdpResult, what: string): void {
  expect({ name: x.name, backend: nameOf(x.backend) }, what).toEqual({
    name: REASON_NAMES[d.reason],
    backend: nameOf(d.backend),
  });
}

/** Builds the object and the runner once; throws, naming what is missing, without the toolchain
 *  or root. Called by every test, so each one fails (never skips) on a machine without them. */
function setup(): void {
  if (runner) return;
  const missing: string[] = [];
  for (const bin of ['clang', 'cc']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`]);
    } catch {
      missing.push(bin);
    }
  }
  if (!existsSync('/usr/include/bpf/libbpf.h')) missing.push('libbpf-dev (/usr/include/bpf/libbpf.h)');
  if (missing.length > 0) throw new Error(`XDP toolchain missing: ${missing.join(', ')} (scripts/system-deps.sh)`);
  if (process.getuid?.() !== 0) throw new Error('BPF_PROG_TEST_RUN needs root (CI runs this test as root)');
  dir = mkdtempSync(join(tmpdir(), 'qlb-xdp-'));
  execFileSync('bash', [join(ROOT, 'scripts/build-xdp.sh'), dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  object = join(dir, 'quic_lb.bpf.o');
  const bin = join(dir, 'test-run');
  execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', bin, join(ROOT, 'xdp/test-run.c'), '-lbpf'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  runner = bin;
}

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function healthOf(down: readonly string[] = []): Map<string, BackendState> {
  return new Map(names.map((n) => [n, down.includes(n) ? 'down' : 'up']));
}

describe('XDP reasons and limits are those of src/lb', () => {
  it('reason names by value = REASON_NAMES, then the pass-ups; Maglev map = MAX_MAGLEV_TABLE_SIZE', () => {
    const [info] = runRaw(['info']);
    const m = /^info maglev_max=(\d+) reasons=(\S+)$/.exec(info) as RegExpExecArray;
    expect(m, info).not.toBeNull();
    expect(Number(m[1])).toBe(MAX_MAGLEV_TABLE_SIZE);
    const reasons = m[2].split(',');
    expect(reasons.slice(0, REASON_COUNT)).toEqual(REASON_NAMES);
    expect(reasons.slice(REASON_COUNT)).toEqual(PASS_UP_ONLY);
  });
});

describe('XDP fallback slot = fallbackSlot(): SipHash-2-4 of the 4-tuple', () => {
  it('400 4-tuples, IPv4 and IPv6, another key, the largest table', { timeout: 120_000 }, () => {
    // An identity Maglev table (slot i -> "backend" i) makes the program report its slot.
    const r = rng(0x51f4a5);
    const key = Buffer.from(Array.from({ length: 16 }, () => r() & 0xff)).toString('hex');
    const cfg = testConfig({ listen: LISTEN, fallback: { key, tableSize: MAX_MAGLEV_TABLE_SIZE } });
    const state = buildRouterState(cfg, healthOf(names)); // all down: decide()'s table is empty, cheap
    const identity = Int32Array.from({ length: MAX_MAGLEV_TABLE_SIZE }, (_, i) => i);
    const lines = [...mapLines(state), ...fallbackLines(cfg, identity)];
    const datagram = shortHeader(Buffer.from('e0112233445566778899', 'hex')); // codepoint 0b111
    const expected: number[] = [];
    for (let i = 0; i < 400; i++) {
      const family = i & 1 ? 6 : 4;
      const client = Buffer.from(Array.from({ length: family === 4 ? 4 : 16 }, () => r() & 0xff));
      const f: Frame = { family, client, clientPort: r() & 0xffff, vipPort: VIP_PORT, datagram };
      lines.push(`frame ${frameOf(f).toString('hex')}`);
      expected.push(fallbackSlot(tupleOf(f), state));
    }
    const { results } = runXdp(lines);
    expect(results).toEqual(expected.map((slot) => ({ name: 'fallback_unroutable_0b111', backend: slot })));
    // Not vacuous: the slots spread over the whole table.
    expect(new Set(expected).size).toBeGreaterThan(390);
    expect(Math.max(...expected)).toBeGreaterThan(MAX_MAGLEV_TABLE_SIZE * 0.9);
  });
});

describe('XDP decision = decide(): the router fixture table', () => {
  it('every row, IPv4 and IPv6', { timeout: 120_000 }, () => {
    const lines: string[] = [];
    const expected: { d: Decision; what: string }[] = [];
    let view = '';
    for (const row of ROUTER_ROWS) {
      const health = healthOf(row.down);
      const state = buildRouterState(config, health);
      // The maps change only with the health view (a Maglev table is 0.5 MB of hex).
      const key = JSON.stringify([...health]);
      if (key !== view) lines.push(...(view === '' ? mapLines(state) : viewLines(state)));
      view = key;
      for (const family of [4, 6] as const) {
        const f: Frame = { family, clientPort: 40000, vipPort: VIP_PORT, datagram: row.datagram };
        lines.push(`frame ${frameOf(f).toString('hex')}`);
        expected.push({ d: { ...decide(row.datagram, tupleOf(f), state) }, what: `${row.desc} (IPv${family})` });
      }
    }
    const { results } = runXdp(lines);
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
  it('not a VIP, fragments, options, bad UDP lengths', { timeout: 120_000 }, () => {
    const lines = [
      ...mapLines(buildRouterState(config, healthOf())),
      ...cases.map((c) => `frame ${c.frame.toString('hex')}`),
    ];
    const { results } = runXdp(lines);
    expect(results.map((r) => r.name)).toEqual(cases.map((c) => c.name));
  });
});

// ---- the AES in BPF: known answers, the draft's vectors, every config shape ----------------

/** A short-header frame to the IPv4 VIP carrying `dcid`. */
function cidFrame(dcid: Uint8Array): string {
  return `frame ${frameOf({ family: 4, clientPort: 4433, vipPort: VIP_PORT, datagram: shortHeader(dcid) }).toString('hex')}`;
}

const vipLines = (): string[] => mapLines(buildRouterState(config, healthOf())).filter((l) => l.startsWith('vip '));

describe('XDP AES: known answers and the draft-21 vectors', () => {
  it('xdp/aes_tables.h is what scripts/xdp-aes-tables.ts generates from src/cid/aes.ts', () => {
    expect(readFileSync(AES_TABLES_PATH, 'utf8')).toBe(aesTablesHeader());
  });

  it('FIPS-197 C.1 through a single-pass CID: the decrypted block names the server', { timeout: 120_000 }, () => {
    // Key 000102..0f, ciphertext 69c4e0d8...: plaintext 00112233445566778899aabbccddeeff
    // (FIPS-197 Appendix C.1), read as server ID || nonce for two splits.
    const key = '000102030405060708090a0b0c0d0e0f';
    const ct = Buffer.from('69c4e0d86a7b0430d8cdb78070b4c55a', 'hex');
    const lines = [
      ...vipLines(),
      configLine(1, 8, 8, key),
      'server 1 0011223344556677 5 1',
      cidFrame(Buffer.concat([Buffer.of(1 << 5), ct])),
      configLine(2, 12, 4, key),
      'server 2 00112233445566778899aabb 6 1',
      cidFrame(Buffer.concat([Buffer.of(2 << 5), ct])),
      cidFrame(Buffer.concat([Buffer.of(2 << 5), ct.map((b, i) => (i === 15 ? b ^ 1 : b))])), // one bit off
    ];
    expect(runXdp(lines).results).toEqual([
      { name: 'routed', backend: 5 },
      { name: 'routed', backend: 6 },
      // No fallback table in these maps: an unknown server ID is dropped, as decide() drops
      // what it would hash when no backend is up.
      { name: 'dropped_no_backend', backend: -1 },
    ]);
  });

  it('draft-21 Appendix B and §5.4.2.4 encrypted vectors route to their server ID', { timeout: 120_000 }, () => {
    // test/vectors/draft-21.json, read-only. The draft-15..17 four-pass CIDs must not decode to
    // their server ID under draft-21's algorithm (negative tests, as test/cid/vectors.test.ts).
    const vectors = loadVectors('draft-21.json').filter(
      (v) => v.algorithm !== 'plaintext' && v.self_consistent !== false && v.key !== null,
    );
    const lines = vipLines();
    const want: XdpResult[] = [];
    vectors.forEach((v, i) => {
      lines.push(configLine(v.cr_bits, v.sid_len as number, v.nonce_len as number, v.key as string));
      lines.push(`server ${v.cr_bits} ${v.server_id} ${i} 1`);
      lines.push(cidFrame(Buffer.from(v.cid, 'hex')));
      want.push(
        v.algorithm === 'four_pass_legacy_d15_d17'
          ? { name: 'dropped_no_backend', backend: -1 } // not its server ID; no fallback table here
          : { name: 'routed', backend: i },
      );
    });
    expect(vectors.filter((v) => v.algorithm === 'single_pass').length).toBeGreaterThanOrEqual(1);
    expect(vectors.filter((v) => v.algorithm === 'four_pass').length).toBeGreaterThanOrEqual(4);
    expect(runXdp(lines).results).toEqual(want);
  });

  it(
    'every config shape (server ID 1..15 octets, nonce 4..19-sid): library-minted CIDs route',
    { timeout: 120_000 },
    () => {
      // draft-21 §5.3 allows serverIdLength + nonceLength <= 19: 120 shapes, single-pass at 16,
      // four-pass (three passes when the server ID is no longer than the nonce) elsewhere.
      const r = rng(0x4e5);
      const lines = vipLines();
      const want: XdpResult[] = [];
      let shape = 0;
      for (let sidLength = 1; sidLength <= 15; sidLength++) {
        for (let nonceLength = 4; sidLength + nonceLength <= 19; nonceLength++, shape++) {
          const key = Buffer.from(Array.from({ length: 16 }, () => r() & 0xff)).toString('hex');
          const configId = shape % 7;
          const lib = configFromSpec({ configId, serverIdLength: sidLength, nonceLength, key });
          lines.push(configLine(configId, sidLength, nonceLength, key));
          for (let k = 0; k < 2; k++) {
            const sid = Buffer.from(Array.from({ length: sidLength }, () => r() & 0xff));
            const nonce = Buffer.from(Array.from({ length: nonceLength }, () => r() & 0xff));
            lines.push(`server ${configId} ${sid.toString('hex')} ${shape} 1`);
            lines.push(cidFrame(encodeConnectionId(lib, sid, nonce)));
            want.push({ name: 'routed', backend: shape });
          }
        }
      }
      expect(shape).toBe(120);
      expect(runXdp(lines).results).toEqual(want);
    },
  );
});

// ---- random and mutated datagrams ----------------------------------------------------------

/** Seeded datagram generator: routable plaintext and encrypted CIDs (the library's encoder) in
 *  every header shape, unknown server IDs, mutated CIDs and fuzz seeds, random octets. */
function generator(seed: number): () => Buffer {
  const r = rng(seed);
  const seeds = fuzzSeeds();
  const backendsOf0 = Object.values(SIDS).map((s) => s[0]);
  const pick = <T>(xs: readonly T[]): T => xs[r() % xs.length];
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => r() & 0xff));
  const header = (dcid: Buffer): Buffer => {
    switch (r() % 6) {
      case 0:
      case 1:
        return shortHeader(dcid, r() % 64);
      case 2:
        return longHeader(QUIC_V1, r() % 4, dcid, bytes(r() % 21), r() % 64);
      case 3:
        return longHeader(QUIC_V2, r() % 4, dcid, bytes(r() % 21), r() % 64);
      case 4:
        return longHeader(pick([0, 0x1a2a3a4a, QUIC_V1, QUIC_V2]), r() % 4, Buffer.concat([dcid, bytes(r() % 3)]));
      default:
        return longHeader(pick([QUIC_V1, QUIC_V2]), r() % 4, dcid.subarray(0, r() % (dcid.length + 1)));
    }
  };
  const mutate = (b: Buffer): Buffer => {
    const out = Buffer.from(b);
    const edits = 1 + (r() % 3);
    for (let i = 0; i < edits && out.length > 0; i++) {
      const at = r() % out.length;
      switch (r() % 4) {
        case 0:
          out[at] ^= 1 << (r() % 8);
          break;
        case 1:
          out[at] = r() & 0xff;
          break;
        case 2:
          return out.subarray(0, at);
        default:
          out[at] = pick([0x00, 0x07, 0x14, 0x15, 0xff, 0x40, 0xc0, 0xe0]);
      }
    }
    return out;
  };
  const encryptedCid = (): Buffer => {
    const [id, sid] = pick(ENCRYPTED_SIDS);
    return cid(id, sid, r());
  };
  return () => {
    switch (r() % 10) {
      case 0:
      case 1:
      case 2:
        return header(cid(0, pick(backendsOf0), r()));
      case 3:
        return header(Buffer.concat([Buffer.of(r() & 0x1f), bytes(8)])); // codepoint 0, random server ID
      case 4:
        return mutate(header(cid(0, pick(backendsOf0), r())));
      case 5:
        return mutate(pick(seeds));
      case 6:
        return header(bytes(r() % 21));
      case 7:
        return bytes(r() % 48);
      case 8:
        return header(encryptedCid());
      default:
        // An encrypted codepoint with random octets (a server ID nobody has), or a mutated CID.
        return r() & 1
          ? header(Buffer.concat([Buffer.of((pick([...encrypted]) << 5) | (r() & 0x1f)), bytes(19)]))
          : mutate(header(encryptedCid()));
    }
  };
}

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
    const fallbackBackends = [new Set<number>(), new Set<number>()];
    const routedBy = new Map<number, number>();
    views.forEach((health, v) => {
      const state: RouterState = buildRouterState(config, health);
      lines.push(...(v === 0 ? mapLines(state) : viewLines(state)));
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
      if (x.name.startsWith('fallback_')) fallbackBackends[i < RANDOM_DATAGRAMS / 2 ? 0 : 1].add(x.backend);
      if (x.name === 'routed') routedBy.set(decisions[i].configId, (routedBy.get(decisions[i].configId) ?? 0) + 1);
      try {
        checkAgainst(decisions[i], x, `datagram ${i}`);
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
    // The per-CPU counters agree with the decisions one by one.
    for (const [name, n] of counters) expect(n, name).toBe(tally.get(name) ?? 0);
    console.log(`xdp differential: ${JSON.stringify(Object.fromEntries(tally))}`);
    console.log(`xdp routed by config: ${JSON.stringify(Object.fromEntries(routedBy))}`);
  }, 300_000);
});
