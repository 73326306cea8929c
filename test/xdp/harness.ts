// What the XDP tests share (test/xdp/*.test.ts): frames around datagrams, the maps from a config
// and health view, the runner (xdp/test-run.c through BPF_PROG_TEST_RUN), the seeded datagram
// generator and the comparison with decide(). Needs root, clang, cc and libbpf-dev
// (scripts/system-deps.sh); `setup()` throws naming what is missing, so every test fails, never skips.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  type BackendState,
  type Decision,
  FourTuple,
  type LbConfig,
  REASON_NAMES,
  Reason,
} from '../../src/lb/index.js';
import { QUIC_V1, QUIC_V2, SIDS, cid, fuzzSeeds, longHeader, rng, shortHeader } from '../lb/fixtures.js';
import { parseIPv4Into, parseIPv6Into } from '../../src/wire/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const CLIENT4 = [198, 51, 100, 7];
export const CLIENT6 = Buffer.from('20010db8000000000000000000000007', 'hex');
/** The clients' addresses as node:dgram reports them (what the Node forwarder's template takes). */
export const CLIENT4_TEXT = '198.51.100.7';
export const CLIENT6_TEXT = '2001:db8::7';

/** Names the XDP program gives (xdp/quic_lb.h QLB_REASON_NAME_LIST) for what it leaves to Node. */
export const PASS_UP_ONLY = ['encrypted_config', 'not_vip', 'fragment', 'ip_options'];

/** decide()'s reason as the XDP program names it. */
export function xdpName(reason: number): string {
  return REASON_NAMES[reason].replace(/^(fallback|dropped)_/, '');
}

/** IP literal -> octets (4 or 16). */
export function octetsOf(address: string, family: 4 | 6): Buffer {
  const octets = new Uint8Array(family === 4 ? 4 : 16);
  const ok = family === 4 ? parseIPv4Into(address, octets, 0) : parseIPv6Into(address, octets, 0);
  if (!ok) throw new Error(`bad address ${address}`);
  return Buffer.from(octets);
}

// ---- checksums (RFC 1071), independent of the C ---------------------------------------------

/** One's-complement sum of the 16-bit big-endian words of the concatenated buffers (odd tail padded). */
export function onesSum(...parts: Uint8Array[]): number {
  const b = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The IPv4/IPv6 pseudo header of a UDP datagram of `udpLength` octets (RFC 768, RFC 8200 §8.1). */
export function pseudoHeader(src: Buffer, dst: Buffer, udpLength: number): Buffer {
  if (src.length === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = 17;
    p.writeUInt16BE(udpLength, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(udpLength, 32);
  p[39] = 17;
  return p;
}

/** The UDP checksum field for `udp` (its checksum field zero), 0 sent as 0xffff. */
export function udpChecksum(src: Buffer, dst: Buffer, udp: Buffer): number {
  const c = ~onesSum(pseudoHeader(src, dst, udp.length), udp) & 0xffff;
  return c === 0 ? 0xffff : c;
}

// ---- frames -------------------------------------------------------------------------------

export interface Frame {
  family: 4 | 6;
  clientPort: number;
  vipPort: number;
  datagram: Buffer;
}

export interface Vip {
  octets: Buffer;
  port: number;
  address: string;
}

/** Everything a test derives from one config: VIPs, backend names, the map lines, frames. */
export interface XdpFixture {
  config: LbConfig;
  vipOf(family: 4 | 6): Vip;
  names: string[];
  encrypted: Set<number>;
  /** Ethernet + IPv4/IPv6 + UDP (valid checksum) around the datagram; `mutate` edits the frame (IP at 14). */
  frameOf(f: Frame, mutate?: (frame: Buffer) => void): Buffer;
  tupleOf(f: Frame): FourTuple;
  mapLines(health: ReadonlyMap<string, BackendState>): string[];
  serverLines(health: ReadonlyMap<string, BackendState>): string[];
  healthOf(down?: readonly string[]): Map<string, BackendState>;
  /** Asserts what the XDP program must decide about a datagram decide() decided as `d`. */
  checkAgainst(d: Decision, x: XdpResult, what: string): void;
}

export function xdpFixture(config: LbConfig): XdpFixture {
  const vips = new Map(
    config.listen.map((e) => [e.family, { octets: octetsOf(e.address, e.family), port: e.port, address: e.address }]),
  );
  const vipOf = (family: 4 | 6): Vip => vips.get(family) as Vip;
  const names = config.backends.map((b) => b.name);
  const encrypted = new Set(config.quicLb.filter((s) => s.key !== undefined).map((s) => s.configId));

  const frameOf = (f: Frame, mutate?: (frame: Buffer) => void): Buffer => {
    const client = f.family === 4 ? Buffer.from(CLIENT4) : CLIENT6;
    const vip = vipOf(f.family).octets;
    const udp = Buffer.alloc(8 + f.datagram.length);
    udp.writeUInt16BE(f.clientPort, 0);
    udp.writeUInt16BE(f.vipPort, 2);
    udp.writeUInt16BE(udp.length, 4);
    f.datagram.copy(udp, 8);
    udp.writeUInt16BE(udpChecksum(client, vip, udp), 6);
    const eth = Buffer.alloc(14);
    let ip: Buffer;
    if (f.family === 4) {
      eth.writeUInt16BE(0x0800, 12);
      ip = Buffer.alloc(20);
      ip[0] = 0x45;
      ip.writeUInt16BE(20 + udp.length, 2);
      ip[8] = 64;
      ip[9] = 17;
      client.copy(ip, 12);
      vip.copy(ip, 16);
    } else {
      eth.writeUInt16BE(0x86dd, 12);
      ip = Buffer.alloc(40);
      ip[0] = 0x60;
      ip.writeUInt16BE(udp.length, 4);
      ip[6] = 17;
      ip[7] = 64;
      client.copy(ip, 8);
      vip.copy(ip, 24);
    }
    const frame = Buffer.concat([eth, ip, udp]);
    mutate?.(frame);
    return frame;
  };

  const tupleOf = (f: Frame): FourTuple => {
    const t = new FourTuple();
    t.family = f.family;
    t.client.set(f.family === 4 ? CLIENT4 : CLIENT6);
    t.vip.set(vipOf(f.family).octets);
    t.clientPort = f.clientPort;
    t.vipPort = f.vipPort;
    return t;
  };

  /** Server-ID entries of the plaintext configs; routable unless the backend is `down`. */
  const serverLines = (health: ReadonlyMap<string, BackendState>): string[] => {
    const lines: string[] = [];
    config.backends.forEach((b, index) => {
      const routable = health.get(b.name) === 'down' ? 0 : 1;
      for (const { configId, serverId } of b.serverIds) {
        if (!encrypted.has(configId)) lines.push(`server ${configId} ${serverId} ${index} ${routable}`);
      }
    });
    return lines;
  };

  const mapLines = (health: ReadonlyMap<string, BackendState>): string[] => {
    const lines = config.listen.map((e) => `vip ${e.family} ${vipOf(e.family).octets.toString('hex')} ${e.port}`);
    for (const s of config.quicLb) {
      lines.push(`config ${s.configId} ${s.serverIdLength} ${s.nonceLength} ${s.key === undefined ? 0 : 1}`);
    }
    lines.push(...serverLines(health));
    return lines;
  };

  const healthOf = (down: readonly string[] = []): Map<string, BackendState> =>
    new Map(names.map((n) => [n, down.includes(n) ? 'down' : 'up']));

  const checkAgainst = (d: Decision, x: XdpResult, what: string): void => {
    const decision = { name: x.name, backend: x.backend };
    if (d.configId >= 0 && encrypted.has(d.configId)) {
      expect(decision, what).toEqual({ name: 'encrypted_config', backend: -1 });
    } else if (d.reason === Reason.DROPPED_NO_BACKEND) {
      // decide() lost its CID reason to "no backend at all": any CID pass-up will do.
      expect(['routed', 'malformed', ...PASS_UP_ONLY], what).not.toContain(x.name);
      expect(x.backend, what).toBe(-1);
    } else if (d.reason === Reason.ROUTED) {
      expect({ name: x.name, backend: names[x.backend] }, what).toEqual({ name: 'routed', backend: names[d.backend] });
    } else {
      expect(decision, what).toEqual({ name: xdpName(d.reason), backend: -1 });
    }
  };

  return { config, vipOf, names, encrypted, frameOf, tupleOf, mapLines, serverLines, healthOf, checkAgainst };
}

// ---- the runner ----------------------------------------------------------------------------

let dir = '';
let runner = '';
let object = '';

/** One frame's line of xdp/test-run.c. */
export interface XdpResult {
  /** The decision (decide()'s reason without prefix) and its backend index (-1 unless routed). */
  name: string;
  backend: number;
  /** What happened: 'routed' when XDP sent it, else the pass-up reason. */
  outcome: string;
  verdict: 'pass' | 'tx' | 'redirect' | 'drop' | 'aborted';
  /** Egress interface name when sent, else '-'. */
  egress: string;
  /** The output frame, or undefined for an XDP_PASS frame left as it came. */
  out: Buffer | undefined;
}

/** Runs `lines` through one test-run process (in network namespace `netns` when given); returns
 *  one result per frame and the counters. */
export function runXdp(lines: string[], netns?: string): { results: XdpResult[]; counters: Map<string, number> } {
  setup();
  const input = join(dir, `input-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(input, lines.join('\n') + '\n');
  const [cmd, args] =
    netns === undefined ? [runner, [object, input]] : ['ip', ['netns', 'exec', netns, runner, object, input]];
  const out = execFileSync(cmd, args, { maxBuffer: 1 << 30, encoding: 'utf8' });
  const outLines = out.trimEnd().split('\n');
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
  const results = outLines.map((l): XdpResult => {
    const [name, backend, outcome, verdict, egress, hex] = l.split(' ');
    return {
      name,
      backend: Number(backend),
      outcome,
      verdict: verdict as XdpResult['verdict'],
      egress,
      out: hex === '-' ? undefined : Buffer.from(hex, 'hex'),
    };
  });
  return { results, counters };
}

/** Builds the object and the runner once; throws, naming what is missing, without the toolchain
 *  or root. Called by every test, so each one fails (never skips) on a machine without them. */
export function setup(): void {
  if (runner) return;
  const missing: string[] = [];
  for (const bin of ['clang', 'cc', 'ip']) {
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

/** Removes the build directory (call from afterAll). */
export function cleanup(): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
  runner = '';
}

// ---- random and mutated datagrams ----------------------------------------------------------

/** Seeded datagram generator: routable plaintext CIDs in every header shape, unknown server IDs,
 *  mutated fuzz seeds (every config, encrypted ones included) and random octets. */
export function generator(seed: number): () => Buffer {
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
  return () => {
    switch (r() % 8) {
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
      default:
        return bytes(r() % 48);
    }
  };
}
