// What the XDP tests share (test/xdp/*.test.ts): frames around datagrams, the runner (the agent
// quic-lb serve runs, xdp/agent.c, in load-only mode: BPF_PROG_TEST_RUN), maps written by the code
// quic-lb serve writes them with (src/lb/xdp-maps.ts MapWriter), the seeded datagram generator and
// the comparison with decide(). Needs root, clang, cc and libbpf-dev (scripts/system-deps.sh);
// `XdpRunner.start()` throws naming what is missing, so every test fails, never skips.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import {
  type BackendState,
  type Decision,
  FourTuple,
  type HealthView,
  type LbConfig,
  REASON_NAMES,
} from '../../src/lb/index.js';
import { XdpAgent } from '../../src/lb/xdp-agent.js';
import type { XdpArtifacts } from '../../src/lb/xdp-availability.js';
import { type MapInputs, MapWriter } from '../../src/lb/xdp-maps.js';
import { QUIC_V1, QUIC_V2, SIDS, cid, fuzzSeeds, longHeader, rng, shortHeader } from '../lb/fixtures.js';
import { type ParsedEndpoint, parseIPv4Into, parseIPv6Into } from '../../src/wire/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
export const CLIENT4 = [198, 51, 100, 7];
export const CLIENT6 = Buffer.from('20010db8000000000000000000000007', 'hex');
/** The clients' addresses as node:dgram reports them (what the Node forwarder's template takes). */
export const CLIENT4_TEXT = '198.51.100.7';
export const CLIENT6_TEXT = '2001:db8::7';

/** Names the XDP program gives (xdp/quic_lb.h QLB_REASON_NAME_LIST) after decide()'s reasons:
 *  the packet shapes it leaves to Node. */
export const PASS_UP_ONLY = ['not_vip', 'fragment', 'ip_options'];

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

/**
 * An IPv4 (no options, IPv4 header checksum 0) or IPv6 header of a UDP datagram of `udpLength`
 * octets from `src` to `dst` (4 or 16 octets), TTL / hop limit 64; `df`: IPv4 Don't Fragment.
 */
export function ipHeader(src: Buffer, dst: Buffer, udpLength: number, df = false): Buffer {
  if (src.length === 4) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + udpLength, 2);
    if (df) ip.writeUInt16BE(0x4000, 6);
    ip[8] = 64;
    ip[9] = 17;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    return ip;
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(udpLength, 4);
  ip[6] = 17;
  ip[7] = 64;
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return ip;
}

/** The UDP checksum field for `udp` (its checksum field zero), 0 sent as 0xffff. */
export function udpChecksum(src: Buffer, dst: Buffer, udp: Buffer): number {
  const c = ~onesSum(pseudoHeader(src, dst, udp.length), udp) & 0xffff;
  return c === 0 ? 0xffff : c;
}

// ---- frames -------------------------------------------------------------------------------

export interface Frame {
  family: 4 | 6;
  /** Client address octets (4 or 16); default CLIENT4 / CLIENT6. */
  client?: Uint8Array;
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
  /** [config id, server ID hex] of every server ID under an encrypted config. */
  encryptedSids: (readonly [number, string])[];
  /** Ethernet + IPv4/IPv6 + UDP (valid checksum) around the datagram; `mutate` edits the frame (IP at 14). */
  frameOf(f: Frame, mutate?: (frame: Buffer) => void): Buffer;
  tupleOf(f: Frame): FourTuple;
  /** The VIPs as the maps take them (the config's, fixed ports). */
  vips: ParsedEndpoint[];
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
  const encryptedSids = config.backends.flatMap((b) =>
    b.serverIds.filter((s) => encrypted.has(s.configId)).map((s) => [s.configId, s.serverId] as const),
  );

  const frameOf = (f: Frame, mutate?: (frame: Buffer) => void): Buffer => {
    const client = Buffer.from(f.client ?? (f.family === 4 ? CLIENT4 : CLIENT6));
    const vip = vipOf(f.family).octets;
    const udp = Buffer.alloc(8 + f.datagram.length);
    udp.writeUInt16BE(f.clientPort, 0);
    udp.writeUInt16BE(f.vipPort, 2);
    udp.writeUInt16BE(udp.length, 4);
    f.datagram.copy(udp, 8);
    udp.writeUInt16BE(udpChecksum(client, vip, udp), 6);
    const eth = Buffer.alloc(14);
    eth.writeUInt16BE(f.family === 4 ? 0x0800 : 0x86dd, 12);
    const ip = ipHeader(client, vip, udp.length);
    const frame = Buffer.concat([eth, ip, udp]);
    mutate?.(frame);
    return frame;
  };

  const tupleOf = (f: Frame): FourTuple => {
    const t = new FourTuple();
    t.family = f.family;
    t.client.set(f.client ?? (f.family === 4 ? CLIENT4 : CLIENT6));
    t.vip.set(vipOf(f.family).octets);
    t.clientPort = f.clientPort;
    t.vipPort = f.vipPort;
    return t;
  };

  const healthOf = (down: readonly string[] = []): Map<string, BackendState> =>
    new Map(names.map((n) => [n, down.includes(n) ? 'down' : 'up']));

  const checkAgainst = (d: Decision, x: XdpResult, what: string): void => {
    expect({ name: x.name, backend: nameOf(x.backend) }, what).toEqual({
      name: REASON_NAMES[d.reason],
      backend: nameOf(d.backend),
    });
  };
  const nameOf = (i: number): string | number => (i >= 0 ? names[i] : i);

  return {
    config,
    vipOf,
    names,
    encrypted,
    encryptedSids,
    frameOf,
    tupleOf,
    vips: config.listen,
    healthOf,
    checkAgainst,
  };
}

// ---- the runner ----------------------------------------------------------------------------

let built: XdpArtifacts | undefined;
let buildDir = '';

/** One frame through the program. */
export interface XdpResult {
  /** The decision (decide()'s reason name, xdp/quic_lb.h) and its backend index (-1: none). */
  name: string;
  backend: number;
  /** What happened: the decision when XDP sent it (or dropped it), else the pass-up reason. */
  outcome: string;
  verdict: 'aborted' | 'drop' | 'pass' | 'tx' | 'redirect';
  /** Egress interface name when sent, else '-'. */
  egress: string;
  /** The output frame, or undefined when it is the input frame unchanged. */
  out: Buffer | undefined;
}

const VERDICTS: XdpResult['verdict'][] = ['aborted', 'drop', 'pass', 'tx', 'redirect'];

/**
 * The agent in load-only mode (in network namespace `netns` when given: the program's fib
 * lookups use it), with the maps written by MapWriter as quic-lb serve writes them.
 */
export class XdpRunner {
  private constructor(
    readonly agent: XdpAgent,
    private readonly writer: MapWriter,
    readonly reasons: string[],
  ) {}

  static async start(netns?: string): Promise<XdpRunner> {
    const artifacts = build();
    const agent = await XdpAgent.start({
      ...artifacts,
      prefix: netns === undefined ? undefined : ['ip', 'netns', 'exec', netns],
    });
    runners.add(agent);
    const [reasons] = await agent.apply(['reasons']);
    return new XdpRunner(agent, new MapWriter((c) => agent.apply(c)), reasons.split(' ').slice(1));
  }

  /** Writes `config` under `health` as the next generation and activates it (xdp-maps.ts). */
  async load(config: LbConfig, health: HealthView, inputs: Partial<MapInputs> = {}): Promise<void> {
    await this.writer.write(config, health, { vips: inputs.vips ?? config.listen, sources: inputs.sources ?? [] });
  }

  /** Runs each frame through BPF_PROG_TEST_RUN (ingress interface `ingress`, default loopback). */
  async run(frames: readonly Buffer[], ingress?: string): Promise<XdpResult[]> {
    const tail = ingress === undefined ? '' : ` ${ingress}`;
    const replies = await this.agent.apply(frames.map((f) => `run ${f.toString('hex')}${tail}`));
    return replies.map((l): XdpResult => {
      const [, verdict, reason, outcome, backend, egress, out] = l.split(' ');
      return {
        name: this.reasons[Number(reason)],
        backend: Number(backend),
        outcome: this.reasons[Number(outcome)],
        verdict: VERDICTS[Number(verdict)],
        egress,
        out: out === '-' ? undefined : Buffer.from(out, 'hex'),
      };
    });
  }

  /** Map "counters" summed over the CPUs, by reason name. */
  async counters(): Promise<Map<string, number>> {
    const sums = await this.agent.sum('counters');
    return new Map(this.reasons.map((r, i) => [r, Number(sums[i])]));
  }

  async close(): Promise<void> {
    runners.delete(this.agent);
    await this.agent.close();
  }
}

const runners = new Set<XdpAgent>();

/** Builds the object and the agent once; throws, naming what is missing, without the toolchain
 *  or root. Called by every runner, so each test fails (never skips) on a machine without them. */
function build(): XdpArtifacts {
  if (built) return built;
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
  buildDir = mkdtempSync(join(tmpdir(), 'qlb-xdp-'));
  execFileSync('bash', [join(ROOT, 'xdp/build.sh'), buildDir], { stdio: ['ignore', 'ignore', 'inherit'] });
  built = { object: join(buildDir, 'quic_lb.bpf.o'), binary: join(buildDir, 'quic-lb-xdp') };
  return built;
}

/** Stops every runner still open and removes the build directory (call from afterAll). */
export async function cleanup(): Promise<void> {
  await Promise.all([...runners].map((a) => a.close()));
  runners.clear();
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  buildDir = '';
  built = undefined;
}

// ---- random and mutated datagrams ----------------------------------------------------------

/** Seeded datagram generator: routable plaintext and encrypted CIDs (the library's encoder) in
 *  every header shape, unknown server IDs, mutated CIDs and fuzz seeds, random octets. */
export function generator(seed: number, fx: XdpFixture): () => Buffer {
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
  const encryptedSids = fx.encryptedSids;
  const encrypted = [...fx.encrypted];
  const encryptedCid = (): Buffer => {
    const [id, sid] = pick(encryptedSids);
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
          ? header(Buffer.concat([Buffer.of((pick(encrypted) << 5) | (r() & 0x1f)), bytes(19)]))
          : mutate(header(encryptedCid()));
    }
  };
}
