// The XDP program's maps (xdp/quic_lb.h) from a validated config and a health view: the one place
// that turns `LbConfig` into the octets the program reads, used by `quic-lb serve` (plane.ts) and
// by the differential tests (test/xdp/), so what is tested is what runs.
//
// Two generations (0 and 1) of every map that describes the config live side by side; map
// "active" names the one the program reads, once per datagram (draft-21 has no say here: this is
// how a reload is atomic for the program). Array maps index `gen * size + i`; hash maps carry the
// generation in their key. A generation is rewritten only while it is inactive.
import { type LbConfig } from './config.js';
import { type HealthView } from './router.js';
import { type ParsedEndpoint, parseIPv4Into, parseIPv6Into } from '../wire/index.js';

/** Layout constants of xdp/quic_lb.h (checked against the object's maps by test/xdp/). */
export const XDP_LAYOUT = Object.freeze({
  codepoints: 8,
  maxServerId: 15,
});

/** One generation's map contents as agent commands, and the hash keys it wrote. */
export interface MapImage {
  gen: number;
  commands: string[];
  /** Hash map name -> keys (hex) this image wrote: deleted before the generation is rewritten. */
  hashKeys: Map<string, string[]>;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u32le = (n: number): string => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b.toString('hex');
};

/** struct qlb_vip_key: addr[16] (IPv4 in the first 4), port (network order), family, gen. */
function vipKey(vip: ParsedEndpoint, gen: number): string {
  const k = Buffer.alloc(20);
  ipInto(vip.address, vip.family, k, 0);
  k.writeUInt16BE(vip.port, 16);
  k[18] = vip.family;
  k[19] = gen;
  return hex(k);
}

/** Writes IP literal `address` of `family` at out[offset]; throws on a literal that does not parse. */
function ipInto(address: string, family: 4 | 6, out: Uint8Array, offset: number): void {
  const ok = family === 4 ? parseIPv4Into(address, out, offset) : parseIPv6Into(address, out, offset);
  if (!ok) throw new Error(`not an IPv${family} literal: ${address}`);
}

/** struct qlb_config: present, server_id_len, nonce_len, encrypted. */
function configValue(c: LbConfig['quicLb'][number] | undefined): string {
  const v = Buffer.alloc(4);
  if (c) {
    v[0] = 1;
    v[1] = c.serverIdLength;
    v[2] = c.nonceLength;
    v[3] = c.key === undefined ? 0 : 1;
  }
  return hex(v);
}

/** struct qlb_server_key: slot (gen * codepoints + config id), server ID zero-padded to 15. */
function serverKey(gen: number, configId: number, serverId: string): string {
  const k = Buffer.alloc(1 + XDP_LAYOUT.maxServerId);
  k[0] = gen * XDP_LAYOUT.codepoints + configId;
  k.write(serverId, 1, 'hex');
  return hex(k);
}

/** struct qlb_server: backend index, routable (0: `down`), padding. */
function serverValue(backend: number, routable: boolean): string {
  const v = Buffer.alloc(8);
  v.writeUInt32LE(backend, 0);
  v[4] = routable ? 1 : 0;
  return hex(v);
}

/**
 * The maps of generation `gen` for `config` under `health`, with the VIPs as bound (`vips`: a
 * port 0 in the config is the kernel's choice). Throws when the config does not fit the
 * program's maps; nothing is written then.
 */
export function encodeImage(
  config: LbConfig,
  health: HealthView,
  gen: number,
  vips: readonly ParsedEndpoint[],
): MapImage {
  const commands: string[] = [];
  const hashKeys = new Map<string, string[]>([
    ['vips', []],
    ['servers', []],
  ]);
  const put = (map: string, key: string, value: string): void => {
    commands.push(`update ${map} ${key} ${value}`);
    hashKeys.get(map)?.push(key);
  };
  for (const v of vips) put('vips', vipKey(v, gen), '01');
  const byId = new Map(config.quicLb.map((c) => [c.configId, c]));
  const configs = Array.from({ length: XDP_LAYOUT.codepoints }, (_, cp) => configValue(byId.get(cp))).join('');
  commands.push(`fill configs ${gen * XDP_LAYOUT.codepoints} ${configs}`);
  config.backends.forEach((b, index) => {
    const routable = health.get(b.name) !== 'down';
    for (const { configId, serverId } of b.serverIds)
      put('servers', serverKey(gen, configId, serverId), serverValue(index, routable));
  });
  return { gen, commands, hashKeys };
}

/** Deletes what `image` put in hash maps (before its generation is rewritten). */
export function staleCommands(image: MapImage | undefined): string[] {
  if (!image) return [];
  const out: string[] = [];
  for (const [map, keys] of image.hashKeys) for (const k of keys) out.push(`delete ${map} ${k}`);
  return out;
}

/** Makes generation `gen` the one the program reads. */
export function activateCommand(gen: number): string {
  return `update active ${u32le(0)} ${u32le(gen)}`;
}
