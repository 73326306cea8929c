// A stack of real processes on loopback for end-to-end tests: `quic-lb serve` (the LB) and
// `quic-lb demo backend` processes from the built CLI (dist/cli.js), one shared config file.
// Processes start and stop through test/helpers/process.ts (by PID); every wait has a deadline.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';
import { sourceAddressToward } from '../../src/demo/index.js';
import { parseMetrics } from '../helpers/metrics.js';

export interface QuicLbSpec {
  configId: number;
  serverIdLength: number;
  nonceLength: number;
  /** hex; absent = plaintext */
  key?: string;
}

export interface BackendDef {
  name: string;
  address: string;
  port: number;
  /** server ID (hex) per config id */
  serverIds: Record<number, string>;
}

export interface StackSpec {
  vip: { address: string; port: number };
  metricsPort: number;
  quicLb: QuicLbSpec[];
  backends: BackendDef[];
  /** `socket.reusePort: true`: another LB can bind the VIP beside this one (needs Node >= 22.12). */
  reusePort?: boolean;
  /** More top-level YAML lines appended to the config (e.g. a `retry` section). */
  extraYaml?: string[];
}

export function configYaml(spec: StackSpec, fallbackKey: string): string {
  const lines = [
    'listen:',
    `  - '${spec.vip.address}:${spec.vip.port}'`,
    'quicLb:',
    ...spec.quicLb.map(
      (q) =>
        `  - { configId: ${q.configId}, serverIdLength: ${q.serverIdLength}, nonceLength: ${q.nonceLength}${q.key ? `, key: '${q.key}'` : ''} }`,
    ),
    'backends:',
    ...spec.backends.map(
      (b) =>
        `  - { name: ${b.name}, address: '${b.address}:${b.port}', serverIds: { ${Object.entries(b.serverIds)
          .map(([k, v]) => `'${k}': '${v}'`)
          .join(', ')} } }`,
    ),
    // Lenient probes: a backend busy with twenty handshakes on a shared 2-core machine must not
    // flap down (CID-routed packets would then take the fallback to the other backend).
    'health: { intervalMs: 500, timeoutMs: 1500, fall: 5 }',
    `fallback: { key: '${fallbackKey}' }`,
    'returnPath:',
    '  mode: via-lb',
    `  listen: '${spec.vip.address}:${spec.vip.port + 1}'`,
    'metrics:',
    `  listen: '${spec.vip.address}:${spec.metricsPort}'`,
    'drainMs: 0',
    'log: { level: warn }',
    ...(spec.reusePort ? ['socket: { reusePort: true }'] : []),
    ...(spec.extraYaml ?? []),
  ];
  return `${lines.join('\n')}\n`;
}

export interface Stack {
  dir: string;
  configFile: string;
  spec: StackSpec;
  lb: Proc;
  backends: Map<string, Proc>;
  eventLog(name: string): string;
  stop(): Promise<void>;
}

/** Writes the config, starts the LB, then one demo backend per backend entry. */
export async function startStack(spec: StackSpec, backendArgs: (b: BackendDef) => string[] = () => []): Promise<Stack> {
  const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-e2e-'));
  const configFile = path.join(dir, 'lb.yaml');
  writeFileSync(configFile, configYaml(spec, randomBytes(16).toString('hex')));
  const eventLog = (name: string): string => path.join(dir, `${name}.jsonl`);
  // Backends first: the LB's health probes then succeed from the start (no down/up flap).
  const backends = new Map<string, Proc>();
  let lb: Proc | undefined;
  try {
    // --allow-lb: the address the LB's unbound forwarding and probe sockets reach each backend from.
    const started = await Promise.all(
      spec.backends.map(async (b) => {
        const lbSource = await sourceAddressToward({ address: b.address, port: b.port });
        return startCli([
          'demo',
          'backend',
          '--config',
          configFile,
          '--name',
          b.name,
          '--event-log',
          eventLog(b.name),
          '--allow-lb',
          lbSource,
          ...backendArgs(b),
        ]);
      }),
    );
    spec.backends.forEach((b, i) => backends.set(b.name, started[i]));
    lb = await startCli(['serve', '--config', configFile, '--no-watch']);
    await waitFor(
      'backends up at the LB',
      async () => {
        const m = await scrape(spec);
        return spec.backends.every(
          (b) =>
            m.get(`quic_lb_backend_state{backend="${b.name}",state="up"}`) === 1 &&
            (m.get(`quic_lb_health_checks_total{backend="${b.name}",result="ok"}`) ?? 0) >= 1,
        );
      },
      10_000,
    );
  } catch (err) {
    await Promise.all([...backends.values()].map((p) => stop(p)));
    await stop(lb);
    throw err;
  }
  const lbProc = lb;
  return {
    dir,
    configFile,
    spec,
    lb: lbProc,
    backends,
    eventLog,
    async stop() {
      await Promise.all([...backends.values()].map((p) => stop(p)));
      await stop(lbProc);
    },
  };
}

export type Event = Record<string, unknown> & { event: string };

/** The JSON-lines events a backend logged so far. */
export function readEvents(file: string): Event[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Event);
}

/** Scrapes the LB's /metrics into `name{labels}` -> value. */
export async function scrape(spec: StackSpec): Promise<Map<string, number>> {
  const res = await fetch(`http://${spec.vip.address}:${spec.metricsPort}/metrics`);
  return parseMetrics(await res.text());
}

/** Sum of every series of `name` (optionally only those whose labels contain `filter`). */
export function total(metrics: Map<string, number>, name: string, filter = ''): number {
  let t = 0;
  for (const [k, v] of metrics) if ((k === name || k.startsWith(`${name}{`)) && k.includes(filter)) t += v;
  return t;
}
