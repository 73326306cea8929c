// `quic-lb cid encode` / `quic-lb cid decode`: one QUIC-LB connection ID by hand, with the
// library's own configFromSpec / encodeConnectionId / QuicLbDecoder (docs/library.md); a
// --config file is read by the LB's own loader, so it means here what it means to `serve`.
import { randomBytes } from 'node:crypto';
import type { Argv, CommandModule } from 'yargs';
import { ConfigError, loadQuicLbSpecs } from '../lb/index.js';
import {
  AES_KEY_LENGTH,
  configFromSpec,
  configIdOf,
  MAX_CONFIG_ID,
  MAX_NONCE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  MAX_SERVER_ID_LENGTH,
  MIN_CONFIG_ID,
  MIN_NONCE_LENGTH,
  MIN_SERVER_ID_LENGTH,
  encodeConnectionId,
  QuicLbDecoder,
  QuicLbError,
  selfEncodedLength,
  UNROUTABLE,
  UNKNOWN_CONFIG,
  type QuicLbConfig,
} from '../cid/index.js';
import { CliError } from './errors.js';

/** Parses strict hex (optional 0x prefix, even number of digits, nothing else) or throws a CliError naming `what`. */
export function parseHex(text: unknown, what: string): Uint8Array {
  if (typeof text !== 'string') {
    throw new CliError(`${what}: expected a hex string, got ${typeof text} (in YAML, quote hex values: '0011...')`);
  }
  const s = text.trim().replace(/^0x/i, '');
  if (s.length === 0) throw new CliError(`${what}: empty hex string`);
  if (!/^[0-9a-fA-F]*$/.test(s)) throw new CliError(`${what}: not hex: '${text}'`);
  if (s.length % 2 !== 0) throw new CliError(`${what}: odd number of hex digits (${s.length}) in '${text}'`);
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Flag name for each configFromSpec field, so library errors point at the flag the user typed. */
const FLAG_OF: Record<string, string> = {
  configId: '--config-id',
  serverIdLength: '--server-id-length',
  nonceLength: '--nonce-length',
  key: '--key',
  selfEncodeLength: '--self-encode-length',
  cipher: '--cipher',
  serverId: '--server-id',
  nonce: '--nonce',
};

function libraryError(err: unknown, where: string): never {
  if (err instanceof QuicLbError) {
    const flag = where === 'flags' ? (FLAG_OF[err.field] ?? err.field) : `${where} ${err.field}`;
    throw new CliError(`${flag}: ${err.code}: ${err.message}`);
  }
  throw err;
}

interface ConfigArgs {
  config?: string;
  'config-id'?: number;
  'server-id-length'?: number;
  'nonce-length'?: number;
  key?: string;
  'self-encode-length'?: boolean;
  cipher?: 'table' | 'node';
  json?: boolean;
}

function configFlags<T>(y: Argv<T>): Argv<T & ConfigArgs> {
  return y
    .option('config', {
      type: 'string',
      describe:
        'YAML/JSON file: the LB config (its quicLb list, read as `serve` reads it) or one mapping {configId, serverIdLength, nonceLength, key?, keyFile?, cipher?}',
    })
    .option('config-id', { type: 'number', describe: `config rotation codepoint ${MIN_CONFIG_ID}..${MAX_CONFIG_ID}` })
    .option('server-id-length', {
      type: 'number',
      describe: `server ID octets, ${MIN_SERVER_ID_LENGTH}..${MAX_SERVER_ID_LENGTH}`,
    })
    .option('nonce-length', {
      type: 'number',
      describe: `nonce octets, ${MIN_NONCE_LENGTH}..${MAX_NONCE_LENGTH}; server ID + nonce <= ${MAX_PLAINTEXT_LENGTH}`,
    })
    .option('key', { type: 'string', describe: `${AES_KEY_LENGTH}-octet AES-128 key in hex (omit for plaintext)` })
    .option('self-encode-length', {
      type: 'boolean',
      default: true,
      describe: 'first octet carries CID length - 1 (draft-21 §3.3); --no-self-encode-length leaves those bits 0',
    })
    .option('cipher', { choices: ['table', 'node'] as const, describe: "AES implementation (default 'table')" })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as unknown as Argv<T & ConfigArgs>;
}

/** Where a ConfigError points, as the old messages named it: `/quicLb/0/key` -> `quicLb[0] key`. */
function configField(field: string): string {
  return field
    .replace(/^\/quicLb\/(\d+)/, 'quicLb[$1]')
    .replace(/^\//, '')
    .replaceAll('/', ' ');
}

/**
 * The configs of an LB config file, through the LB's loader (`loadQuicLbSpecs`): the same
 * checks as `serve` and `check-config`. `selfEncodeLength` is the flag's (a server-side choice
 * the LB file does not hold). Throws CliError `--config: FILE FIELD: REASON`.
 */
function fileConfigs(file: string, selfEncodeLength: boolean): QuicLbConfig[] {
  let specs;
  try {
    specs = loadQuicLbSpecs(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (err.field === '') throw new CliError(`--config: ${err.reason}`);
    throw new CliError(`--config: ${file} ${configField(err.field)}: ${err.reason}`);
  }
  if (specs.length === 0) throw new CliError(`--config: ${file} has no QUIC-LB configs (quicLb is empty)`);
  return specs.map((spec, i) => {
    try {
      return configFromSpec({ ...spec, selfEncodeLength });
    } catch (err) {
      libraryError(err, `--config: ${file} quicLb[${i}]`);
    }
  });
}

function flagConfig(a: ConfigArgs): QuicLbConfig {
  for (const flag of ['config-id', 'server-id-length', 'nonce-length'] as const) {
    if (a[flag] === undefined) throw new CliError(`--${flag} is required (or give --config FILE)`);
  }
  const key = a.key === undefined ? undefined : parseHex(a.key, '--key');
  try {
    return configFromSpec({
      configId: a['config-id']!,
      serverIdLength: a['server-id-length']!,
      nonceLength: a['nonce-length']!,
      key,
      selfEncodeLength: a['self-encode-length'] ?? true,
      cipher: a.cipher,
    });
  } catch (err) {
    libraryError(err, 'flags');
  }
}

/** The configs named by --config or by the flags. */
export function configsFromArgs(a: ConfigArgs): QuicLbConfig[] {
  if (a.config !== undefined) {
    const list = fileConfigs(a.config, a['self-encode-length'] ?? true);
    if (a['config-id'] === undefined) return list;
    const one = list.filter((c) => c.configId === a['config-id']);
    if (one.length === 0) throw new CliError(`--config-id ${a['config-id']}: no such config in ${a.config}`);
    return one;
  }
  return [flagConfig(a)];
}

const encode: CommandModule<object, ConfigArgs & { 'server-id': string; nonce?: string }> = {
  command: 'encode',
  describe: 'encode a server ID (and nonce) into a QUIC-LB connection ID',
  builder: (y) =>
    configFlags(y)
      .option('server-id', {
        type: 'string',
        demandOption: true,
        describe: 'server ID in hex (server-id-length octets)',
      })
      .option('nonce', { type: 'string', describe: 'nonce in hex (nonce-length octets); default: random' })
      .example(
        '$0 cid encode --config-id 0 --server-id-length 3 --nonce-length 4 --key 8f95f09245765f80256934e50c66207f --server-id ed793a --nonce ee080dbf',
        '-> 0720b1d07b359d3c',
      ) as never,
  handler: (a) => {
    const configs = configsFromArgs(a);
    if (configs.length > 1) throw new CliError('--config-id: the config file has several configs; choose one');
    const config = configs[0];
    const serverId = parseHex(a['server-id'], '--server-id');
    const nonce =
      a.nonce === undefined ? Uint8Array.from(randomBytes(config.nonceLength)) : parseHex(a.nonce, '--nonce');
    if (serverId.length !== config.serverIdLength) {
      throw new CliError(
        `--server-id: ${serverId.length} octets given, config ${config.configId} needs ${config.serverIdLength}`,
      );
    }
    if (nonce.length !== config.nonceLength) {
      throw new CliError(
        `--nonce: ${nonce.length} octets given, config ${config.configId} needs ${config.nonceLength}`,
      );
    }
    let cid: Uint8Array;
    try {
      cid = encodeConnectionId(config, serverId, nonce);
    } catch (err) {
      libraryError(err, 'flags');
    }
    if (a.json) {
      process.stdout.write(
        JSON.stringify({
          cid: toHex(cid),
          length: cid.length,
          configId: config.configId,
          algorithm: config.algorithm,
          serverId: toHex(serverId),
          nonce: toHex(nonce),
        }) + '\n',
      );
    } else {
      process.stdout.write(`${toHex(cid)}\n`);
    }
  },
};

/** Why a CID is unroutable (draft-21 §4.1). */
/** Why `decode()` answered `result` (< 0) for `cid`. */
function unroutableReason(decoder: QuicLbDecoder, cid: Uint8Array, result: number): string {
  const id = configIdOf(cid[0]);
  if (result === UNROUTABLE) return 'reserved codepoint 0b111';
  if (result === UNKNOWN_CONFIG) return `no config for codepoint ${id}`;
  return `too short: ${cid.length} octets, config ${id} needs ${decoder.getConfig(id)?.cidLength ?? '?'}`;
}

const decode: CommandModule<object, ConfigArgs & { cid: string }> = {
  command: 'decode <cid>',
  describe: 'decode the server ID from a QUIC-LB connection ID (prints it, or "unroutable: <reason>")',
  builder: (y) =>
    configFlags(y)
      .positional('cid', { type: 'string', demandOption: true, describe: 'connection ID in hex, first octet included' })
      .example(
        '$0 cid decode --config lb.yaml 0720b1d07b359d3c',
        'server ID, using the config its codepoint names',
      ) as never,
  handler: (a) => {
    const cid = parseHex(String(a.cid), 'cid');
    if (cid.length > 255) throw new CliError(`cid: ${cid.length} octets; a connection ID is at most 255 (RFC 8999)`);
    const decoder = new QuicLbDecoder(configsFromArgs(a));
    const out = new Uint8Array(MAX_SERVER_ID_LENGTH);
    const id = decoder.decode(cid, 0, cid.length, out);
    const config = id < 0 ? undefined : decoder.getConfig(id);
    const result =
      config === undefined
        ? { routable: false, reason: unroutableReason(decoder, cid, id), configId: configIdOf(cid[0]) }
        : {
            routable: true,
            configId: id,
            algorithm: config.algorithm,
            serverId: toHex(out.subarray(0, config.serverIdLength)),
            cidLength: cid.length,
            selfEncodedLength: selfEncodedLength(cid[0]),
            extraOctets: cid.length - config.cidLength,
          };
    if (a.json) process.stdout.write(JSON.stringify(result) + '\n');
    else if (result.routable) process.stdout.write(`${result.serverId}\n`);
    else process.stdout.write(`unroutable: ${result.reason}\n`);
  },
};

export const cidCommand: CommandModule = {
  command: 'cid <command>',
  describe: 'encode or decode QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21)',
  builder: (y) =>
    y
      .command(encode as CommandModule)
      .command(decode as CommandModule)
      .demandCommand(1),
  handler: () => undefined,
};
