// The XDP program's maps (xdp/quic_lb.h) from a validated config and a health view: the one place
// that turns `LbConfig` into the octets the program reads, used by `quic-lb serve`
// (xdp-plane.ts) and by the differential tests (test/xdp/), so what is tested is what runs.
//
// Two generations (0 and 1) of every map that describes the config live side by side; map
// "active" names the one the program reads, once per datagram, so a reload or a health change is
// atomic for every datagram. Array maps hold generation g at `g * size + i`; hash keys carry g.
// A generation is rewritten only while it is inactive (xdp-plane.ts).
import { aesRoundKeys } from '../cid/index.js';
import { type LbConfig, retryOf } from './config.js';
import { MAX_MAGLEV_TABLE_SIZE } from './maglev.js';
import { type HealthView, buildRouterState } from './router.js';
import { type ParsedEndpoint, parseIPv4Into, parseIPv6Into } from '../wire/index.js';

/**
 * The layouts of xdp/quic_lb.h this file writes: per map, key and value octets and entries (the
 * generations included). `checkLayout()` compares them with the object as loaded, so a program
 * built from other sources is refused rather than fed wrong octets.
 */
export const XDP_MAPS = Object.freeze({
  active: { key: 4, value: 4, entries: 1 },
  vips: { key: 20, value: 1, entries: 2 * 64 },
  configs: { key: 4, value: 4 + 2 * 44 * 4, entries: 2 * 8 },
  servers: { key: 16, value: 8, entries: 2 * 65536 },
  fallback: { key: 4, value: 24, entries: 2 },
  maglev: { key: 4, value: 4, entries: 2 * MAX_MAGLEV_TABLE_SIZE },
  backends: { key: 4, value: 20, entries: 2 * 4096 },
  sources: { key: 4, value: 20, entries: 2 * 4096 },
  flags: { key: 4, value: 4, entries: 2 },
} as const);
type MapName = keyof typeof XDP_MAPS;

const GENERATIONS = 2;
const CODEPOINTS = 8;
const MAX_SERVER_ID = 15;
const AES_ROUND_KEY_WORDS = 44;
/** Generation size of each array map (entries / GENERATIONS). */
const perGen = (m: MapName): number => XDP_MAPS[m].entries / GENERATIONS;

/** quic_lb.h QLB_FLAG_*. */
const FLAG_SIGN_FORWARD = 1;
const FLAG_RETRY = 2;

/** One generation's map contents as agent commands, and the hash keys it wrote. */
export interface MapImage {
  gen: number;
  commands: string[];
  /** Hash map name -> keys (hex) this image wrote: deleted before the generation is rewritten. */
  hashKeys: Map<string, string[]>;
}

/** What the maps are made of besides the config and the health view. */
export interface MapInputs {
  /** The VIPs as bound (a port 0 in the config is the kernel's choice). */
  vips: readonly ParsedEndpoint[];
  /**
   * Per backend index: the local end of the Node forwarder's connected socket to it, the outer
   * source of what XDP sends there (undefined: none yet, the program passes its datagrams up).
   */
  sources: readonly (ParsedEndpoint | undefined)[];
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const u32le = (n: number): string => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b.toString('hex');
};

/** Writes IP literal `address` of `family` at out[offset]; throws on a literal that does not parse. */
function ipInto(address: string, family: 4 | 6, out: Uint8Array, offset: number): void {
  const ok = family === 4 ? parseIPv4Into(address, out, offset) : parseIPv6Into(address, out, offset);
  if (!ok) throw new Error(`not an IPv${family} literal: ${address}`);
}

/** struct qlb_vip_key / qlb_endpoint: addr[16] (IPv4 in the first 4), port (network order), family, gen/pad. */
function endpoint(e: ParsedEndpoint | undefined, last = 0): Buffer {
  const b = Buffer.alloc(20);
  if (!e) return b; // family 0: no entry
  ipInto(e.address, e.family, b, 0);
  b.writeUInt16BE(e.port, 16);
  b[18] = e.family;
  b[19] = last;
  return b;
}

/** struct qlb_config: present, server_id_len, nonce_len, encrypted, ek[44], dk[44] (host order). */
function configValue(c: LbConfig['quicLb'][number] | undefined): Buffer {
  const v = Buffer.alloc(XDP_MAPS.configs.value);
  if (!c) return v;
  v[0] = 1;
  v[1] = c.serverIdLength;
  v[2] = c.nonceLength;
  if (c.key !== undefined) {
    v[3] = 1;
    const { encrypt, decrypt } = aesRoundKeys(Buffer.from(c.key, 'hex'));
    // The words as the host stores them: the BPF program reads them as __u32 on this host.
    v.set(new Uint8Array(encrypt.buffer, encrypt.byteOffset, AES_ROUND_KEY_WORDS * 4), 4);
    v.set(new Uint8Array(decrypt.buffer, decrypt.byteOffset, AES_ROUND_KEY_WORDS * 4), 4 + AES_ROUND_KEY_WORDS * 4);
  }
  return v;
}

/** struct qlb_server_key: slot (gen * 8 + config id), server ID zero-padded to 15. */
function serverKey(gen: number, configId: number, serverId: string): string {
  const k = Buffer.alloc(1 + MAX_SERVER_ID);
  k[0] = gen * CODEPOINTS + configId;
  k.write(serverId, 1, 'hex');
  return hex(k);
}

/** struct qlb_server: backend index, routable (0: `down`), padding. */
function serverValue(backend: number, routable: boolean): string {
  const v = Buffer.alloc(XDP_MAPS.servers.value);
  v.writeUInt32LE(backend, 0);
  v[4] = routable ? 1 : 0;
  return hex(v);
}

/** struct qlb_fallback: SipHash key, table size, live (a table with at least one backend). */
function fallbackValue(key: string, tableSize: number, live: boolean): string {
  const v = Buffer.alloc(XDP_MAPS.fallback.value);
  v.write(key, 0, 'hex');
  v.writeUInt32LE(tableSize, 16);
  v.writeUInt32LE(live ? 1 : 0, 20);
  return hex(v);
}

/**
 * The maps of generation `gen` for `config` under `health`. Throws when the config does not fit
 * the program's maps (more VIPs, backends or server IDs than they hold); nothing is written then.
 * The fallback table is the one decide() uses (buildRouterState), so both hash alike.
 */
export function encodeImage(config: LbConfig, health: HealthView, gen: number, inputs: MapInputs): MapImage {
  if (inputs.vips.length > perGen('vips')) throw new Error(`more than ${perGen('vips')} VIPs for XDP`);
  if (config.backends.length > perGen('backends')) throw new Error(`more than ${perGen('backends')} backends for XDP`);
  const serverIds = config.backends.reduce((n, b) => n + b.serverIds.length, 0);
  if (serverIds > perGen('servers')) throw new Error(`more than ${perGen('servers')} server IDs for XDP`);
  const commands: string[] = [];
  const hashKeys = new Map<string, string[]>([
    ['vips', []],
    ['servers', []],
  ]);
  const put = (map: MapName, key: string, value: string): void => {
    commands.push(`update ${map} ${key} ${value}`);
    hashKeys.get(map)?.push(key);
  };
  const fill = (map: MapName, values: Buffer): void => {
    if (values.length > 0) commands.push(`fill ${map} ${gen * perGen(map)} ${values.toString('hex')}`);
  };
  for (const v of inputs.vips) put('vips', hex(endpoint(v, gen)), '01');
  const byId = new Map(config.quicLb.map((c) => [c.configId, c]));
  fill('configs', Buffer.concat(Array.from({ length: CODEPOINTS }, (_, cp) => configValue(byId.get(cp)))));
  const state = buildRouterState(config, health);
  config.backends.forEach((b, index) => {
    for (const { configId, serverId } of b.serverIds)
      put('servers', serverKey(gen, configId, serverId), serverValue(index, state.routable[index] === 1));
  });
  const table = state.table;
  commands.push(
    `update fallback ${u32le(gen)} ${fallbackValue(config.fallback.key, config.fallback.tableSize, table.length > 0)}`,
  );
  fill('maglev', Buffer.from(table.buffer, table.byteOffset, table.byteLength));
  fill('backends', Buffer.concat(config.backends.map((b) => endpoint(b.address))));
  fill('sources', Buffer.concat(config.backends.map((_, i) => endpoint(inputs.sources[i]))));
  const flags =
    (config.returnPath.signForward ? FLAG_SIGN_FORWARD : 0) | (retryOf(config).mode !== 'off' ? FLAG_RETRY : 0);
  commands.push(`update flags ${u32le(gen)} ${u32le(flags)}`);
  return { gen, commands, hashKeys };
}

/** Deletes what `image` put in hash maps (before its generation is rewritten). */
function staleCommands(image: MapImage | undefined): string[] {
  if (!image) return [];
  const out: string[] = [];
  for (const [map, keys] of image.hashKeys) for (const k of keys) out.push(`delete ${map} ${k}`);
  return out;
}

/** Makes generation `gen` the one the program reads. */
function activateCommand(gen: number): string {
  return `update active ${u32le(0)} ${u32le(gen)}`;
}

/**
 * Writes whole generations through `apply` (an agent's: it rejects on the first refused
 * command). Each write goes to the inactive generation, then flips map "active" to it; the
 * generation written before keeps what it held until the next write replaces it. Not reentrant:
 * callers run one write at a time.
 */
export class MapWriter {
  /** The generation the program reads (0 before any write: every map empty). */
  private active = 0;
  private readonly written: (MapImage | undefined)[] = [undefined, undefined];

  constructor(private readonly apply: (commands: string[]) => Promise<unknown>) {}

  /** Encodes (throws when the config does not fit, nothing written), writes, then activates. */
  async write(config: LbConfig, health: HealthView, inputs: MapInputs): Promise<void> {
    const next = 1 - this.active;
    const image = encodeImage(config, health, next, inputs);
    const stale = staleCommands(this.written[next]);
    // Recorded first: if apply rejects halfway, the next write of this generation deletes what
    // of it went in (deleting an absent key is not an error).
    this.written[next] = image;
    await this.apply([...stale, ...image.commands]);
    await this.apply([activateCommand(next)]);
    this.active = next;
  }
}

/** The agent commands that read back every map's layout (`info MAP`), in XDP_MAPS order. */
export const LAYOUT_QUERIES: readonly string[] = Object.keys(XDP_MAPS).map((m) => `info ${m}`);

/**
 * Compares the replies to LAYOUT_QUERIES with XDP_MAPS: undefined when they agree, else what
 * differs (the object was built from other sources than this code).
 */
export function checkLayout(replies: readonly string[]): string | undefined {
  const names = Object.keys(XDP_MAPS) as MapName[];
  for (let i = 0; i < names.length; i++) {
    const m = XDP_MAPS[names[i]];
    const want = `info ${m.key} ${m.value} ${m.entries}`;
    if (replies[i] !== want) return `map ${names[i]}: the object has '${replies[i]}', this code writes '${want}'`;
  }
  return undefined;
}
