// Real-socket helpers of the LB integration tests: sink backends that decapsulate PROXY v2 and
// answer health probes, `quic-lb serve` child processes, a /metrics scraper.
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { renameSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import {
  ProxyDirection,
  ProxyHeader,
  answerHealthProbe,
  encodeProxyHeader,
  formatProxyAddress,
  parseProxyHeader,
} from '../../src/wire/index.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { parseMetrics } from '../helpers/metrics.js';

export interface Received {
  client: string;
  clientPort: number;
  vip: string;
  vipPort: number;
  payload: Buffer;
  /** Where the encapsulated datagram came from (the LB's upstream socket). */
  from: dgram.RemoteInfo;
}

/** A backend: receives [PROXY v2, datagram], records it, answers health probes while `healthy`. */
export class Sink {
  readonly received: Received[] = [];
  /** Encapsulated datagrams received (also when not recording). */
  count = 0;
  /** Keep every datagram in `received` (false: count only). */
  record = true;
  healthy = true;
  probes = 0;
  readonly socket: dgram.Socket;
  port = 0;
  private readonly h = new ProxyHeader();

  private constructor(readonly address: string) {
    this.socket = dgram.createSocket('udp4');
    this.socket.on('message', (msg, rinfo) => {
      const reply = answerHealthProbe(msg);
      if (reply) {
        this.probes++;
        if (this.healthy) this.socket.send(reply, rinfo.port, rinfo.address);
        return;
      }
      const hl = parseProxyHeader(msg, this.h);
      if (hl < 0) return;
      this.count++;
      if (!this.record) return;
      this.received.push({
        client: formatProxyAddress(this.h, 'src'),
        clientPort: this.h.srcPort,
        vip: formatProxyAddress(this.h, 'dst'),
        vipPort: this.h.dstPort,
        payload: Buffer.from(msg.subarray(hl)),
        from: rinfo,
      });
    });
  }

  static async start(address: string, port = 0): Promise<Sink> {
    const s = new Sink(address);
    await new Promise<void>((r) => s.socket.bind(port, address, () => r()));
    s.socket.setRecvBufferSize(4 * 1024 * 1024);
    s.port = s.socket.address().port;
    return s;
  }

  get endpoint(): string {
    return `${this.address}:${this.port}`;
  }

  /** Sends `payload` to `client` via the LB return path at `to` (header src = VIP, dst = client). */
  reply(
    to: { address: string; port: number },
    vip: { address: string; port: number },
    client: { address: string; port: number },
    payload: Buffer,
    hmacKey?: Buffer,
  ): void {
    const header = encodeProxyHeader(
      {
        srcAddr: vip.address,
        srcPort: vip.port,
        dstAddr: client.address,
        dstPort: client.port,
        hmacKey,
        direction: ProxyDirection.TO_CLIENT,
      },
      payload,
    );
    this.socket.send([header, payload], to.port, to.address);
  }

  close(): void {
    this.socket.close();
  }
}

/** A client socket that records what it receives. */
export class Client {
  readonly received: { payload: Buffer; from: dgram.RemoteInfo }[] = [];
  readonly socket: dgram.Socket;
  port = 0;
  private constructor(readonly address: string) {
    this.socket = dgram.createSocket('udp4');
    this.socket.on('message', (payload, from) => this.received.push({ payload, from }));
  }
  static async start(address: string): Promise<Client> {
    const c = new Client(address);
    await new Promise<void>((r) => c.socket.bind(0, address, () => r()));
    c.socket.setSendBufferSize(4 * 1024 * 1024);
    c.port = c.socket.address().port;
    return c;
  }
  send(datagram: Uint8Array, to: { address: string; port: number }): void {
    this.socket.send(datagram, to.port, to.address);
  }
  close(): void {
    this.socket.close();
  }
}

export interface ReadyInfo {
  pid: number;
  vips: { address: string; port: number; family: number }[];
  returnPort?: { address: string; port: number };
  metrics?: { address: string; port: number };
  workers: number;
}

/** A `quic-lb serve` child process (started and stopped through test/helpers/process.ts). */
export class ServeProcess {
  private constructor(
    private readonly p: Proc,
    readonly info: ReadyInfo,
  ) {}

  /** Spawns `node dist/cli.js serve --config file` and waits for its ready line. */
  static async start(file: string, timeoutMs = 20_000): Promise<ServeProcess> {
    const p = await startCli(['serve', '--config', file], { timeoutMs });
    return new ServeProcess(p, p.ready as unknown as ReadyInfo);
  }

  get proc(): ChildProcess {
    return this.p.child;
  }

  /** Everything the process wrote to stderr so far. */
  get stderr(): string {
    return this.p.stderr();
  }

  get vip(): { address: string; port: number } {
    return this.info.vips[0];
  }

  /** Sends `signal` (by PID) and waits for the exit; SIGKILL after `timeoutMs`. */
  stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    return stop(this.p, signal, timeoutMs);
  }

  async metrics(): Promise<Map<string, number>> {
    const m = this.info.metrics!;
    return scrape(`http://${m.address}:${m.port}/metrics`);
  }

  async healthz(): Promise<number> {
    const m = this.info.metrics!;
    const r = await fetch(`http://${m.address}:${m.port}/healthz`);
    await r.text();
    return r.status;
  }
}

/** GET `url` (a /metrics endpoint) -> Map('name{labels}' -> value). */
export async function scrape(url: string): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(url)).text());
}

/** Sum of every series of metric `name`. */
export function sum(m: Map<string, number>, name: string): number {
  let t = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) t += v;
  return t;
}

export function writeYaml(file: string, doc: unknown): void {
  writeFileSync(file, stringify(doc));
}

/** Writes `doc` as YAML atomically (temp file + rename): a watching LB never reads half a file. */
export function installYaml(file: string, doc: unknown): void {
  writeYaml(`${file}.tmp`, doc);
  renameSync(`${file}.tmp`, file);
}

/** A running `quic-lb serve` whose backends are UDP sinks. */
export interface SinkFleet {
  lb: ServeProcess;
  sinks: Sink[];
  /** The config file (rewrite it with {@link installYaml} to reload). */
  file: string;
  metrics(): Promise<Map<string, number>>;
  /** The /healthz body. */
  healthz(): Promise<string>;
}

/**
 * Starts a sink on each of `sinkAddresses`, installs `doc(sinks)` as `file` and starts
 * `quic-lb serve` on it. Every stop (sinks closed, the LB killed) is pushed onto `cleanup`, to
 * be run in reverse order after the tests.
 */
export async function startSinkFleet(
  file: string,
  sinkAddresses: readonly string[],
  doc: (sinks: Sink[]) => unknown,
  cleanup: (() => unknown)[],
): Promise<SinkFleet> {
  const sinks = await Promise.all(sinkAddresses.map((a) => Sink.start(a)));
  cleanup.push(() => sinks.forEach((s) => s.close()));
  installYaml(file, doc(sinks));
  const lb = await ServeProcess.start(file);
  cleanup.push(() => lb.stop('SIGKILL'));
  const m = lb.info.metrics!;
  return {
    lb,
    sinks,
    file,
    metrics: () => lb.metrics(),
    healthz: async () => (await fetch(`http://${m.address}:${m.port}/healthz`)).text(),
  };
}

/** A UDP client bound to `address`; its close is pushed onto `cleanup`. */
export async function startClient(address: string, cleanup: (() => unknown)[]): Promise<Client> {
  const c = await Client.start(address);
  cleanup.push(() => c.close());
  return c;
}
