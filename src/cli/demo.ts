// `quic-lb demo`: the quick start (the LB and two demo backends in one process, with an embedded
// config) and `quic-lb demo backend`: one demo backend process that reads the LB's config file
// (docs/backend.md).
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { AnycastError, type AnycastServer, startAnycastServer } from '../anycast/index.js';
import { BackendError, type Endpoint } from '../backend/index.js';
import {
  certificateHash,
  chromiumCommand,
  clientCommand,
  DemoBackendError,
  describeEvent,
  generateSelfSigned,
  loadIdentity,
  persistentIdentity,
  quickStartConfig,
  REPLY_TO,
  sourceAddressToward,
  spkiPin,
  startDemoBackend,
  type DemoBackendOption,
  type ReplyTo,
  type RunningBackend,
  type ServerIdentity,
} from '../demo/index.js';
import { configSources, keyFileWarning, loadConfigFile, parseConfig, startLoadBalancer } from '../lb/index.js';
import { parseEndpoint } from '../wire/index.js';
import { CliError } from './errors.js';

/** Defaults of the quick start (README "backend" section, docs/backend.md). */
export const DEMO_DEFAULTS = Object.freeze({
  vip: '127.0.0.1:4433',
  backends: ['127.0.0.2:4434', '127.0.0.3:4434'],
  metrics: '127.0.0.1:9433',
});

/** What `quic-lb demo backend` says when nothing authenticates the LBs (BackendSocket ERR_BACKEND_LB_UNAUTHENTICATED). */
export const LB_AUTH_HINT =
  "nothing authenticates the load balancers, so anyone could make this backend send anywhere: add --allow-lb with the LBs' source addresses " +
  '(e.g. --allow-lb 10.0.0.1,10.0.0.2), or set returnPath.hmacKey and returnPath.signForward: true in the config, ' +
  'or --insecure-any-lb (tests only)';

/** The flag of each demo backend option a DemoBackendError can name. */
const OPTION_FLAGS: Record<DemoBackendOption, string> = {
  name: '--name',
  configId: '--config-id',
  allowLb: '--allow-lb',
  replyTo: '--reply-to',
};

/**
 * `err` as the CLI reports it: a DemoBackendError becomes `--flag[ value]: reason`, the
 * unauthenticated-LB refusal becomes LB_AUTH_HINT, a Retry key file that does not load
 * `--retry-key-file: FILE: reason`; anything else is returned as is.
 */
function cliErrorOf(err: unknown): unknown {
  if (err instanceof DemoBackendError) {
    if (err.option === undefined) return new CliError(err.message);
    return new CliError(`${OPTION_FLAGS[err.option]}${err.value === undefined ? '' : ` ${err.value}`}: ${err.message}`);
  }
  if (err instanceof BackendError && err.code === 'ERR_BACKEND_LB_UNAUTHENTICATED') return new CliError(LB_AUTH_HINT);
  if (err instanceof BackendError && err.code === 'ERR_BACKEND_RETRY_KEY')
    return new CliError(`--retry-key-file: ${err.message.slice(err.field.length + 2)}`);
  if (err instanceof AnycastError) return new CliError(`--anycast: ${err.code} at ${err.field}: ${err.reason}`);
  return err;
}

/** startDemoBackend with its errors as the CLI reports them. */
async function startBackend(...args: Parameters<typeof startDemoBackend>): Promise<RunningBackend> {
  try {
    return await startDemoBackend(...args);
  } catch (err) {
    throw cliErrorOf(err);
  }
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

/** Mode warnings (keyFileWarning) for every key file the backend reads: the config's `*File` keys, the reset and Retry token key files. */
export function keyFileWarnings(
  configFile: string,
  resetKeyFile: string | undefined,
  retryKeyFiles: readonly string[] = [],
): string[] {
  const files = [
    ...configSources(configFile).keyFiles,
    ...(resetKeyFile === undefined ? [] : [resetKeyFile]),
    ...retryKeyFiles,
  ];
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

function endpointArg(text: string, flag: string): Endpoint {
  const e = parseEndpoint(text, false);
  if (!e) throw new CliError(`${flag}: expected address:port, got '${text}'`);
  return { address: e.address, port: e.port };
}

interface DemoArgs {
  vip: string;
  backends: string;
  metrics: string;
  'event-log'?: string;
  quiet: boolean;
  cert?: string;
  key?: string;
  'state-dir'?: string;
}

/** --cert and --key come together (a certificate without its key cannot sign, and vice versa). */
function checkCertKey(cert: string | undefined, key: string | undefined): void {
  if ((cert === undefined) !== (key === undefined)) throw new CliError('--cert and --key go together: give both');
}

/**
 * The quick start's one TLS identity, shared by every backend so one pin opens them all:
 * --cert/--key, else the one kept in --state-dir (made there on the first run), else a fresh one.
 */
function quickStartIdentity(argv: DemoArgs): ServerIdentity {
  checkCertKey(argv.cert, argv.key);
  if (argv['state-dir'] !== undefined && argv.cert !== undefined)
    throw new CliError('--state-dir and --cert/--key: give one or the other');
  try {
    if (argv.cert !== undefined && argv.key !== undefined) return loadIdentity(argv.cert, argv.key);
    if (argv['state-dir'] !== undefined) return persistentIdentity(argv['state-dir']);
  } catch (err) {
    throw new CliError(`${argv.cert !== undefined ? '--cert/--key' : '--state-dir'}: ${(err as Error).message}`);
  }
  return generateSelfSigned();
}

/** The ready-line fields that let a browser pin a backend's identity (docs/clients.md). */
function pinFields(identity: ServerIdentity): { spki: string; certSha256: string } {
  return { spki: spkiPin(identity), certSha256: certificateHash(identity) };
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
  'retry-key-file'?: string[];
  'reply-to'?: string;
  'allow-lb'?: string[];
  'insecure-any-lb'?: boolean;
  cert?: string;
  key?: string;
  anycast?: boolean;
  metrics?: string;
  'announce-max-connections'?: number;
  /** false with --no-forward */
  forward?: boolean;
  vip?: string[];
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
      .option('config', {
        alias: 'c',
        type: 'string',
        demandOption: true,
        describe: 'the LB config file (QUIC-LB configs, server IDs, addresses)',
      })
      .option('name', { alias: 'n', type: 'string', demandOption: true, describe: "this backend's name in the config" })
      .option('listen', {
        type: 'string',
        describe: "address:port to listen on (default: the backend's address in the config)",
      })
      .option('preferred', {
        type: 'string',
        describe: 'preferred_address to advertise (default: the listen address); --no-preferred: none',
      })
      .option('config-id', {
        type: 'number',
        describe:
          'QUIC-LB config to mint CIDs with (default: the last one in the file with a server ID for this backend)',
      })
      .option('event-log', { type: 'string', describe: 'append JSON-lines events to this file' })
      .option('static', { type: 'string', describe: 'serve files from this directory (besides /bytes/N)' })
      // Removed (a secret in argv): kept hidden only to refuse it with a pointer to --reset-key-file.
      .option('reset-key', { type: 'string', hidden: true })
      .option('reset-key-file', {
        type: 'string',
        describe:
          'read the stateless reset static key (hex, >= 16 octets) from this file, e.g. a mounted Secret (default: random per process)',
      })
      .option('retry-key-file', {
        type: 'string',
        array: true,
        describe:
          "a Retry token key file shared with the LBs' Retry offload (repeat for each key during a rotation; default: retry.keyFiles of the config): new connections whose Initial carries an LB token are accepted only if it opens; re-read on SIGHUP (docs/backend.md)",
      })
      .option('reply-to', {
        type: 'string',
        choices: REPLY_TO as unknown as string[],
        default: 'auto',
        describe:
          "where replies to LB-delivered clients go: the config's returnPath.listen (return-port), the forwarding LB (lb), or auto: return-port when it is a specific address, else lb",
      })
      .option('allow-lb', {
        type: 'string',
        array: true,
        describe:
          'LB source addresses allowed to deliver encapsulated datagrams and health probes (repeat or comma-separate); needed unless the config has returnPath.signForward with a key',
      })
      .option('insecure-any-lb', {
        type: 'boolean',
        default: false,
        describe: 'accept encapsulated datagrams from any source without authentication (tests only; prints a warning)',
      })
      .option('cert', {
        type: 'string',
        describe: 'PEM certificate chain (default: a fresh self-signed ECDSA P-256 one)',
      })
      .option('key', { type: 'string', describe: 'PEM private key (ECDSA P-256) of --cert' })
      .option('anycast', {
        type: 'boolean',
        default: false,
        describe:
          "server mode (docs/anycast.md): bind the config's VIPs (listen) and this server's address, forward VIP datagrams that belong to a peer, announce while accepting new connections; needs returnPath.mode: direct",
      })
      .option('metrics', {
        type: 'string',
        describe: '--anycast: address:port of /metrics and /healthz (default: metrics.listen of the config)',
      })
      .option('announce-max-connections', {
        type: 'number',
        describe:
          '--anycast: withdraw the VIP above this many active connections (overrides anycast.announce.maxConnections)',
      })
      .option('forward', {
        type: 'boolean',
        describe: '--anycast: --no-forward handles every VIP datagram here (a plain anycast server, for measurement)',
      })
      .option('vip', {
        type: 'string',
        array: true,
        describe:
          '--anycast: bind only these VIPs of listen (repeat); for several servers on one host, each with its own VIP literal',
      })
      .example('$0 demo backend --config lb.yaml --name backend-1 --event-log b1.jsonl', 'serve as backend-1')
      .epilog(
        'SIGHUP re-reads the config: new QUIC-LB configs are added and, when the active one changes, every live connection gets new CIDs with Retire Prior To. ' +
          'SIGUSR2 drains: health probes answer "draining" (the LB sends no new connections here), existing connections go on. SIGTERM stops.',
      ) as never,
  handler: async (argv) => {
    if (argv['reset-key'] !== undefined) throw new CliError(RESET_KEY_REMOVED);
    checkCertKey(argv.cert, argv.key);
    const say = (line: string): boolean => process.stderr.write(`quic-lb demo backend: ${line}\n`);
    const warnKeyFiles = (): void => {
      for (const w of keyFileWarnings(argv.config, argv['reset-key-file'], argv['retry-key-file']))
        say(`warning: ${w}`);
    };
    const config = loadConfigFile(argv.config);
    const resetKey = resetKeyFromFile(argv['reset-key-file']);
    warnKeyFiles();
    if (argv.anycast) return anycastBackend(argv, config, resetKey, say, warnKeyFiles);
    const running = await startBackend(config, {
      name: argv.name,
      listen: argv.listen ? endpointArg(argv.listen, '--listen') : undefined,
      preferred:
        argv.preferred === false ? null : argv.preferred ? endpointArg(argv.preferred, '--preferred') : undefined,
      configId: argv['config-id'],
      eventLog: argv['event-log'],
      staticDir: argv.static,
      resetKey,
      replyTo: argv['reply-to'] as ReplyTo | undefined,
      allowLb: argv['allow-lb']
        ?.flatMap((a) => a.split(','))
        .map((a) => a.trim())
        .filter((a) => a.length > 0),
      insecureAnyLb: argv['insecure-any-lb'],
      onWarning: (w) => say(`warning: ${w}`),
      certFile: argv.cert,
      keyFile: argv.key,
      retryKeyFiles: argv['retry-key-file'],
    });
    // SIGHUP: the QUIC-LB configs, the return-path HMAC keys and the Retry token keys, all or nothing.
    process.on('SIGHUP', () => {
      try {
        const r = running.applyConfig(loadConfigFile(argv.config), argv['config-id']);
        say(
          `config reloaded, active QUIC-LB config ${r.activeConfigId}, ${r.reissued} connections got new CIDs, ${r.hmacKeys} return-path keys, ${r.retryKeys} Retry token keys`,
        );
      } catch (err) {
        say(`reload failed, keeping the running config and keys: ${errorLine(cliErrorOf(err))}`);
      }
      warnKeyFiles();
    });
    process.on('SIGUSR2', () => {
      running.drain();
      process.stderr.write(
        'quic-lb demo backend: draining (health probes answer "draining"; existing connections go on)\n',
      );
    });
    const replyTo = running.replyTo
      ? `${running.replyTo.address}:${running.replyTo.port}`
      : config.returnPath.mode === 'direct'
        ? 'vip'
        : 'lb';
    process.stdout.write(
      `${JSON.stringify({ ready: true, pid: process.pid, name: argv.name, addresses: running.addresses, configId: running.encoder.activeConfig?.configId, replyTo, ...pinFields(running.server.identity) })}\n`,
    );
    waitForSignal(() => running.close());
  },
};

/**
 * `quic-lb demo backend --anycast`: the server mode (src/anycast) with the demo QUIC server on
 * its socket. SIGUSR2 withdraws (drain), SIGHUP reloads config and keys, SIGTERM stops.
 */
async function anycastBackend(
  argv: BackendArgs,
  config: ReturnType<typeof loadConfigFile>,
  resetKey: Uint8Array | undefined,
  say: (line: string) => boolean,
  warnKeyFiles: () => void,
): Promise<void> {
  const max = argv['announce-max-connections'];
  if (max !== undefined && (!Number.isInteger(max) || max < 0))
    throw new CliError(`--announce-max-connections: expected an integer >= 0, got ${max}`);
  const preferred =
    argv.preferred === false ? null : argv.preferred ? endpointArg(argv.preferred, '--preferred') : undefined;
  let anycast: AnycastServer;
  try {
    anycast = await startAnycastServer(config, {
      name: argv.name,
      vips: argv.vip?.flatMap((v) => v.split(',')).map((v) => endpointArg(v.trim(), '--vip')),
      preferred: preferred ?? undefined,
      forward: argv.forward === false ? false : undefined,
      maxConnections: max,
      metrics: argv.metrics ? endpointArg(argv.metrics, '--metrics') : undefined,
    });
  } catch (err) {
    throw cliErrorOf(err);
  }
  let running: RunningBackend;
  try {
    running = await startBackend(config, {
      name: argv.name,
      socket: anycast.socket,
      preferred,
      configId: argv['config-id'],
      eventLog: argv['event-log'],
      staticDir: argv.static,
      resetKey,
      certFile: argv.cert,
      keyFile: argv.key,
      retryKeyFiles: argv['retry-key-file'],
    });
  } catch (err) {
    await anycast.close();
    throw err;
  }
  anycast.setActiveConnections(() => running.server.stats.connectionsActive);
  process.on('SIGHUP', () => {
    let next: ReturnType<typeof loadConfigFile>;
    try {
      next = loadConfigFile(argv.config);
    } catch (err) {
      say(`reload failed, keeping the running config and keys: ${errorLine(cliErrorOf(err))}`);
      return;
    }
    // The forwarder first (it checks the file fits the server mode, and every server must route a
    // QUIC-LB config before anyone mints CIDs under it), then the QUIC stack's configs.
    void anycast.reload(next).then((r) => {
      if (!r.ok) {
        say(`reload failed, keeping the running config and keys: ${errorLine(cliErrorOf(r.error))}`);
        return;
      }
      try {
        const q = running.applyConfig(next, argv['config-id']);
        say(
          `config reloaded (${next.backends.length} servers), active QUIC-LB config ${q.activeConfigId}, ${q.reissued} connections got new CIDs, ${q.retryKeys} Retry token keys`,
        );
      } catch (err) {
        say(`reload of the QUIC-LB configs failed, keeping them (forwarder reloaded): ${errorLine(cliErrorOf(err))}`);
      }
      warnKeyFiles();
    });
  });
  process.on('SIGUSR2', () => {
    anycast.drain();
    say('draining: VIP withdrawn (/healthz 503, probes answer "draining"); existing connections go on');
  });
  const a = anycast.addresses();
  process.stdout.write(
    `${JSON.stringify({ ready: true, pid: process.pid, name: argv.name, anycast: true, addresses: a.unicast, vips: a.vips, metrics: a.metrics, configId: running.encoder.activeConfig?.configId, ...pinFields(running.server.identity) })}\n`,
  );
  waitForSignal(async () => {
    await running.close();
    await anycast.close();
  });
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe:
    'quick start: the LB on a VIP and two demo QUIC backends that advertise their own address (preferred_address)',
  builder: (y) =>
    y
      .command(backendCommand as CommandModule)
      .option('vip', {
        global: false,
        type: 'string',
        default: DEMO_DEFAULTS.vip,
        describe: 'VIP address:port of the LB',
      })
      .option('backends', {
        global: false,
        type: 'string',
        default: DEMO_DEFAULTS.backends.join(','),
        describe: 'comma-separated backend address:port list',
      })
      .option('metrics', {
        global: false,
        type: 'string',
        default: DEMO_DEFAULTS.metrics,
        describe: "address:port of the LB's /metrics and /healthz",
      })
      .option('event-log', {
        global: false,
        type: 'string',
        describe: "append the backends' JSON-lines events to this file",
      })
      .option('quiet', { global: false, type: 'boolean', default: false, describe: 'do not print backend events' })
      .option('cert', {
        global: false,
        type: 'string',
        describe: 'PEM certificate chain of every backend (with --key; default: a fresh self-signed ECDSA P-256 one)',
      })
      .option('key', { global: false, type: 'string', describe: 'PEM private key (ECDSA P-256) of --cert' })
      .option('state-dir', {
        global: false,
        type: 'string',
        describe:
          "keep the backends' key here (key.pem, cert.pem; made on the first run, the certificate renewed before it expires), so a browser's SPKI pin survives restarts",
      })
      .example('$0 demo', 'LB on 127.0.0.1:4433, backends on 127.0.0.2:4434 and 127.0.0.3:4434')
      .example('$0 demo --state-dir ~/.quic-lb-demo', 'the same, with one key across restarts') as never,
  handler: async (argv) => {
    const vip = endpointArg(argv.vip, '--vip');
    const backendAddrs = argv.backends.split(',').map((b) => endpointArg(b.trim(), '--backends'));
    endpointArg(argv.metrics, '--metrics');
    const config = parseConfig(
      quickStartConfig(
        argv.vip,
        backendAddrs.map((b) => `${b.address}:${b.port}`),
        argv.metrics,
      ),
    );
    const identity = quickStartIdentity(argv);
    const lb = await startLoadBalancer(config);
    const backends: RunningBackend[] = [];
    try {
      for (const b of config.backends) {
        backends.push(
          await startBackend(config, {
            name: b.name,
            // The LB forwards and probes from unbound sockets: the backend sees the source the kernel picks.
            allowLb: [await sourceAddressToward(b.address)],
            identity,
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
    const pin = pinFields(identity);
    const out = [
      'quic-lb demo is running:',
      `  load balancer  VIP ${vip.address}:${vip.port} (QUIC-LB config 0, 4-pass AES, 2-octet server IDs)`,
      ...config.backends.map(
        (b, i) =>
          `  ${b.name}      ${b.address.address}:${b.address.port}  server ID ${b.serverIds[0]?.serverId}  preferred_address ${backends[i].addresses[0].address}:${backends[i].addresses[0].port}`,
      ),
      `  metrics        http://${a.metrics?.address}:${a.metrics?.port}/metrics`,
      `  certificate    SPKI pin ${pin.spki}  SHA-256 ${pin.certSha256} (every backend)`,
      '',
      'Try it (Debian/Ubuntu: apt-get install ngtcp2-client):',
      `  ${clientCommand(vip)}`,
      '',
      'Or with Chromium (apt-get install chromium; docs/clients.md):',
      `  ${chromiumCommand(vip, pin.spki)}`,
      '',
      'A voice session (WebTransport, 20 ms frames both ways; docs/webtransport.md): open',
      `  https://${vip.address}:${vip.port}/voice  in a Chromium started with the flags above (without --headless),`,
      '  (--state-dir DIR keeps the key, so the SPKI pin in those flags stays valid across restarts).',
      '',
      "The handshake goes through the VIP; the client then moves to the backend's own address and the",
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
