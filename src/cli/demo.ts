// `quic-lb demo`: the quick start (the LB and two demo backends in one process, with an embedded
// config) and `quic-lb demo backend`: one demo backend process that reads the LB's config file
// (docs/backend.md).
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { isIP, isIPv6 } from 'node:net';
import type { CommandModule } from 'yargs';
import { BackendError, BackendSocket, createBackendCids, type Endpoint } from '../backend/index.js';
import { DemoServer, loadIdentity } from '../demo/index.js';
import { configSources, keyFileWarning, loadConfigFile, parseConfig, parseEndpoint, startLoadBalancer, type LbConfig } from '../lb/index.js';
// Not re-exported by src/lb/index.ts yet: the key files a config names (for the mode check).
import { createConfig, QuicLbEncoder, type EncoderConfigEntry } from '../quic-lb/index.js';
import { CliError } from './errors.js';

/** Defaults of the quick start (README "backend" section, docs/backend.md). */
export const DEMO_DEFAULTS = Object.freeze({
  vip: '127.0.0.1:4433',
  backends: ['127.0.0.2:4434', '127.0.0.3:4434'],
  metrics: '127.0.0.1:9433',
});

export interface DemoBackendOptions {
  /** Backend name in the LB config. */
  name: string;
  /** Override the address to listen on (default: the backend's `address` in the config). */
  listen?: Endpoint;
  /** preferred_address to advertise (default: the listen address); null: none. */
  preferred?: Endpoint | null;
  /** QUIC-LB config id to mint with (default: the last config in the file this backend has a server ID for). */
  configId?: number;
  eventLog?: string;
  staticDir?: string;
  resetKey?: Uint8Array;
  /**
   * Where replies to clients that came through an LB go (docs/backend.md "Return traffic"):
   * 'return-port' = the LB config's `returnPath.listen` (on the anycast VIP in a fleet: the
   * router picks a live LB), 'lb' = the LB socket that forwarded the client's datagram,
   * 'auto' (default) = 'return-port' when `returnPath.listen` names a specific address of the
   * listen address's family and a fixed port and the backend listens on a specific address (the
   * source the LB's `returnPath.allow` knows), else 'lb'. Ignored in `direct` mode.
   */
  replyTo?: ReplyTo;
  /** LB source addresses allowed to deliver encapsulated datagrams and probes (BackendSocket `allowLbAddresses`). */
  allowLb?: string[];
  /** Accept encapsulated datagrams from any source without HMAC (BackendSocket `insecureAnyLb`; warns). */
  insecureAnyLb?: boolean;
  /** Warnings (insecureAnyLb at bind). */
  onWarning?: (message: string) => void;
  certFile?: string;
  keyFile?: string;
  onEvent?: (e: Record<string, unknown>) => void;
}

export const REPLY_TO = ['auto', 'return-port', 'lb'] as const;
export type ReplyTo = (typeof REPLY_TO)[number];

export interface RunningBackend {
  server: DemoServer;
  socket: BackendSocket;
  encoder: QuicLbEncoder;
  addresses: Endpoint[];
  /** Where LB-path replies go: the return port, or undefined = back to the forwarding LB (or from the VIP in direct mode). */
  replyTo: Endpoint | undefined;
  /** Health probes answer "draining" from now on (the LB stops picking this backend for new connections); existing connections go on. */
  drain(): void;
  /**
   * Applies a new LB config: swaps in its return-path HMAC keys (when it has any), adds its QUIC-LB
   * configs and, if the active one changed, re-issues CIDs. Throws (CliError, BackendError) before
   * changing anything when the config does not fit this backend.
   */
  applyConfig(config: LbConfig, configId?: number): { activeConfigId: number | undefined; reissued: number; hmacKeys: number };
  close(): Promise<void>;
}

/** The encoder entries of backend `name`: every QUIC-LB config it has a server ID for, file order. */
function encoderEntries(config: LbConfig, name: string): EncoderConfigEntry[] {
  const b = config.backends.find((x) => x.name === name);
  if (!b) throw new CliError(`--name: no backend '${name}' in the config (have: ${config.backends.map((x) => x.name).join(', ')})`);
  const entries: EncoderConfigEntry[] = [];
  for (const spec of config.quicLb) {
    const sid = b.serverIds.find((s) => s.configId === spec.configId);
    if (!sid) continue;
    const qc = createConfig({
      configId: spec.configId,
      serverIdLength: spec.serverIdLength,
      nonceLength: spec.nonceLength,
      key: spec.key === undefined ? undefined : Buffer.from(spec.key, 'hex'),
      cipher: spec.cipher,
    });
    entries.push({ config: qc, serverId: Buffer.from(sid.serverId, 'hex') });
  }
  return entries;
}

/** What makes a config entry different for the encoder: lengths, key, cipher, server ID. */
function entrySignature(e: EncoderConfigEntry): string {
  const c = e.config;
  const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '-');
  return `${c.serverIdLength}/${c.nonceLength}/${hex(c.key)}/${c.cipher ?? '-'}/${hex(e.serverId)}`;
}

/** The return-path HMAC keys of an LB config (`returnPath.hmacKeys`), current (signing) key first. */
export function returnKeysOf(config: LbConfig): Uint8Array[] {
  return config.returnPath.hmacKeys.map((k) => Buffer.from(k, 'hex'));
}

/** What `quic-lb demo backend` says when nothing authenticates the LBs (BackendSocket ERR_BACKEND_LB_UNAUTHENTICATED). */
export const LB_AUTH_HINT =
  'nothing authenticates the load balancers, so anyone could make this backend send anywhere: add --allow-lb with the LBs\' source addresses ' +
  '(e.g. --allow-lb 10.0.0.1,10.0.0.2), or set returnPath.hmacKey and returnPath.signForward: true in the config, ' +
  'or --insecure-any-lb (tests only)';

/** Starts one demo backend for backend `opts.name` of an LB config. */
export async function startDemoBackend(config: LbConfig, opts: DemoBackendOptions): Promise<RunningBackend> {
  const entries = encoderEntries(config, opts.name);
  const spec = config.backends.find((x) => x.name === opts.name)!;
  if (entries.length === 0) throw new CliError(`backend '${opts.name}' has no serverIds for any /quicLb config: it could only mint unroutable CIDs`);
  const activeId = opts.configId ?? entries[entries.length - 1].config.configId;
  if (!entries.some((e) => e.config.configId === activeId)) throw new CliError(`--config-id: backend '${opts.name}' has no server ID for config ${activeId}`);
  const encoder = new QuicLbEncoder({ configs: entries, activeConfigId: activeId });
  const signatures = new Map(entries.map((e) => [e.config.configId, entrySignature(e)]));
  const cids = createBackendCids(encoder, opts.resetKey ?? randomBytes(32));
  const listen = opts.listen ?? { address: spec.address.address, port: spec.address.port };
  const preferred = opts.preferred === undefined ? listen : opts.preferred;
  const rp = config.returnPath;
  const replyTo = rp.mode === 'direct' ? undefined : returnPortFor(rp.listen, listen, opts.replyTo ?? 'auto');
  for (const [i, a] of (opts.allowLb ?? []).entries()) if (isIP(a) === 0) throw new CliError(`--allow-lb: expected IP literals, got '${a}' (item ${i + 1})`);
  const keys = returnKeysOf(config);
  let socket: BackendSocket;
  try {
    socket = new BackendSocket({
      listen,
      unicast: preferred && (preferred.address !== listen.address || preferred.port !== listen.port) ? [preferred] : [],
      returnPath:
        rp.mode === 'direct' && config.listen[0]
          ? { mode: 'direct', vip: config.listen[0] }
          : replyTo
            ? { mode: 'via-lb', address: replyTo.address, port: replyTo.port }
            : { mode: 'via-lb' },
      hmacKeys: keys.length > 0 ? keys : undefined,
      signForward: rp.signForward,
      allowLbAddresses: opts.allowLb && opts.allowLb.length > 0 ? opts.allowLb : undefined,
      insecureAnyLb: opts.insecureAnyLb,
    });
  } catch (err) {
    if (err instanceof BackendError && err.code === 'ERR_BACKEND_LB_UNAUTHENTICATED') throw new CliError(LB_AUTH_HINT);
    throw err;
  }
  if (opts.onWarning) socket.on('warning', opts.onWarning);
  await socket.bind();
  const sid = spec.serverIds.find((s) => s.configId === activeId)?.serverId;
  const server = new DemoServer({
    socket,
    cids,
    resetToken: cids.resetToken,
    cidLength: cids.cidLength,
    serverId: sid,
    name: opts.name,
    // draft-21 §9.2: a plaintext config gets one CID per connection, so no preferred_address
    // (its CID would be a second one) and no NEW_CONNECTION_ID.
    preferredAddress: preferred && cids.allowsAdditionalCids ? (isIPv6(preferred.address) ? { ipv6: preferred } : { ipv4: preferred }) : undefined,
    issueNewConnectionIds: cids.allowsAdditionalCids,
    disableActiveMigration: !cids.allowsAdditionalCids,
    identity: opts.certFile && opts.keyFile ? loadIdentity(opts.certFile, opts.keyFile) : undefined,
    eventLog: opts.eventLog,
    staticDir: opts.staticDir,
  });
  if (opts.onEvent) server.on('event', opts.onEvent);
  server.event('backend-started', {
    listen: `${listen.address}:${listen.port}`,
    preferred: preferred && cids.allowsAdditionalCids ? `${preferred.address}:${preferred.port}` : null,
    configId: activeId,
    cidLength: cids.length,
    replyTo: replyTo ? `${replyTo.address}:${replyTo.port}` : rp.mode === 'direct' ? 'vip' : 'lb',
  });
  let draining = false;
  return {
    server,
    socket,
    encoder,
    addresses: socket.addresses(),
    replyTo,
    drain() {
      if (draining) return;
      draining = true;
      socket.drain();
      server.event('draining', { connections: server.stats.connectionsActive });
    },
    applyConfig(next: LbConfig, configId?: number) {
      const fresh = encoderEntries(next, opts.name);
      // Keys first: setKeys validates before it swaps, so a failure leaves everything as it was.
      const nextKeys = returnKeysOf(next);
      if (nextKeys.length > 0) socket.setKeys(nextKeys);
      const hmacKeys = nextKeys.length;
      const activeBefore = encoder.activeConfig?.configId;
      let activeRedefined = false;
      for (const e of fresh) {
        const id = e.config.configId;
        const signature = entrySignature(e);
        const prev = signatures.get(id);
        if (prev === signature) continue;
        // A codepoint redefined in place (new key, lengths or server ID): replace it. Better
        // practice is a new codepoint (draft-21 §3.1), but never keep minting with a stale key.
        if (prev !== undefined) {
          encoder.removeConfig(id);
          if (id === activeBefore) activeRedefined = true;
        }
        encoder.addConfig(e);
        signatures.set(id, signature);
      }
      const want = configId ?? fresh[fresh.length - 1]?.config.configId;
      if (want === undefined) return { activeConfigId: encoder.activeConfig?.configId, reissued: 0, hmacKeys };
      if (encoder.activeConfig?.configId !== want) encoder.setActiveConfig(want);
      if (want === activeBefore && !activeRedefined) return { activeConfigId: want, reissued: 0, hmacKeys };
      const reissued = server.reissueConnectionIds(`config ${want}`);
      return { activeConfigId: want, reissued, hmacKeys };
    },
    async close() {
      server.close();
      await socket.close();
    },
  };
}

const isUnspecified = (address: string): boolean => address === '0.0.0.0' || /^[0:]+$/.test(address);

/**
 * The return port replies go to, or undefined for "back to the forwarding LB". 'auto' picks the
 * return port when it is reachable as configured: a specific address (not 0.0.0.0 / ::) of the
 * listen socket's family and a fixed port; and only when the backend listens on a specific
 * address, because the return port accepts only the sources in `returnPath.allow` (by default
 * the backends' configured addresses) while the forwarding LB's own socket takes replies from
 * whatever address the backend's kernel picks.
 */
function returnPortFor(rpListen: Endpoint | undefined, listen: Endpoint, mode: ReplyTo): Endpoint | undefined {
  if (!REPLY_TO.includes(mode)) throw new CliError(`--reply-to: expected one of ${REPLY_TO.join(', ')}, got '${String(mode)}'`);
  if (mode === 'lb' || (mode === 'auto' && isUnspecified(listen.address))) return undefined;
  const usable = rpListen !== undefined && !isUnspecified(rpListen.address) && rpListen.port !== 0 && isIPv6(rpListen.address) === isIPv6(listen.address);
  if (usable) return { address: rpListen.address, port: rpListen.port };
  if (mode === 'return-port') {
    throw new CliError(
      `--reply-to return-port: returnPath.listen ${rpListen ? `'${rpListen.address}:${rpListen.port}'` : '(none)'} is not a specific address and port of the listen address's family`,
    );
  }
  return undefined;
}

/**
 * The hex key of at least 16 octets in the file of `--reset-key-file` (whitespace around it
 * ignored), or undefined without a file. Secrets come only from files: a key on the command
 * line is visible to every local user (`ps`). Throws CliError naming the flag.
 */
export function resetKeyFromFile(file: string | undefined): Uint8Array | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`--reset-key-file: cannot read ${file}: ${(err as Error).message}`);
  }
  const s = text.trim().toLowerCase();
  if (!/^([0-9a-f]{2})+$/.test(s)) throw new CliError('--reset-key-file: expected an even number of hex digits');
  if (s.length < 32) throw new CliError(`--reset-key-file: expected at least 16 octets, got ${s.length / 2}`);
  return Buffer.from(s, 'hex');
}

/** The refusal of the removed `--reset-key HEX`. */
export const RESET_KEY_REMOVED =
  '--reset-key: removed (a key on the command line is visible to every local user); write it to a file readable only by this user and pass --reset-key-file FILE';

/** Mode warnings (keyFileWarning) for every key file the backend reads: the config's `*File` keys and the reset key file. */
export function keyFileWarnings(configFile: string, resetKeyFile: string | undefined): string[] {
  const files = [...configSources(configFile).keyFiles, ...(resetKeyFile === undefined ? [] : [resetKeyFile])];
  return [...new Set(files)].map(keyFileWarning).filter((w): w is string => w !== undefined);
}

/** `CODE at /field: reason` for a typed error (ConfigError, BackendError), else its message. */
export function errorLine(err: unknown): string {
  const e = err as { code?: unknown; field?: unknown; reason?: unknown; message?: unknown };
  if (typeof e?.code !== 'string' || typeof e.field !== 'string') return String(e?.message ?? err);
  const field = e.field.startsWith('/') ? e.field : `/${e.field}`;
  const reason = typeof e.reason === 'string' ? e.reason : String(e.message).replace(`${e.field}: `, '');
  return `${e.code} at ${field}: ${reason}`;
}

/**
 * The source address the kernel picks to reach `to` (what a backend there sees from an unbound
 * socket of this host, e.g. the LB's upstream and probe sockets): a connected UDP socket's local
 * address; nothing is sent.
 */
export function sourceAddressToward(to: Endpoint): Promise<string> {
  const s = dgram.createSocket(isIPv6(to.address) ? 'udp6' : 'udp4');
  return new Promise<string>((resolve, reject) => {
    s.once('error', reject);
    s.connect(to.port, to.address, () => resolve(s.address().address));
  }).finally(() => s.close());
}

function endpointArg(text: string, flag: string): Endpoint {
  const e = parseEndpoint(text, false);
  if (!e) throw new CliError(`${flag}: expected address:port, got '${text}'`);
  return { address: e.address, port: e.port };
}

/** The quick start's LB config (YAML), with fresh random keys. */
export function quickStartConfig(vip: string, backends: string[], metrics: string): string {
  const key = randomBytes(16).toString('hex');
  const fallback = randomBytes(16).toString('hex');
  const lines = [
    'listen:',
    `  - '${vip}'`,
    'quicLb:',
    `  - { configId: 0, serverIdLength: 2, nonceLength: 6, key: '${key}' }`,
    'backends:',
    ...backends.map((b, i) => `  - { name: backend-${i + 1}, address: '${b}', serverIds: { '0': '${(i + 1).toString(16).padStart(4, '0')}' } }`),
    'health:',
    '  intervalMs: 500',
    `fallback: { key: '${fallback}' }`,
    'returnPath:',
    '  mode: via-lb',
    `  listen: '${vip.replace(/:(\d+)$/, (_m, p: string) => `:${Number(p) + 2}`)}'`,
    'metrics:',
    `  listen: '${metrics}'`,
    'log: { level: warn }',
  ];
  return `${lines.join('\n')}\n`;
}

/** The command line the quick start prints. */
export function clientCommand(vip: Endpoint, path = '/bytes/200000'): string {
  return `gtlsclient --exit-on-all-streams-close --no-quic-dump --no-http-dump --delay-stream=300ms ${vip.address} ${vip.port} https://${vip.address}:${vip.port}${path}`;
}

function describeEvent(e: Record<string, unknown>): string | undefined {
  const who = String(e.name ?? '');
  switch (e.event) {
    case 'connection-accepted':
      return `${who}: connection ${e.conn} from ${e.client} via ${e.via}`;
    case 'handshake-complete':
      return `${who}: connection ${e.conn} handshake done in ${Math.round(Number(e.ms))} ms`;
    case 'migrated':
      return `${who}: connection ${e.conn} moved to ${e.via} (client ${e.to}, CID seq ${e.cidSeq})`;
    case 'path-validated':
      return `${who}: connection ${e.conn} path ${e.via} validated`;
    case 'request':
      return `${who}: connection ${e.conn} GET ${e.path}`;
    case 'stream-sent':
      return `${who}: connection ${e.conn} sent ${e.bytes} octets on ${e.via}`;
    case 'closed':
      return `${who}: connection ${e.conn} closed (${e.by})`;
    case 'cids-reissued':
      return `${who}: re-issued CIDs of ${e.connections} connections (${e.reason})`;
    default:
      return undefined;
  }
}

interface DemoArgs {
  vip: string;
  backends: string;
  metrics: string;
  'event-log'?: string;
  quiet: boolean;
}

interface BackendArgs {
  config: string;
  name: string;
  listen?: string;
  /** false with --no-preferred (yargs boolean negation) */
  preferred?: string | false;
  'config-id'?: number;
  'event-log'?: string;
  static?: string;
  'reset-key'?: string;
  'reset-key-file'?: string;
  'reply-to'?: string;
  'allow-lb'?: string[];
  'insecure-any-lb'?: boolean;
  cert?: string;
  key?: string;
}

function waitForSignal(cleanup: () => Promise<void>): void {
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void cleanup().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

const backendCommand: CommandModule<object, BackendArgs> = {
  command: 'backend',
  describe: 'run one demo QUIC backend for a backend of an LB config file',
  builder: (y) =>
    y
      .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'the LB config file (QUIC-LB configs, server IDs, addresses)' })
      .option('name', { alias: 'n', type: 'string', demandOption: true, describe: 'this backend\'s name in the config' })
      .option('listen', { type: 'string', describe: 'address:port to listen on (default: the backend\'s address in the config)' })
      .option('preferred', { type: 'string', describe: 'preferred_address to advertise (default: the listen address); --no-preferred: none' })
      .option('config-id', { type: 'number', describe: 'QUIC-LB config to mint CIDs with (default: the last one in the file with a server ID for this backend)' })
      .option('event-log', { type: 'string', describe: 'append JSON-lines events to this file' })
      .option('static', { type: 'string', describe: 'serve files from this directory (besides /bytes/N)' })
      // Removed (a secret in argv): kept hidden only to refuse it with a pointer to --reset-key-file.
      .option('reset-key', { type: 'string', hidden: true })
      .option('reset-key-file', { type: 'string', describe: 'read the stateless reset static key (hex, >= 16 octets) from this file, e.g. a mounted Secret (default: random per process)' })
      .option('reply-to', {
        type: 'string',
        choices: REPLY_TO as unknown as string[],
        default: 'auto',
        describe: 'where replies to LB-delivered clients go: the config\'s returnPath.listen (return-port), the forwarding LB (lb), or auto: return-port when it is a specific address, else lb',
      })
      .option('allow-lb', {
        type: 'string',
        array: true,
        describe: 'LB source addresses allowed to deliver encapsulated datagrams and health probes (repeat or comma-separate); needed unless the config has returnPath.signForward with a key',
      })
      .option('insecure-any-lb', { type: 'boolean', default: false, describe: 'accept encapsulated datagrams from any source without authentication (tests only; prints a warning)' })
      .option('cert', { type: 'string', describe: 'PEM certificate chain (default: a fresh self-signed ECDSA P-256 one)' })
      .option('key', { type: 'string', describe: 'PEM private key (ECDSA P-256) of --cert' })
      .example('$0 demo backend --config lb.yaml --name backend-1 --event-log b1.jsonl', 'serve as backend-1')
      .epilog(
        'SIGHUP re-reads the config: new QUIC-LB configs are added and, when the active one changes, every live connection gets new CIDs with Retire Prior To. ' +
          'SIGUSR2 drains: health probes answer "draining" (the LB sends no new connections here), existing connections go on. SIGTERM stops.',
      ) as never,
  handler: async (argv) => {
    if (argv['reset-key'] !== undefined) throw new CliError(RESET_KEY_REMOVED);
    const say = (line: string): boolean => process.stderr.write(`quic-lb demo backend: ${line}\n`);
    const warnKeyFiles = (): void => {
      for (const w of keyFileWarnings(argv.config, argv['reset-key-file'])) say(`warning: ${w}`);
    };
    const config = loadConfigFile(argv.config);
    const resetKey = resetKeyFromFile(argv['reset-key-file']);
    warnKeyFiles();
    const running = await startDemoBackend(config, {
      name: argv.name,
      listen: argv.listen ? endpointArg(argv.listen, '--listen') : undefined,
      preferred: argv.preferred === false ? null : argv.preferred ? endpointArg(argv.preferred, '--preferred') : undefined,
      configId: argv['config-id'],
      eventLog: argv['event-log'],
      staticDir: argv.static,
      resetKey,
      replyTo: argv['reply-to'] as ReplyTo | undefined,
      allowLb: argv['allow-lb']?.flatMap((a) => a.split(',')).map((a) => a.trim()).filter((a) => a.length > 0),
      insecureAnyLb: argv['insecure-any-lb'],
      onWarning: (w) => say(`warning: ${w}`),
      certFile: argv.cert,
      keyFile: argv.key,
    });
    // SIGHUP: the QUIC-LB configs and the return-path HMAC keys, all or nothing.
    process.on('SIGHUP', () => {
      try {
        const r = running.applyConfig(loadConfigFile(argv.config), argv['config-id']);
        say(`config reloaded, active QUIC-LB config ${r.activeConfigId}, ${r.reissued} connections got new CIDs, ${r.hmacKeys} return-path keys`);
      } catch (err) {
        say(`reload failed, keeping the running config and keys: ${errorLine(err)}`);
      }
      warnKeyFiles();
    });
    process.on('SIGUSR2', () => {
      running.drain();
      process.stderr.write('quic-lb demo backend: draining (health probes answer "draining"; existing connections go on)\n');
    });
    const replyTo = running.replyTo ? `${running.replyTo.address}:${running.replyTo.port}` : config.returnPath.mode === 'direct' ? 'vip' : 'lb';
    process.stdout.write(
      `${JSON.stringify({ ready: true, pid: process.pid, name: argv.name, addresses: running.addresses, configId: running.encoder.activeConfig?.configId, replyTo })}\n`,
    );
    waitForSignal(() => running.close());
  },
};

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'quick start: the LB on a VIP and two demo QUIC backends that advertise their own address (preferred_address)',
  builder: (y) =>
    y
      .command(backendCommand as CommandModule)
      .option('vip', { global: false, type: 'string', default: DEMO_DEFAULTS.vip, describe: 'VIP address:port of the LB' })
      .option('backends', { global: false, type: 'string', default: DEMO_DEFAULTS.backends.join(','), describe: 'comma-separated backend address:port list' })
      .option('metrics', { global: false, type: 'string', default: DEMO_DEFAULTS.metrics, describe: 'address:port of the LB\'s /metrics and /healthz' })
      .option('event-log', { global: false, type: 'string', describe: 'append the backends\' JSON-lines events to this file' })
      .option('quiet', { global: false, type: 'boolean', default: false, describe: 'do not print backend events' })
      .example('$0 demo', 'LB on 127.0.0.1:4433, backends on 127.0.0.2:4434 and 127.0.0.3:4434') as never,
  handler: async (argv) => {
    const vip = endpointArg(argv.vip, '--vip');
    const backendAddrs = argv.backends.split(',').map((b) => endpointArg(b.trim(), '--backends'));
    endpointArg(argv.metrics, '--metrics');
    const config = parseConfig(quickStartConfig(argv.vip, backendAddrs.map((b) => `${b.address}:${b.port}`), argv.metrics));
    const lb = await startLoadBalancer(config);
    const backends: RunningBackend[] = [];
    try {
      for (const b of config.backends) {
        backends.push(
          await startDemoBackend(config, {
            name: b.name,
            // The LB forwards and probes from unbound sockets: the backend sees the source the kernel picks.
            allowLb: [await sourceAddressToward(b.address)],
            eventLog: argv['event-log'],
            onEvent: argv.quiet
              ? undefined
              : (e) => {
                  const line = describeEvent(e);
                  if (line) process.stdout.write(`  ${line}\n`);
                },
          }),
        );
      }
    } catch (err) {
      for (const b of backends) await b.close();
      await lb.close();
      throw err;
    }
    const a = lb.addresses();
    const out = [
      'quic-lb demo is running:',
      `  load balancer  VIP ${vip.address}:${vip.port} (QUIC-LB config 0, 4-pass AES, 2-octet server IDs)`,
      ...config.backends.map((b, i) => `  ${b.name}      ${b.address.address}:${b.address.port}  server ID ${b.serverIds[0]?.serverId}  preferred_address ${backends[i].addresses[0].address}:${backends[i].addresses[0].port}`),
      `  metrics        http://${a.metrics?.address}:${a.metrics?.port}/metrics`,
      '',
      'Try it (Debian/Ubuntu: apt-get install ngtcp2-client):',
      `  ${clientCommand(vip)}`,
      '',
      'The handshake goes through the VIP; the client then moves to the backend\'s own address and the',
      'LB sees no more of the connection. Ctrl-C stops everything.',
      '',
    ];
    process.stdout.write(out.join('\n'));
    waitForSignal(async () => {
      for (const b of backends) await b.close();
      await lb.close();
    });
  },
};
