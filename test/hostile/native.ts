// The hostile harness's native tool (raw-udp.c beside this file): compiled with `cc -O2` at test
// time into .tmp/hostile-native/ (gitignored), again only when the source is newer than the
// binary (as bench/native/native.ts does for the benchmark tools). Two modes:
// - `send`: the attacker, raw IP packets with any source address and port (see raw-udp.c);
// - `count`: octets arriving for the spoofed sources and forged victims (AF_PACKET).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Fleet, Ns } from '../netns/netns.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const SOURCE = path.join(HERE, 'raw-udp.c');
export const NATIVE_BUILD_DIR = path.join(REPO, '.tmp', 'hostile-native');

/** Compiles raw-udp.c (when newer than the binary) and returns the binary's path; throws with the compiler's words on failure. */
export function buildRawUdp(outDir = NATIVE_BUILD_DIR): string {
  const cc = process.env.CC ?? 'cc';
  mkdirSync(outDir, { recursive: true });
  const bin = path.join(outDir, 'raw-udp');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(SOURCE).mtimeMs) {
    const tmp = `${bin}.${process.pid}`;
    const r = spawnSync(cc, ['-O2', '-Wall', '-o', tmp, SOURCE], { encoding: 'utf8' });
    if (r.status !== 0)
      throw new Error(`${cc} failed to build raw-udp: ${(r.stderr || r.error?.message || '').trim()}`);
    spawnSync('mv', ['-f', tmp, bin]);
  }
  return bin;
}

/** The attacker's input file: "QLBH", u32 count, then per payload u16 length + octets. */
export function writePayloads(file: string, payloads: readonly Uint8Array[]): void {
  if (payloads.length === 0) throw new Error('writePayloads: no payloads');
  const size = 8 + payloads.reduce((a, p) => a + 2 + p.length, 0);
  const buf = Buffer.alloc(size);
  buf.write('QLBH', 0, 'latin1');
  buf.writeUInt32BE(payloads.length, 4);
  let o = 8;
  for (const p of payloads) {
    if (p.length > 65000) throw new Error(`writePayloads: payload of ${p.length} octets`);
    buf.writeUInt16BE(p.length, o);
    buf.set(p, o + 2);
    o += 2 + p.length;
  }
  writeFileSync(file, buf);
}

export interface SendOptions {
  file: string;
  /** "IP:PORT" or "[IPv6]:PORT". */
  dst: string;
  /** One source address, or `srcPrefix` + `sources` random hosts of it. */
  src?: string;
  srcPrefix?: string;
  sources?: number;
  /** Source port: a number (0, 1, 65535…) or 'random' (per datagram). */
  sport: number | 'random';
  count: number;
  rate: number;
  seed?: number;
}

export interface SendResult {
  sent: number;
  ip_octets: number;
  payload_octets: number;
  errors: number;
  elapsed_ms: number;
}

/** Runs `raw-udp send` inside `ns` to completion (bounded: count / rate + 30 s). */
export async function rawSend(fleet: Fleet, ns: Ns, bin: string, o: SendOptions): Promise<SendResult> {
  const argv = [
    bin,
    'send',
    '--file',
    o.file,
    '--dst',
    o.dst,
    '--sport',
    String(o.sport),
    '--count',
    String(o.count),
    '--rate',
    String(o.rate),
    '--seed',
    String(o.seed ?? 1),
  ];
  if (o.src !== undefined) argv.push('--src', o.src);
  else argv.push('--src-prefix', o.srcPrefix as string, '--sources', String(o.sources ?? 1));
  const r = await fleet.exec(ns, argv, Math.ceil((o.count / o.rate) * 1000) + 30_000);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{'))
    throw new Error(`raw-udp send failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return JSON.parse(line) as SendResult;
}

export interface CountReport {
  packets: number;
  ip_octets: number;
  payload_octets: number;
  icmp: number;
  socket_drops: number;
  /** IP octets per destination prefix, in the order given to start(). */
  by_prefix: number[];
  /** IP octets and packets per sending address. */
  by_sender: Record<string, number>;
  by_sender_packets: Record<string, number>;
}

/** A running `raw-udp count` (started through the fleet, so teardown kills it by PID). */
export class OctetCounter {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];

  private constructor(private readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiters.shift()?.(line);
      }
    });
  }

  /** Starts the counter on `ns`'s link, for destinations inside `prefixes` (and UDP port `port`). */
  static async start(
    fleet: Fleet,
    ns: Ns,
    bin: string,
    prefixes: readonly string[],
    port?: number,
  ): Promise<OctetCounter> {
    const child = fleet.spawn(ns, [
      bin,
      'count',
      '--if',
      ns.ifname,
      ...prefixes.flatMap((p) => ['--prefix', p]),
      ...(port === undefined ? [] : ['--port', String(port)]),
    ]);
    const c = new OctetCounter(child);
    const ready = await c.next(5000);
    if (ready !== 'READY') throw new Error(`raw-udp count did not start: ${ready}`);
    return c;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private next(timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('raw-udp count did not answer')), timeoutMs);
      this.waiters.push((line) => {
        clearTimeout(t);
        resolve(line);
      });
    });
  }

  async reset(): Promise<void> {
    this.child.stdin?.write('reset\n');
    await this.next();
  }

  async report(): Promise<CountReport> {
    this.child.stdin?.write('report\n');
    return JSON.parse(await this.next()) as CountReport;
  }
}
