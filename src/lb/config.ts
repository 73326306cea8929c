// The load balancer's config file: YAML in, a validated, JSON-serialisable `LbConfig` out (keys
// from key files resolved to hex, defaults filled in), or a ConfigError naming the field.
// Schema: schema/config.schema.json; every field and error code: docs/config.md.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, parseDocument } from 'yaml';
import {
  configFromSpec,
  MAX_CONFIG_ID,
  MAX_NONCE_LENGTH,
  MAX_SERVER_ID_LENGTH,
  MIN_CONFIG_ID,
  MIN_NONCE_LENGTH,
  MIN_SERVER_ID_LENGTH,
  QuicLbError,
} from '../cid/index.js';
import { QUIC_V1, QUIC_V2, QuicWireError, parseIPv4Into, parseIPv6Into, parseRetryTokenKey } from '../wire/index.js';
import { ConfigError, type ConfigErrorCode } from './errors.js';
import { type ParsedEndpoint, normaliseIp, parseEndpoint } from '../wire/index.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE, isPrime } from './maglev.js';
import { MAX_HMAC_KEYS } from './reasons.js';
import net from 'node:net';

/** Probe types of the active health check (docs/lb.md "Health checks"). */
export const HEALTH_TYPES = ['udp', 'tcp', 'http', 'none'] as const;
export type HealthType = (typeof HEALTH_TYPES)[number];
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const CIPHERS = ['table', 'node'] as const;
export type QuicLbCipher = (typeof CIPHERS)[number];
export const RETURN_MODES = ['via-lb', 'direct'] as const;
export type ReturnMode = (typeof RETURN_MODES)[number];

/**
 * One QUIC-LB config (draft-21 §5.3); the algorithm follows from key and lengths. A valid
 * `QuicLbSpec` of the library: `configFromSpec(spec)` makes the library config.
 */
export interface QuicLbConfigSpec {
  configId: number;
  serverIdLength: number;
  nonceLength: number;
  /** 16-octet AES key, hex; absent = plaintext. */
  key?: string;
  /** AES implementation: 'table' (pure JS, fastest, not constant-time) or 'node' (node:crypto, AES-NI). */
  cipher: QuicLbCipher;
}

export interface HealthCheckSpec {
  type: HealthType;
  /** Probe target (udp/tcp); defaults to the backend's forwarding address. */
  address?: ParsedEndpoint;
  /** http only: the URL fetched with GET; 2xx = success. */
  url?: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes that bring a down backend up. */
  rise: number;
  /** Consecutive failures that make an up (or draining) backend `unreachable`. */
  fall: number;
  /** How long an `unreachable` backend keeps its CID-routed traffic before it is `down`. */
  downGraceMs: number;
}

export interface BackendSpec {
  name: string;
  address: ParsedEndpoint;
  /** Server IDs (hex) per QUIC-LB config id. */
  serverIds: { configId: number; serverId: string }[];
  weight: number;
  health: HealthCheckSpec;
}

/** A validated config: plain data (JSON-serialisable, sent to cluster workers as is). */
export interface LbConfig {
  listen: ParsedEndpoint[];
  quicLb: QuicLbConfigSpec[];
  backends: BackendSpec[];
  fallback: { key: string; tableSize: number };
  health: { initial: 'up' | 'down' };
  /**
   * `hmacKeys`: return-path HMAC keys (hex), from `hmacKey`, `hmacKeyFile`, `hmacKeys` or
   * `hmacKeyFiles`. The first signs forwarded headers (signForward); every one verifies returned
   * headers (key rotation). Empty: no authentication.
   */
  returnPath: { mode: ReturnMode; listen?: ParsedEndpoint; hmacKeys: string[]; signForward: boolean; allow: string[] };
  metrics: { listen?: ParsedEndpoint };
  workers: number;
  /**
   * Buffer sizes, the bound of each upstream (backend) socket's send queue (docs/lb.md), and
   * `reusePort`: VIP and return sockets bound with SO_REUSEPORT (docs/lb.md "Restart with no gap").
   */
  socket: {
    recvBufferSize: number;
    sendBufferSize: number;
    maxQueuedDatagrams: number;
    maxQueuedOctets: number;
    reusePort: boolean;
  };
  drainMs: number;
  log: { level: LogLevel };
  /**
   * Server mode (`quic-lb demo backend --anycast`, src/anycast): present only when the file has an
   * `anycast` section; `anycastOf()` gives the defaults otherwise. `quic-lb serve` ignores it.
   */
  anycast?: AnycastSpec;
  /**
   * Retry offload (docs/retry.md): present only when the file has a `retry` section; absent =
   * mode off. `retryOf()` gives the defaults otherwise.
   */
  retry?: RetrySpec;
  /**
   * The data path (docs/xdp.md): present only when the file has a `datapath` section;
   * `datapathOf()` gives the defaults (node:dgram only) otherwise. A restart-only field.
   */
  datapath?: DatapathSpec;
}

/** Data paths: node:dgram alone, or the XDP program (xdp/) in front of it on one interface. */
export const DATAPATH_MODES = ['node', 'xdp'] as const;
export type DatapathMode = (typeof DATAPATH_MODES)[number];
/** How the XDP program is attached: the driver's hook, the generic one, or native when it can. */
export const XDP_ATTACH_MODES = ['auto', 'native', 'generic'] as const;
export type XdpAttachMode = (typeof XDP_ATTACH_MODES)[number];
/** When XDP cannot run: forward on node:dgram alone (saying why), or refuse to start. */
export const XDP_UNAVAILABLE_ACTIONS = ['fallback', 'stop'] as const;
export type XdpUnavailableAction = (typeof XDP_UNAVAILABLE_ACTIONS)[number];
/** Linux interface names: at most IFNAMSIZ - 1 = 15 octets, no '/', no white space, not '.' or '..'. */
const INTERFACE_NAME = /^(?!\.{1,2}$)[^/\s]{1,15}$/;

/** The `datapath` section, defaults resolved. */
export interface DatapathSpec {
  mode: DatapathMode;
  /** The interface the VIP traffic arrives on (required for `xdp`). */
  interface?: string;
  attach: XdpAttachMode;
  unavailable: XdpUnavailableAction;
}

/** Retry offload modes (docs/retry.md "Modes"). */
export const RETRY_MODES = ['off', 'always', 'load'] as const;
export type RetryMode = (typeof RETRY_MODES)[number];
/** Most key files in `retry.keyFiles`: each key is one sequence the LB opens tokens with. */
export const MAX_RETRY_KEY_FILES = 4;

/** One Retry token key as a key file holds it (src/wire/retry-token.ts), hex for IPC. */
export interface RetryKeySpec {
  sequence: number;
  /** 16 octets, hex. */
  key: string;
  /** 12 octets, hex. */
  iv: string;
}

/**
 * The `retry` section, defaults resolved and key files read (draft-ietf-quic-retry-offload-00 §4).
 * `keys[0]` seals; every key opens. Thresholds are per forwarding process (docs/retry.md).
 */
export interface RetrySpec {
  mode: RetryMode;
  /** Absolute paths of `keyFiles`, in order (what the reload watch follows). */
  keyFiles: string[];
  keys: RetryKeySpec[];
  tokenLifetimeSeconds: number;
  /** QUIC versions offloaded (QUIC_V1, QUIC_V2); others are forwarded untouched. */
  versions: number[];
  load: { onPerSecond: number; offPerSecond: number; offAfterMs: number; transitionMs: number };
}

/**
 * Load thresholds of the anycast announcement (docs/config.md "anycast"), defaults resolved;
 * a `max*` of 0 turns that signal off. A server withdraws the VIP after `withdrawAfter`
 * consecutive samples with a signal over its `max*`, and announces it again after
 * `announceAfter` consecutive samples with every signal at or under its `resume*` level.
 */
export interface AnnounceSpec {
  intervalMs: number;
  withdrawAfter: number;
  announceAfter: number;
  maxConnections: number;
  resumeConnections: number;
  maxEventLoopDelayMs: number;
  resumeEventLoopDelayMs: number;
  maxCpu: number;
  resumeCpu: number;
}

/** The `anycast` section: co-located forwarding and the load-aware announcement. */
export interface AnycastSpec {
  /** Forward VIP datagrams whose CID or Maglev slot names a peer to it; false: handle every one locally. */
  forward: boolean;
  announce: AnnounceSpec;
}

/** Defaults applied by `validateConfig` (also documented in docs/config.md). */
export const DEFAULTS = Object.freeze({
  weight: 1,
  healthType: 'udp' as HealthType,
  intervalMs: 1000,
  timeoutMs: 500,
  rise: 2,
  fall: 3,
  downGraceMs: 30_000,
  initial: 'up' as const,
  tableSize: DEFAULT_MAGLEV_TABLE_SIZE,
  returnMode: 'via-lb' as ReturnMode,
  workers: 1,
  socketBufferSize: 8 * 1024 * 1024,
  maxQueuedDatagrams: 1024,
  maxQueuedOctets: 2 * 1024 * 1024,
  drainMs: 5000,
  /**
   * The LB decrypts CIDs an attacker chooses: constant-time node:crypto AES by default (docs/lb.md
   * "The cipher"); `table` is faster on four-pass configs and not constant-time.
   */
  cipher: 'node' as QuicLbCipher,
  logLevel: 'info' as LogLevel,
  anycastForward: true,
  announceIntervalMs: 1000,
  withdrawAfter: 2,
  announceAfter: 3,
  /** Resume levels when not given, as fractions of the limit. */
  resumeConnectionsFraction: 0.8,
  resumeEventLoopDelayFraction: 0.5,
  resumeCpuFraction: 0.8,
  retryMode: 'off' as RetryMode,
  retryTokenLifetimeSeconds: 10,
  retryOnPerSecond: 1000,
  retryOffAfterMs: 10_000,
  retryTransitionMs: 10_000,
});

/**
 * Return-path HMAC-SHA256 keys (docs/lb.md): at least 16 octets, at most 64, one SHA-256 block
 * (RFC 2104 §2: a longer key is hashed first, so a longer one adds nothing).
 */
export const MIN_HMAC_KEY_LENGTH = 16;
export const MAX_HMAC_KEY_LENGTH = 64;

/** The config ids a config may use, as the keys of `backends[].serverIds` (draft-21 §3.1). */
const CONFIG_ID_KEYS = Array.from({ length: MAX_CONFIG_ID - MIN_CONFIG_ID + 1 }, (_, i) => String(MIN_CONFIG_ID + i));

/** The fields each object of the file may have (kept equal to the JSON schema by a test). */
export const KNOWN_FIELDS = Object.freeze({
  root: [
    'listen',
    'quicLb',
    'backends',
    'fallback',
    'health',
    'returnPath',
    'metrics',
    'workers',
    'socket',
    'drainMs',
    'log',
    'anycast',
    'retry',
    'datapath',
  ],
  quicLb: ['configId', 'serverIdLength', 'nonceLength', 'key', 'keyFile', 'cipher'],
  backend: ['name', 'address', 'serverIds', 'weight', 'health'],
  backendHealth: ['type', 'address', 'url', 'intervalMs', 'timeoutMs', 'rise', 'fall', 'downGraceMs'],
  health: ['type', 'intervalMs', 'timeoutMs', 'rise', 'fall', 'downGraceMs', 'initial'],
  fallback: ['key', 'keyFile', 'tableSize'],
  returnPath: ['mode', 'listen', 'hmacKey', 'hmacKeyFile', 'hmacKeys', 'hmacKeyFiles', 'signForward', 'allow'],
  metrics: ['listen'],
  socket: ['recvBufferSize', 'sendBufferSize', 'maxQueuedDatagrams', 'maxQueuedOctets', 'reusePort'],
  log: ['level'],
  anycast: ['forward', 'announce'],
  retry: ['mode', 'keyFiles', 'tokenLifetimeSeconds', 'versions', 'load'],
  retryLoad: ['onPerSecond', 'offPerSecond', 'offAfterMs', 'transitionMs'],
  datapath: ['mode', 'interface', 'attach', 'unavailable'],
  announce: [
    'intervalMs',
    'withdrawAfter',
    'announceAfter',
    'maxConnections',
    'resumeConnections',
    'maxEventLoopDelayMs',
    'resumeEventLoopDelayMs',
    'maxCpu',
    'resumeCpu',
  ],
});

type Obj = Record<string, unknown>;

function fail(code: ConfigErrorCode, field: string, reason: string, cause?: unknown): never {
  throw new ConfigError(code, field, reason, cause === undefined ? undefined : { cause });
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function obj(v: unknown, at: string, known: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    fail('ERR_CONFIG_TYPE', at, `expected a mapping, got ${typeName(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k))
      fail('ERR_CONFIG_UNKNOWN_FIELD', `${at}/${k}`, `unknown field (allowed: ${known.join(', ')})`);
  }
  return v as Obj;
}

function optObj(v: unknown, at: string, known: readonly string[]): Obj {
  return v === undefined ? {} : obj(v, at, known);
}

function arr(v: unknown, at: string): unknown[] {
  if (!Array.isArray(v)) fail('ERR_CONFIG_TYPE', at, `expected a list, got ${typeName(v)}`);
  return v;
}

function str(v: unknown, at: string): string {
  if (typeof v !== 'string') fail('ERR_CONFIG_TYPE', at, `expected a string, got ${typeName(v)}`);
  return v;
}

function int(v: unknown, at: string, min: number, max: number, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) fail('ERR_CONFIG_REQUIRED', at, 'required');
    return dflt;
  }
  if (typeof v !== 'number') fail('ERR_CONFIG_TYPE', at, `expected an integer, got ${typeName(v)}`);
  if (!Number.isInteger(v) || v < min || v > max)
    fail('ERR_CONFIG_RANGE', at, `expected an integer in ${min}..${max}, got ${v}`);
  return v;
}

function oneOf<T extends string>(v: unknown, at: string, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  const s = str(v, at);
  if (!(allowed as readonly string[]).includes(s))
    fail('ERR_CONFIG_ENUM', at, `expected one of ${allowed.join(', ')}, got '${s}'`);
  return s as T;
}

function endpoint(v: unknown, at: string, allowZero: boolean): ParsedEndpoint {
  const s = str(v, at);
  const e = parseEndpoint(s, allowZero);
  if (!e)
    fail(
      'ERR_CONFIG_ADDRESS',
      at,
      `expected an IP literal and port ('a.b.c.d:port' or '[v6]:port'${allowZero ? '' : ', port 1..65535'}), got '${s}'`,
    );
  return e;
}

/** Octets a hex field may have: exactly n, lo..hi, or 'any' (at least one; the library checks the rest). */
type Octets = number | [number, number] | 'any';

function hex(v: unknown, at: string, octets: Octets): string {
  if (typeof v !== 'string')
    fail('ERR_CONFIG_TYPE', at, `expected a hex string, got ${typeName(v)} (in YAML, quote hex values: '0011...')`);
  const s = v.trim().toLowerCase();
  if (!/^([0-9a-f]{2})+$/.test(s)) fail('ERR_CONFIG_HEX', at, 'expected an even number of hex digits');
  if (octets === 'any') return s;
  const n = s.length / 2;
  const [lo, hi] = typeof octets === 'number' ? [octets, octets] : octets;
  if (n < lo || n > hi)
    fail(
      'ERR_CONFIG_HEX',
      at,
      lo === hi ? `expected ${lo} octets, got ${n}` : `expected ${lo}..${hi} octets, got ${n}`,
    );
  return s;
}

/**
 * The warning for a key file whose permission bits let its group or others read or write it
 * (`(mode & 0o077) !== 0`), or undefined. A warning, not an error: the file still loads.
 */
export function keyFileModeWarning(file: string, mode: number): string | undefined {
  if ((mode & 0o077) === 0) return undefined;
  return `key file ${file} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}: readable or writable by group or others (chmod 600 it)`;
}

/** `keyFileModeWarning` of the file as it is on disk; undefined when it cannot be stat'ed (reading it reports that). Never throws. */
export function keyFileWarning(file: string): string | undefined {
  try {
    return keyFileModeWarning(file, statSync(file).mode);
  } catch {
    return undefined;
  }
}

/** Where the loader reports what is legal but unsafe (key file modes); see `loadConfigFile`. */
type Warnings = string[] | undefined;

/**
 * The path (resolved against `baseDir`) and text of the key file named at `at`; its mode warning
 * goes to `warnings`. ERR_CONFIG_READ when it cannot be read.
 */
function readKeyFile(v: unknown, at: string, baseDir: string, warnings: Warnings): [string, string] {
  const p = path.resolve(baseDir, str(v, at));
  try {
    const text = readFileSync(p, 'utf8');
    const w = keyFileModeWarning(p, statSync(p).mode);
    if (w !== undefined) warnings?.push(w);
    return [p, text];
  } catch (err) {
    fail('ERR_CONFIG_READ', at, `cannot read key file ${p}: ${(err as Error).message}`, err);
  }
}

/** Reads a hex key file (relative to `baseDir`); its mode warning goes to `warnings`. */
function keyFile(v: unknown, at: string, octets: Octets, baseDir: string, warnings: Warnings): string {
  return hex(readKeyFile(v, at, baseDir, warnings)[1], at, octets);
}

/** A key given inline (`<name>`) or in a file (`<name>File`, hex text, relative to the config file). */
function keyField(
  o: Obj,
  at: string,
  name: string,
  octets: Octets,
  baseDir: string,
  required: boolean,
  warnings: Warnings,
): string | undefined {
  const inline = o[name];
  const file = o[`${name}File`];
  if (inline !== undefined && file !== undefined)
    fail('ERR_CONFIG_KEY_SOURCE', `${at}/${name}File`, `give either ${name} or ${name}File, not both`);
  if (inline !== undefined) return hex(inline, `${at}/${name}`, octets);
  if (file !== undefined) return keyFile(file, `${at}/${name}File`, octets, baseDir, warnings);
  if (required) fail('ERR_CONFIG_REQUIRED', `${at}/${name}`, `required (or ${name}File)`);
  return undefined;
}

/**
 * The return-path keys: exactly one of `hmacKey`, `hmacKeyFile` (one key) or `hmacKeys`,
 * `hmacKeyFiles` (1..MAX_HMAC_KEYS keys, the first current), or none. Distinct keys only.
 */
function hmacKeys(rp: Obj, baseDir: string, warnings: Warnings): string[] {
  const OCTETS: [number, number] = [MIN_HMAC_KEY_LENGTH, MAX_HMAC_KEY_LENGTH];
  const given = (['hmacKey', 'hmacKeyFile', 'hmacKeys', 'hmacKeyFiles'] as const).filter((k) => rp[k] !== undefined);
  if (given.length > 1)
    fail(
      'ERR_CONFIG_KEY_SOURCE',
      `/returnPath/${given[1]}`,
      `give one of hmacKey, hmacKeyFile, hmacKeys, hmacKeyFiles, not ${given.join(' and ')}`,
    );
  const single = keyField(rp, '/returnPath', 'hmacKey', OCTETS, baseDir, false, warnings);
  if (single !== undefined) return [single];
  const listName = given[0] === 'hmacKeys' || given[0] === 'hmacKeyFiles' ? given[0] : undefined;
  if (listName === undefined) return [];
  const at = `/returnPath/${listName}`;
  const items = arr(rp[listName], at);
  if (items.length === 0) fail('ERR_CONFIG_REQUIRED', at, 'at least one key (omit the field for no authentication)');
  if (items.length > MAX_HMAC_KEYS)
    fail(
      'ERR_CONFIG_RANGE',
      at,
      `at most ${MAX_HMAC_KEYS} keys (each one tried costs an HMAC per rejected datagram), got ${items.length}`,
    );
  const keys = items.map((v, i) =>
    listName === 'hmacKeys' ? hex(v, `${at}/${i}`, OCTETS) : keyFile(v, `${at}/${i}`, OCTETS, baseDir, warnings),
  );
  keys.forEach((k, i) => {
    if (keys.indexOf(k) !== i) fail('ERR_CONFIG_DUPLICATE', `${at}/${i}`, `the same key as ${at}/${keys.indexOf(k)}`);
  });
  return keys;
}

/**
 * True for an address that names no single host when bound: 0.0.0.0/8 (RFC 1122 §3.2.1.3
 * "this network"; the kernel binds 0.0.0.0 as INADDR_ANY), :: and ::ffff:0.0.0.0 (RFC 4291
 * §2.5.2, §2.5.5.2). `bytes` holds 4 (family 4) or 16 (family 6) octets.
 */
export function isUnspecifiedAddress(bytes: Uint8Array, family: 4 | 6): boolean {
  if (family === 4) return bytes[0] === 0;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  if (bytes[10] === 0 && bytes[11] === 0) {
    for (let i = 12; i < 16; i++) if (bytes[i] !== 0) return false;
    return true;
  }
  return bytes[10] === 0xff && bytes[11] === 0xff && bytes[12] === 0;
}

function healthSpec(
  o: Obj,
  at: string,
  dflt: Omit<HealthCheckSpec, 'address' | 'url'>,
  backendAddress: ParsedEndpoint | undefined,
): HealthCheckSpec {
  const type = oneOf(o.type, `${at}/type`, HEALTH_TYPES, dflt.type);
  const spec: HealthCheckSpec = {
    type,
    intervalMs: int(o.intervalMs, `${at}/intervalMs`, 10, 3_600_000, dflt.intervalMs),
    timeoutMs: int(o.timeoutMs, `${at}/timeoutMs`, 1, 3_600_000, dflt.timeoutMs),
    rise: int(o.rise, `${at}/rise`, 1, 100, dflt.rise),
    fall: int(o.fall, `${at}/fall`, 1, 100, dflt.fall),
    downGraceMs: int(o.downGraceMs, `${at}/downGraceMs`, 0, 86_400_000, dflt.downGraceMs),
  };
  if (o.address !== undefined) spec.address = endpoint(o.address, `${at}/address`, false);
  else if ((type === 'udp' || type === 'tcp') && backendAddress) spec.address = backendAddress;
  if (o.url !== undefined) {
    const u = str(o.url, `${at}/url`);
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      fail('ERR_CONFIG_TYPE', `${at}/url`, `not a URL: '${u}'`);
    }
    if (parsed.protocol !== 'http:') fail('ERR_CONFIG_ENUM', `${at}/url`, 'only http:// URLs are supported');
    spec.url = u;
  } else if (type === 'http') fail('ERR_CONFIG_REQUIRED', `${at}/url`, 'required for health type http');
  return spec;
}

/**
 * One `quicLb[]` entry at `at` (draft-21 §5.3): ranges from the library's limits, then the
 * library's own check (`configFromSpec`). `seen` holds the config ids of the entries before it.
 * Throws ConfigError: ERR_CONFIG_RANGE and the like for a field alone, ERR_CONFIG_DUPLICATE for a
 * config id given twice, ERR_CONFIG_HEX for a key that is not 16 octets (the library's ERR_KEY),
 * ERR_CONFIG_QUIC_LB for any other refusal of the library (its code starts the reason).
 */
function quicLbSpec(
  v: unknown,
  at: string,
  seen: ReadonlySet<number>,
  baseDir: string,
  warnings: Warnings,
): QuicLbConfigSpec {
  const o = obj(v, at, KNOWN_FIELDS.quicLb);
  const configId = int(o.configId, `${at}/configId`, MIN_CONFIG_ID, MAX_CONFIG_ID);
  if (seen.has(configId)) fail('ERR_CONFIG_DUPLICATE', `${at}/configId`, `config id ${configId} given twice`);
  const serverIdLength = int(o.serverIdLength, `${at}/serverIdLength`, MIN_SERVER_ID_LENGTH, MAX_SERVER_ID_LENGTH);
  const nonceLength = int(o.nonceLength, `${at}/nonceLength`, MIN_NONCE_LENGTH, MAX_NONCE_LENGTH);
  const key = keyField(o, at, 'key', 'any', baseDir, false, warnings);
  const cipher = oneOf(o.cipher, `${at}/cipher`, CIPHERS, DEFAULTS.cipher);
  const spec: QuicLbConfigSpec = { configId, serverIdLength, nonceLength, cipher };
  if (key !== undefined) spec.key = key;
  try {
    configFromSpec(spec);
  } catch (err) {
    if (!(err instanceof QuicLbError)) throw err;
    const reason = `${err.code}: ${err.message}`;
    if (err.code === 'ERR_KEY')
      fail('ERR_CONFIG_HEX', `${at}/${o.keyFile === undefined ? 'key' : 'keyFile'}`, reason, err);
    fail('ERR_CONFIG_QUIC_LB', KNOWN_FIELDS.quicLb.includes(err.field) ? `${at}/${err.field}` : at, reason, err);
  }
  return spec;
}

/** The `quicLb` list at `at` (see quicLbSpec). */
function quicLbSpecs(list: unknown[], at: string, baseDir: string, warnings: Warnings): QuicLbConfigSpec[] {
  const seen = new Set<number>();
  return list.map((v, i) => {
    const spec = quicLbSpec(v, `${at}/${i}`, seen, baseDir, warnings);
    seen.add(spec.configId);
    return spec;
  });
}

/**
 * Validates a parsed config document (`doc`, e.g. the result of YAML parsing) and returns the
 * resolved `LbConfig`. Relative key file paths resolve against `baseDir`. Throws ConfigError
 * (see CONFIG_ERROR_CODES) naming the first bad field. Legal but unsafe settings (a key file
 * readable by group or others) are pushed to `warnings` when given.
 */
export function validateConfig(doc: unknown, baseDir = process.cwd(), warnings?: string[]): LbConfig {
  const root = obj(doc, '', KNOWN_FIELDS.root);

  // VIPs
  if (root.listen === undefined) fail('ERR_CONFIG_REQUIRED', '/listen', 'required: at least one VIP address');
  const listenRaw = arr(root.listen, '/listen');
  if (listenRaw.length === 0) fail('ERR_CONFIG_REQUIRED', '/listen', 'at least one VIP address');
  const listen: ParsedEndpoint[] = [];
  const seenListen = new Set<string>();
  const scratch = new Uint8Array(16);
  listenRaw.forEach((v, i) => {
    const e = endpoint(v, `/listen/${i}`, true);
    if (e.family === 4) parseIPv4Into(e.address, scratch, 0);
    else parseIPv6Into(e.address, scratch, 0);
    if (isUnspecifiedAddress(scratch, e.family)) {
      fail(
        'ERR_CONFIG_WILDCARD',
        `/listen/${i}`,
        `'${e.address}' is a wildcard: a reply must leave from the exact address the client sent to, and a socket bound to a wildcard sends from whatever address the kernel picks; list each VIP (e.g. '192.0.2.10:${e.port}')`,
      );
    }
    const k = `${e.address}|${e.port}`;
    if (e.port !== 0 && seenListen.has(k)) fail('ERR_CONFIG_DUPLICATE', `/listen/${i}`, 'listen address given twice');
    seenListen.add(k);
    listen.push(e);
  });

  // QUIC-LB configs
  const quicLb = quicLbSpecs(
    root.quicLb === undefined ? [] : arr(root.quicLb, '/quicLb'),
    '/quicLb',
    baseDir,
    warnings,
  );
  const serverIdLengthById = new Map(quicLb.map((q) => [q.configId, q.serverIdLength]));

  // Health defaults
  const h = optObj(root.health, '/health', KNOWN_FIELDS.health);
  const healthDefaults = {
    type: oneOf(h.type, '/health/type', HEALTH_TYPES, DEFAULTS.healthType),
    intervalMs: int(h.intervalMs, '/health/intervalMs', 10, 3_600_000, DEFAULTS.intervalMs),
    timeoutMs: int(h.timeoutMs, '/health/timeoutMs', 1, 3_600_000, DEFAULTS.timeoutMs),
    rise: int(h.rise, '/health/rise', 1, 100, DEFAULTS.rise),
    fall: int(h.fall, '/health/fall', 1, 100, DEFAULTS.fall),
    downGraceMs: int(h.downGraceMs, '/health/downGraceMs', 0, 86_400_000, DEFAULTS.downGraceMs),
  };
  if (healthDefaults.type === 'http')
    fail('ERR_CONFIG_ENUM', '/health/type', 'http needs a per-backend url; set type http on the backends');
  const initial = oneOf(h.initial, '/health/initial', ['up', 'down'] as const, DEFAULTS.initial);

  // Backends
  if (root.backends === undefined) fail('ERR_CONFIG_REQUIRED', '/backends', 'required: at least one backend');
  const backendsRaw = arr(root.backends, '/backends');
  if (backendsRaw.length === 0) fail('ERR_CONFIG_REQUIRED', '/backends', 'at least one backend');
  const names = new Set<string>();
  const sidOwners = new Map<string, string>();
  const addresses = new Map<string, string>();
  const backends: BackendSpec[] = backendsRaw.map((v, i) => {
    const at = `/backends/${i}`;
    const o = obj(v, at, KNOWN_FIELDS.backend);
    if (o.name === undefined) fail('ERR_CONFIG_REQUIRED', `${at}/name`, 'required');
    const name = str(o.name, `${at}/name`);
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
      fail('ERR_CONFIG_TYPE', `${at}/name`, 'expected 1..64 characters of A-Z a-z 0-9 . _ -');
    if (names.has(name)) fail('ERR_CONFIG_DUPLICATE', `${at}/name`, `backend name '${name}' given twice`);
    names.add(name);
    if (o.address === undefined) fail('ERR_CONFIG_REQUIRED', `${at}/address`, 'required');
    const address = endpoint(o.address, `${at}/address`, false);
    const addrKey = `${address.address}|${address.port}`;
    const sameAddress = addresses.get(addrKey);
    if (sameAddress !== undefined)
      fail('ERR_CONFIG_DUPLICATE', `${at}/address`, `address already used by backend '${sameAddress}'`);
    addresses.set(addrKey, name);
    const serverIds: BackendSpec['serverIds'] = [];
    if (o.serverIds !== undefined) {
      const sids = obj(o.serverIds, `${at}/serverIds`, CONFIG_ID_KEYS);
      for (const [idText, list] of Object.entries(sids)) {
        const configId = Number(idText);
        const sidAt = `${at}/serverIds/${idText}`;
        const len = serverIdLengthById.get(configId);
        if (len === undefined) fail('ERR_CONFIG_REFERENCE', sidAt, `QUIC-LB config id ${configId} is not in /quicLb`);
        const items = typeof list === 'string' ? [list] : arr(list, sidAt);
        items.forEach((s, j) => {
          const itemAt = typeof list === 'string' ? sidAt : `${sidAt}/${j}`;
          const serverId = hex(s, itemAt, len);
          const key = `${configId}/${serverId}`;
          const owner = sidOwners.get(key);
          if (owner !== undefined)
            fail(
              'ERR_CONFIG_DUPLICATE',
              itemAt,
              `server ID ${serverId} of config ${configId} already belongs to backend '${owner}'`,
            );
          sidOwners.set(key, name);
          serverIds.push({ configId, serverId });
        });
      }
    }
    const weight = int(o.weight, `${at}/weight`, 0, 1000, DEFAULTS.weight);
    const health = healthSpec(
      optObj(o.health, `${at}/health`, KNOWN_FIELDS.backendHealth),
      `${at}/health`,
      healthDefaults,
      address,
    );
    return { name, address, serverIds, weight, health };
  });

  // Fallback
  if (root.fallback === undefined)
    fail('ERR_CONFIG_REQUIRED', '/fallback', 'required: fallback.key (16 octets hex) keys the 4-tuple hash');
  const fb = obj(root.fallback, '/fallback', KNOWN_FIELDS.fallback);
  const fallbackKey = keyField(fb, '/fallback', 'key', 16, baseDir, true, warnings) as string;
  const tableSize = int(fb.tableSize, '/fallback/tableSize', 2, MAX_MAGLEV_TABLE_SIZE, DEFAULTS.tableSize);
  if (!isPrime(tableSize)) fail('ERR_CONFIG_PRIME', '/fallback/tableSize', `${tableSize} is not a prime`);

  // Return path
  const rp = optObj(root.returnPath, '/returnPath', KNOWN_FIELDS.returnPath);
  const mode = oneOf(rp.mode, '/returnPath/mode', RETURN_MODES, DEFAULTS.returnMode);
  const returnPath: LbConfig['returnPath'] = { mode, hmacKeys: [], signForward: false, allow: [] };
  if (rp.listen !== undefined) returnPath.listen = endpoint(rp.listen, '/returnPath/listen', true);
  else if (mode === 'via-lb')
    fail('ERR_CONFIG_REQUIRED', '/returnPath/listen', "required for mode 'via-lb' (use mode 'direct' for DSR)");
  returnPath.hmacKeys = hmacKeys(rp, baseDir, warnings);
  if (rp.signForward !== undefined) {
    if (typeof rp.signForward !== 'boolean')
      fail('ERR_CONFIG_TYPE', '/returnPath/signForward', `expected a boolean, got ${typeName(rp.signForward)}`);
    if (rp.signForward && returnPath.hmacKeys.length === 0)
      fail('ERR_CONFIG_REQUIRED', '/returnPath/hmacKey', 'required when signForward is true (or hmacKeys)');
    returnPath.signForward = rp.signForward;
  }
  if (rp.allow !== undefined) {
    returnPath.allow = arr(rp.allow, '/returnPath/allow').map((v, i) => {
      const s = str(v, `/returnPath/allow/${i}`);
      const fam = net.isIP(s);
      if (fam !== 4 && fam !== 6)
        fail('ERR_CONFIG_ADDRESS', `/returnPath/allow/${i}`, `expected an IP literal, got '${s}'`);
      return normaliseIp(s, fam);
    });
  } else {
    returnPath.allow = [...new Set(backends.map((b) => b.address.address))];
  }

  // Process and operations
  const m = optObj(root.metrics, '/metrics', KNOWN_FIELDS.metrics);
  const metrics: LbConfig['metrics'] = {};
  if (m.listen !== undefined) metrics.listen = endpoint(m.listen, '/metrics/listen', true);
  const workers = int(root.workers, '/workers', 0, 64, DEFAULTS.workers);
  const so = optObj(root.socket, '/socket', KNOWN_FIELDS.socket);
  const socket = {
    recvBufferSize: int(so.recvBufferSize, '/socket/recvBufferSize', 0, 1 << 30, DEFAULTS.socketBufferSize),
    sendBufferSize: int(so.sendBufferSize, '/socket/sendBufferSize', 0, 1 << 30, DEFAULTS.socketBufferSize),
    maxQueuedDatagrams: int(
      so.maxQueuedDatagrams,
      '/socket/maxQueuedDatagrams',
      1,
      1_000_000,
      DEFAULTS.maxQueuedDatagrams,
    ),
    maxQueuedOctets: int(so.maxQueuedOctets, '/socket/maxQueuedOctets', 65_536, 1 << 30, DEFAULTS.maxQueuedOctets),
    reusePort: reusePortOption(so.reusePort, listen, returnPath.listen, workers),
  };
  const drainMs = int(root.drainMs, '/drainMs', 0, 3_600_000, DEFAULTS.drainMs);
  const lg = optObj(root.log, '/log', KNOWN_FIELDS.log);
  const log = { level: oneOf(lg.level, '/log/level', LOG_LEVELS, DEFAULTS.logLevel) };
  const anycast = root.anycast === undefined ? undefined : anycastSpec(root.anycast, returnPath.mode);
  const retry = root.retry === undefined ? undefined : retrySpec(root.retry, baseDir, warnings);
  const datapath = root.datapath === undefined ? undefined : datapathSpec(root.datapath);
  if (datapath?.mode === 'xdp' && workers !== 1)
    fail(
      'ERR_CONFIG_VALUE',
      '/workers',
      'must be 1 with datapath.mode xdp: the XDP program runs on every core, node:dgram takes only what it passes up',
    );

  return {
    listen,
    quicLb,
    backends,
    fallback: { key: fallbackKey, tableSize },
    health: { initial },
    returnPath,
    metrics,
    workers,
    socket,
    drainMs,
    log,
    ...(anycast ? { anycast } : {}),
    ...(retry ? { retry } : {}),
    ...(datapath ? { datapath } : {}),
  };
}

function datapathSpec(v: unknown): DatapathSpec {
  const o = v === null ? {} : obj(v, '/datapath', KNOWN_FIELDS.datapath);
  const spec: DatapathSpec = {
    mode: oneOf(o.mode, '/datapath/mode', DATAPATH_MODES, 'node'),
    attach: oneOf(o.attach, '/datapath/attach', XDP_ATTACH_MODES, 'auto'),
    unavailable: oneOf(o.unavailable, '/datapath/unavailable', XDP_UNAVAILABLE_ACTIONS, 'fallback'),
  };
  if (o.interface !== undefined) {
    const name = str(o.interface, '/datapath/interface');
    if (!INTERFACE_NAME.test(name))
      fail(
        'ERR_CONFIG_VALUE',
        '/datapath/interface',
        `'${name}' is not an interface name (1 to 15 octets, no '/' or space)`,
      );
    spec.interface = name;
  } else if (spec.mode === 'xdp') {
    fail(
      'ERR_CONFIG_REQUIRED',
      '/datapath/interface',
      "required for mode 'xdp': the interface the VIP traffic arrives on",
    );
  }
  return spec;
}

/** The `datapath` section of `config`, or its defaults when the file has none. */
export function datapathOf(config: LbConfig): DatapathSpec {
  return config.datapath ?? { mode: 'node', attach: 'auto', unavailable: 'fallback' };
}

/**
 * Whether node:dgram of Node `version` (`process.versions.node`) has `reusePort` (SO_REUSEPORT):
 * added in 23.1.0 and back-ported to 22.12.0. An older node:dgram ignores the option silently.
 */
export function dgramHasReusePort(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * `socket.reusePort` (default false). True needs a Node whose node:dgram has the option, fixed
 * ports (a second LB joins the group by binding the same address and port) and `workers: 1`
 * (cluster workers are one LB's processes; more processes on the VIP are more `quic-lb serve`).
 */
function reusePortOption(
  v: unknown,
  listen: readonly ParsedEndpoint[],
  returnListen: ParsedEndpoint | undefined,
  workers: number,
): boolean {
  const at = '/socket/reusePort';
  if (v === undefined || v === false) return false;
  if (v !== true) fail('ERR_CONFIG_TYPE', at, `expected a boolean, got ${typeName(v)}`);
  if (!dgramHasReusePort(process.versions.node))
    fail(
      'ERR_CONFIG_VALUE',
      at,
      `node:dgram of Node ${process.versions.node} has no reusePort (SO_REUSEPORT needs Node >= 22.12 or >= 23.1)`,
    );
  const i = listen.findIndex((e) => e.port === 0);
  if (i >= 0)
    fail(
      'ERR_CONFIG_VALUE',
      `/listen/${i}`,
      'port 0 with socket.reusePort: another LB cannot join a kernel-chosen port',
    );
  if (returnListen?.port === 0)
    fail(
      'ERR_CONFIG_VALUE',
      '/returnPath/listen',
      'port 0 with socket.reusePort: another LB cannot join a kernel-chosen port',
    );
  if (workers !== 1)
    fail(
      'ERR_CONFIG_VALUE',
      '/workers',
      `must be 1 with socket.reusePort, got ${workers}: for more cores, run more quic-lb serve processes on the VIP`,
    );
  return true;
}

/** A number (not necessarily an integer) in min..max, or `dflt` when absent. */
function num(v: unknown, at: string, min: number, max: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v))
    fail('ERR_CONFIG_TYPE', at, `expected a number, got ${typeName(v)}`);
  if (v < min || v > max) fail('ERR_CONFIG_RANGE', at, `expected a number in ${min}..${max}, got ${v}`);
  return v;
}

/**
 * A limit and its resume level: the resume level defaults to `fraction` of the limit (floored
 * for integers) and may not exceed it (ERR_CONFIG_VALUE); with the limit off (0) the resume level
 * is 0 too.
 */
function limitPair(
  a: Obj,
  maxName: string,
  resumeName: string,
  max: number,
  fraction: number,
  integer: boolean,
): [number, number] {
  const at = '/anycast/announce';
  const limit = integer
    ? int(a[maxName], `${at}/${maxName}`, 0, 1e9, 0)
    : num(a[maxName], `${at}/${maxName}`, 0, max, 0);
  // Rounded to 1e-9 so 0.8 * 0.9 reads 0.72, not 0.7200000000000001.
  const dflt = integer ? Math.floor(fraction * limit) : Math.round(fraction * limit * 1e9) / 1e9;
  const resume =
    a[resumeName] === null
      ? dflt
      : integer
        ? int(a[resumeName], `${at}/${resumeName}`, 0, 1e9, dflt)
        : num(a[resumeName], `${at}/${resumeName}`, 0, max, dflt);
  if (limit > 0 && resume > limit)
    fail('ERR_CONFIG_VALUE', `${at}/${resumeName}`, `must be <= ${maxName} (${limit}), got ${resume}`);
  return [limit, limit === 0 ? 0 : resume];
}

/**
 * The `anycast` section (server mode, docs/config.md "anycast"). Replies to VIP clients leave from
 * the VIP on the server itself, so it needs `returnPath.mode: direct` (ERR_CONFIG_VALUE otherwise).
 */
function anycastSpec(v: unknown, mode: ReturnMode): AnycastSpec {
  const o = v === null ? {} : obj(v, '/anycast', KNOWN_FIELDS.anycast);
  if (mode !== 'direct')
    fail(
      'ERR_CONFIG_VALUE',
      '/returnPath/mode',
      "must be 'direct' with an anycast section: each server answers its VIP clients from the VIP itself",
    );
  let forward: boolean = DEFAULTS.anycastForward;
  if (o.forward !== undefined) {
    if (typeof o.forward !== 'boolean')
      fail('ERR_CONFIG_TYPE', '/anycast/forward', `expected a boolean, got ${typeName(o.forward)}`);
    forward = o.forward;
  }
  const a = o.announce === null ? {} : optObj(o.announce, '/anycast/announce', KNOWN_FIELDS.announce);
  const at = '/anycast/announce';
  const [maxConnections, resumeConnections] = limitPair(
    a,
    'maxConnections',
    'resumeConnections',
    1e9,
    DEFAULTS.resumeConnectionsFraction,
    true,
  );
  const [maxEventLoopDelayMs, resumeEventLoopDelayMs] = limitPair(
    a,
    'maxEventLoopDelayMs',
    'resumeEventLoopDelayMs',
    3_600_000,
    DEFAULTS.resumeEventLoopDelayFraction,
    false,
  );
  const [maxCpu, resumeCpu] = limitPair(a, 'maxCpu', 'resumeCpu', 1024, DEFAULTS.resumeCpuFraction, false);
  return {
    forward,
    announce: {
      intervalMs: int(a.intervalMs, `${at}/intervalMs`, 10, 3_600_000, DEFAULTS.announceIntervalMs),
      withdrawAfter: int(a.withdrawAfter, `${at}/withdrawAfter`, 1, 1000, DEFAULTS.withdrawAfter),
      announceAfter: int(a.announceAfter, `${at}/announceAfter`, 1, 1000, DEFAULTS.announceAfter),
      maxConnections,
      resumeConnections,
      maxEventLoopDelayMs,
      resumeEventLoopDelayMs,
      maxCpu,
      resumeCpu,
    },
  };
}

/**
 * The server-mode settings of a config: its `anycast` section, or every default when it has
 * none (then `returnPath.mode` is not checked here: the server mode refuses anything but
 * 'direct' at start).
 */
export function anycastOf(config: LbConfig): AnycastSpec {
  if (config.anycast) return config.anycast;
  return {
    forward: DEFAULTS.anycastForward,
    announce: {
      intervalMs: DEFAULTS.announceIntervalMs,
      withdrawAfter: DEFAULTS.withdrawAfter,
      announceAfter: DEFAULTS.announceAfter,
      maxConnections: 0,
      resumeConnections: 0,
      maxEventLoopDelayMs: 0,
      resumeEventLoopDelayMs: 0,
      maxCpu: 0,
      resumeCpu: 0,
    },
  };
}

/** `retry.versions` entries: the version number, or its name. */
const RETRY_VERSION_NAMES: Readonly<Record<string, number>> = { v1: QUIC_V1, v2: QUIC_V2 };

function retryVersions(v: unknown): number[] {
  const at = '/retry/versions';
  if (v === undefined) return [QUIC_V1, QUIC_V2];
  const items = arr(v, at);
  if (items.length === 0) fail('ERR_CONFIG_REQUIRED', at, 'at least one version (mode off turns the offload off)');
  const out: number[] = [];
  items.forEach((x, i) => {
    const n = typeof x === 'string' ? RETRY_VERSION_NAMES[x] : x;
    if (n !== QUIC_V1 && n !== QUIC_V2)
      fail('ERR_CONFIG_ENUM', `${at}/${i}`, `expected 1 or 0x6b3343cf (or 'v1', 'v2'), got ${JSON.stringify(x)}`);
    if (out.includes(n)) fail('ERR_CONFIG_DUPLICATE', `${at}/${i}`, 'version given twice');
    out.push(n);
  });
  return out;
}

/**
 * One Retry token key file (relative to `baseDir`): one `<sequence> <key hex> <iv hex>` line,
 * parsed by src/wire's `parseRetryTokenKey`. ERR_CONFIG_READ when unreadable, ERR_CONFIG_VALUE
 * when its content is not one key line (the reason quotes the parser's).
 */
function retryKeyFile(v: unknown, at: string, baseDir: string, warnings: Warnings): [string, RetryKeySpec] {
  const [p, text] = readKeyFile(v, at, baseDir, warnings);
  try {
    const k = parseRetryTokenKey(text);
    return [
      p,
      { sequence: k.sequence, key: Buffer.from(k.key).toString('hex'), iv: Buffer.from(k.iv).toString('hex') },
    ];
  } catch (err) {
    if (!(err instanceof QuicWireError)) throw err;
    fail('ERR_CONFIG_VALUE', at, `${p} is not a Retry key file: ${err.message}`, err);
  }
}

/** `retry.keyFiles`: 1..MAX_RETRY_KEY_FILES files of distinct sequences, the first seals. */
function retryKeys(v: unknown, required: boolean, baseDir: string, warnings: Warnings): [string[], RetryKeySpec[]] {
  const at = '/retry/keyFiles';
  if (v === undefined) {
    if (required) fail('ERR_CONFIG_REQUIRED', at, 'required unless mode is off: the keys that seal and open tokens');
    return [[], []];
  }
  const items = arr(v, at);
  if (items.length === 0 && required) fail('ERR_CONFIG_REQUIRED', at, 'at least one key file unless mode is off');
  if (items.length > MAX_RETRY_KEY_FILES)
    fail('ERR_CONFIG_RANGE', at, `at most ${MAX_RETRY_KEY_FILES} key files, got ${items.length}`);
  const files: string[] = [];
  const keys: RetryKeySpec[] = [];
  items.forEach((x, i) => {
    const [file, key] = retryKeyFile(x, `${at}/${i}`, baseDir, warnings);
    const same = keys.findIndex((k) => k.sequence === key.sequence);
    if (same >= 0)
      fail('ERR_CONFIG_DUPLICATE', `${at}/${i}`, `key sequence ${key.sequence} is also the one of ${at}/${same}`);
    files.push(file);
    keys.push(key);
  });
  return [files, keys];
}

/** The `retry` section (docs/retry.md, docs/config.md "retry"). */
function retrySpec(v: unknown, baseDir: string, warnings: Warnings): RetrySpec {
  const o = v === null ? {} : obj(v, '/retry', KNOWN_FIELDS.retry);
  const mode = oneOf(o.mode, '/retry/mode', RETRY_MODES, DEFAULTS.retryMode);
  const [keyFiles, keys] = retryKeys(o.keyFiles, mode !== 'off', baseDir, warnings);
  const l = o.load === null ? {} : optObj(o.load, '/retry/load', KNOWN_FIELDS.retryLoad);
  const at = '/retry/load';
  const onPerSecond = int(l.onPerSecond, `${at}/onPerSecond`, 1, 1e9, DEFAULTS.retryOnPerSecond);
  const offPerSecond = int(l.offPerSecond, `${at}/offPerSecond`, 0, 1e9, Math.floor(onPerSecond / 2));
  if (offPerSecond >= onPerSecond)
    fail('ERR_CONFIG_VALUE', `${at}/offPerSecond`, `must be < onPerSecond (${onPerSecond}), got ${offPerSecond}`);
  return {
    mode,
    keyFiles,
    keys,
    tokenLifetimeSeconds: int(
      o.tokenLifetimeSeconds,
      '/retry/tokenLifetimeSeconds',
      1,
      300,
      DEFAULTS.retryTokenLifetimeSeconds,
    ),
    versions: retryVersions(o.versions),
    load: {
      onPerSecond,
      offPerSecond,
      offAfterMs: int(l.offAfterMs, `${at}/offAfterMs`, 0, 3_600_000, DEFAULTS.retryOffAfterMs),
      transitionMs: int(l.transitionMs, `${at}/transitionMs`, 0, 3_600_000, DEFAULTS.retryTransitionMs),
    },
  };
}

/** The Retry offload settings of a config: its `retry` section, or mode off. */
export function retryOf(config: LbConfig): RetrySpec {
  return (
    config.retry ?? {
      mode: 'off',
      keyFiles: [],
      keys: [],
      tokenLifetimeSeconds: DEFAULTS.retryTokenLifetimeSeconds,
      versions: [QUIC_V1, QUIC_V2],
      load: {
        onPerSecond: DEFAULTS.retryOnPerSecond,
        offPerSecond: Math.floor(DEFAULTS.retryOnPerSecond / 2),
        offAfterMs: DEFAULTS.retryOffAfterMs,
        transitionMs: DEFAULTS.retryTransitionMs,
      },
    }
  );
}

/** The document of YAML text. Throws ConfigError ERR_CONFIG_SYNTAX. */
function parseYamlText(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0];
    fail(
      'ERR_CONFIG_SYNTAX',
      '',
      `YAML ${line ? `line ${line.line} column ${line.col}` : ''}: ${e.message.split('\n')[0]}`,
      e,
    );
  }
  return doc.toJS({ maxAliasCount: 100 });
}

/** A file's text. Throws ConfigError ERR_CONFIG_READ. */
function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    fail('ERR_CONFIG_READ', '', `cannot read ${file}: ${(err as Error).message}`, err);
  }
}

/** Parses YAML text and validates it (see `validateConfig`, also for `warnings`). Throws ConfigError. */
export function parseConfig(text: string, baseDir = process.cwd(), warnings?: string[]): LbConfig {
  return validateConfig(parseYamlText(text), baseDir, warnings);
}

/**
 * Reads, parses and validates a config file. Throws ConfigError (ERR_CONFIG_READ if
 * unreadable). Warnings (key file modes) go to `warnings` when given: serve and check-config log them.
 */
export function loadConfigFile(file: string, warnings?: string[]): LbConfig {
  return parseConfig(readText(file), path.dirname(path.resolve(file)), warnings);
}

/**
 * The QUIC-LB configs of a config file, validated exactly as `loadConfigFile` validates its
 * `quicLb` list; the other sections are neither required nor checked, so a file with only
 * `quicLb` will do. A mapping without a `quicLb` field is read as one `quicLb` entry (errors then
 * name `/configId`, not `/quicLb/0/configId`). For tools that need the configs, not a runnable LB
 * (`quic-lb cid --config`). Throws ConfigError like `loadConfigFile`.
 */
export function loadQuicLbSpecs(file: string, warnings?: string[]): QuicLbConfigSpec[] {
  const doc = parseYamlText(readText(file));
  const baseDir = path.dirname(path.resolve(file));
  if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && !('quicLb' in doc)) {
    return [quicLbSpec(doc, '', new Set(), baseDir, warnings)];
  }
  const root = obj(doc, '', KNOWN_FIELDS.root);
  return quicLbSpecs(arr(root.quicLb, '/quicLb'), '/quicLb', baseDir, warnings);
}

/** What a config file's effective content depends on: its text and the key files it names. */
export interface ConfigSources {
  /** The config file's text (undefined when it cannot be read, e.g. between two renames). */
  text: string | undefined;
  /** Absolute paths of the key files it references (`*File` fields), in document order. */
  keyFiles: string[];
}

/**
 * Reads `file` and lists the key files it references (`quicLb[].keyFile`, `fallback.keyFile`,
 * `returnPath.hmacKeyFile`, `returnPath.hmacKeyFiles[]`, `retry.keyFiles[]`, resolved like `loadConfigFile` does). Never throws: an unreadable
 * file gives `text: undefined`, invalid YAML gives no key files (the reload reports the error).
 */
export function configSources(file: string): ConfigSources {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { text: undefined, keyFiles: [] };
  }
  const baseDir = path.dirname(path.resolve(file));
  const keyFiles: string[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch {
    return { text, keyFiles };
  }
  const ref = (o: unknown, name: string): void => {
    if (o !== null && typeof o === 'object' && typeof (o as Obj)[name] === 'string')
      keyFiles.push(path.resolve(baseDir, (o as Obj)[name] as string));
  };
  if (doc !== null && typeof doc === 'object') {
    const d = doc as Obj;
    if (Array.isArray(d.quicLb)) for (const q of d.quicLb) ref(q, 'keyFile');
    ref(d.fallback, 'keyFile');
    ref(d.returnPath, 'hmacKeyFile');
    const files =
      d.returnPath !== null && typeof d.returnPath === 'object' ? (d.returnPath as Obj).hmacKeyFiles : undefined;
    if (Array.isArray(files)) for (const f of files) if (typeof f === 'string') keyFiles.push(path.resolve(baseDir, f));
    const retryFiles = d.retry !== null && typeof d.retry === 'object' ? (d.retry as Obj).keyFiles : undefined;
    if (Array.isArray(retryFiles))
      for (const f of retryFiles) if (typeof f === 'string') keyFiles.push(path.resolve(baseDir, f));
  }
  return { text, keyFiles };
}

/** The fields whose change needs a restart (sockets and processes); a reload keeps the old values. */
export function restartOnlyChanges(a: LbConfig, b: LbConfig): string[] {
  const changed: string[] = [];
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);
  if (!same(a.listen, b.listen)) changed.push('/listen');
  if (!same(a.returnPath.listen, b.returnPath.listen) || a.returnPath.mode !== b.returnPath.mode)
    changed.push('/returnPath/listen');
  if (!same(a.metrics, b.metrics)) changed.push('/metrics/listen');
  if (a.workers !== b.workers) changed.push('/workers');
  // Buffer sizes, queue bounds and reusePort: socket options set when the sockets are made.
  if (!same(a.socket, b.socket)) changed.push('/socket');
  // The XDP agent is started (and the program attached) with the process.
  if (!same(datapathOf(a), datapathOf(b))) changed.push('/datapath');
  return changed;
}
