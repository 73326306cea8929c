/**
 * LB encapsulation: the HAProxy PROXY protocol version 2 binary header, transport DGRAM,
 * followed by the untouched QUIC datagram (haproxy.org doc/proxy-protocol.txt §2.2).
 *
 *   0..11  signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *   12     version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
 *   13     family (high nibble: 1 AF_INET, 2 AF_INET6) | transport (low nibble: 2 DGRAM)
 *   14..15 length of what follows (address block + TLVs), big-endian
 *   16..   AF_INET:  src addr(4)  dst addr(4)  src port(2) dst port(2)   = 12 octets
 *          AF_INET6: src addr(16) dst addr(16) src port(2) dst port(2)  = 36 octets
 *   ..     TLVs: type(1) length(2, big-endian) value
 *
 * Direction conventions (both directions use the same format):
 * - LB -> backend (`ProxyDirection.TO_BACKEND`): src = the client, dst = the VIP it sent to;
 * - backend -> LB return port (`ProxyDirection.TO_CLIENT`): src = the VIP the reply must leave
 *   from, dst = the client to send the payload to.
 *
 * Optional authentication (this project's custom TLV, type {@link PP2_TYPE_QUICLB_AUTH} = 0xEA in
 * the spec's custom range 0xE0..0xEF; 0xEA because it is unlikely to clash with other tools'
 * first picks of 0xE0/0xE1), value 25 octets:
 *
 *   direction(1) | timestamp, ms since the Unix epoch (64, big-endian) | MAC(128)
 *   MAC = first 16 octets of HMAC-SHA256(key, header-with-MAC-zeroed || payload)
 *
 * The MAC covers the whole header (addresses, ports, direction, timestamp, every TLV) and the
 * payload, so without the key nobody can make the LB's return port send anything to anyone: it
 * can never become a reflector or amplifier. Replay: within the acceptance window (default
 * ±30 s around the receiver's clock) a captured (header, payload) pair can be replayed; it
 * makes the LB send the identical payload to the same client again, smaller than what was sent
 * (1:1, no amplification, no choice of target or content), and the client's QUIC stack drops the
 * duplicate (packet numbers + AEAD). Outside the window it is rejected. There is no per-packet
 * replay cache (that would be per-flow state). The direction octet stops a packet of one
 * direction being replayed into the other. Sender and receiver clocks must agree within the
 * window (NTP). Cost: one node:crypto HMAC per packet when enabled.
 *
 * Key rotation: a receiver may hold a short list of keys (the first one signs, every one
 * verifies), so senders can switch keys one at a time: [old] -> [old, new] -> [new, old] -> [new].
 * The key that verified the last header is tried first, so a steady sender costs one HMAC per
 * header whatever its position in the list; a header no key verifies costs one HMAC per key.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { QuicWireError } from './errors.js';
import { formatIPv4, formatIPv6, parseIPv4Into, parseIPv6Into } from './ip.js';

/** proxy-protocol.txt §2.2: the 12-octet v2 signature. */
export const PROXY_V2_SIGNATURE: Readonly<Uint8Array> = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);
/** Octets before the address block (signature, ver/cmd, fam/transport, length). */
export const PROXY_V2_FIXED_LENGTH = 16;
/** Version 2 in the high nibble of octet 12. */
export const PROXY_V2_VERSION = 0x2;
/** Commands (low nibble of octet 12). */
export const ProxyCommand = { LOCAL: 0x0, PROXY: 0x1 } as const;
export type ProxyCommand = (typeof ProxyCommand)[keyof typeof ProxyCommand];
/** Octet 13 values: AF_UNSPEC/UNSPEC, AF_INET/DGRAM, AF_INET6/DGRAM. */
export const PROXY_FAMILY_UNSPEC = 0x00;
export const PROXY_FAMILY_INET_DGRAM = 0x12;
export const PROXY_FAMILY_INET6_DGRAM = 0x22;
/** Address block sizes (proxy-protocol.txt §2.2). */
export const PROXY_ADDR_LENGTH_INET = 12;
export const PROXY_ADDR_LENGTH_INET6 = 36;
const PROXY_ADDR_LENGTH_UNIX = 216;
/** Custom TLV range (PP2_TYPE_MIN_CUSTOM..PP2_TYPE_MAX_CUSTOM) and our authentication TLV. */
export const PP2_TYPE_MIN_CUSTOM = 0xe0;
export const PP2_TYPE_MAX_CUSTOM = 0xef;
export const PP2_TYPE_QUICLB_AUTH = 0xea;
/** Value length of the authentication TLV: direction(1) + timestamp(8) + MAC(16). */
export const PROXY_AUTH_VALUE_LENGTH = 25;
/** Whole authentication TLV: type(1) + length(2) + value. */
export const PROXY_AUTH_TLV_LENGTH = 3 + PROXY_AUTH_VALUE_LENGTH;
export const PROXY_AUTH_MAC_LENGTH = 16;
/** Minimum HMAC key length accepted (octets). */
export const PROXY_AUTH_MIN_KEY_LENGTH = 16;
/** Default replay/clock window of the authentication TLV, milliseconds (either side of now). */
export const PROXY_AUTH_DEFAULT_WINDOW_MS = 30_000;

/** Which way an authenticated header travels (octet 0 of the auth TLV value). */
export const ProxyDirection = { TO_BACKEND: 0, TO_CLIENT: 1 } as const;
export type ProxyDirection = (typeof ProxyDirection)[keyof typeof ProxyDirection];

/** Negative results of {@link parseProxyHeader}. */
export const PROXY_ERR_TRUNCATED = -1;
export const PROXY_ERR_SIGNATURE = -2;
export const PROXY_ERR_VERSION = -3;
export const PROXY_ERR_COMMAND = -4;
/** Family/transport not AF_INET or AF_INET6 over DGRAM (for PROXY), or unknown. */
export const PROXY_ERR_FAMILY = -5;
/** Length field shorter than the family's address block, or a malformed TLV. */
export const PROXY_ERR_LENGTH = -6;
/** Authentication required and missing, duplicated, malformed, wrong direction or wrong MAC. */
export const PROXY_ERR_AUTH = -7;
/** Authenticated, but the timestamp is outside the acceptance window. */
export const PROXY_ERR_STALE = -8;
/** Counter-friendly names, indexed by `-code` (index 0 unused). */
export const PROXY_ERROR_NAMES: readonly string[] = [
  'ok',
  'truncated',
  'bad_signature',
  'bad_version',
  'bad_command',
  'unsupported_family',
  'bad_length',
  'bad_auth',
  'stale_auth',
];

const OFF_VER_CMD = 12;
const OFF_FAMILY = 13;
const OFF_LENGTH = 14;
const OFF_ADDR = 16;

/** Precomputed HMAC keys plus the receiver's acceptance policy. Build once with {@link createProxyAuth}. */
export interface ProxyAuth {
  /** The signing key: `keys[0]`. */
  readonly key: KeyObject;
  /** Every key accepted when verifying, the signing key first. */
  readonly keys: readonly KeyObject[];
  readonly windowMs: number;
  /** If set, `parseProxyHeader` rejects authenticated headers of the other direction. */
  readonly expect: ProxyDirection | undefined;
  readonly now: () => number;
  /** @internal scratch for the received MAC */
  readonly scratch: Uint8Array;
  /** @internal [0]: index of the key that verified the last header (tried first next time) */
  readonly lastKey: Uint8Array;
}

/** Most keys one ProxyAuth holds (a rejected header costs one HMAC per key). */
export const PROXY_AUTH_MAX_KEYS = 8;

/**
 * Builds the authentication context. `key`: one key, or a list of 1..PROXY_AUTH_MAX_KEYS keys
 * whose first signs and all verify (rotation); each >= 16 octets (32 recommended), shared by
 * the LBs and backends. `expect`: the direction this receiver accepts (LB return port:
 * TO_CLIENT; backend: TO_BACKEND). `now` is injectable for tests. Throws ERR_PROXY_HMAC_KEY.
 */
export function createProxyAuth(
  key: Uint8Array | readonly Uint8Array[],
  options: { windowMs?: number; expect?: ProxyDirection; now?: () => number } = {},
): ProxyAuth {
  const list: readonly Uint8Array[] = key instanceof Uint8Array ? [key] : key;
  if (!Array.isArray(list) || list.length === 0 || list.length > PROXY_AUTH_MAX_KEYS) {
    throw new QuicWireError('ERR_PROXY_HMAC_KEY', `expected 1..${PROXY_AUTH_MAX_KEYS} HMAC keys`, 'hmacKey');
  }
  for (const k of list) {
    if (!(k instanceof Uint8Array) || k.length < PROXY_AUTH_MIN_KEY_LENGTH) {
      throw new QuicWireError(
        'ERR_PROXY_HMAC_KEY',
        `HMAC key must be at least ${PROXY_AUTH_MIN_KEY_LENGTH} octets`,
        'hmacKey',
      );
    }
  }
  const keys = Object.freeze(list.map((k) => createSecretKey(Buffer.from(k))));
  return Object.freeze({
    key: keys[0],
    keys,
    windowMs: options.windowMs ?? PROXY_AUTH_DEFAULT_WINDOW_MS,
    expect: options.expect,
    now: options.now ?? Date.now,
    scratch: new Uint8Array(PROXY_AUTH_MAC_LENGTH),
    lastKey: new Uint8Array(1),
  });
}

function toAuth(k: Uint8Array | ProxyAuth): ProxyAuth {
  return k instanceof Uint8Array ? createProxyAuth(k) : k;
}

/**
 * Reusable parse result (allocate once). Addresses are octets in `srcAddr`/`dstAddr` (first 4
 * used for family 4, all 16 for family 6); use {@link formatProxyAddress} for a string.
 */
export class ProxyHeader {
  command: ProxyCommand = ProxyCommand.PROXY;
  /** 4, 6, or 0 (LOCAL / UNSPEC: no addresses). */
  family: 0 | 4 | 6 = 0;
  readonly srcAddr = new Uint8Array(16);
  readonly dstAddr = new Uint8Array(16);
  srcPort = 0;
  dstPort = 0;
  /** Octets of header; the datagram starts here. */
  headerLength = 0;
  /** True when an auth TLV was verified (only with a key). */
  authenticated = false;
  /** Direction from the auth TLV, -1 when not authenticated. */
  direction = -1;
  /** Timestamp from the auth TLV (ms), -1 when not authenticated. */
  timestampMs = -1;
  /** Index in `ProxyAuth.keys` of the key whose MAC matched (0 = the signing key), else -1. */
  keyIndex = -1;
}

/** String form of the header's 'src' or 'dst' address ('' for family 0). Allocates a string. */
export function formatProxyAddress(h: ProxyHeader, which: 'src' | 'dst'): string {
  const bytes = which === 'src' ? h.srcAddr : h.dstAddr;
  if (h.family === 4) return formatIPv4(bytes, 0);
  if (h.family === 6) return formatIPv6(bytes, 0);
  return '';
}

function macOf(key: KeyObject, buf: Uint8Array, macOffset: number, end: number, payload?: Uint8Array): Buffer {
  const h = createHmac('sha256', key);
  h.update(buf.subarray(0, macOffset));
  h.update(ZERO_MAC);
  h.update(buf.subarray(macOffset + PROXY_AUTH_MAC_LENGTH, end));
  if (payload !== undefined) h.update(payload);
  return h.digest();
}
const ZERO_MAC = new Uint8Array(PROXY_AUTH_MAC_LENGTH);

/**
 * Parses a PROXY v2 header at the start of `buf` (the whole received datagram) into `out`.
 * Returns the header length (the QUIC datagram is `buf.subarray(result)`), or a negative
 * PROXY_ERR_* code. With `auth` (a ProxyAuth or a raw key), a valid auth TLV is required and
 * its MAC is checked over the header and the rest of `buf` with each of the auth's keys (the
 * last one that matched first); `out.keyIndex` names the key that matched. Never throws;
 * allocates nothing without auth (with auth: one HMAC per key tried).
 */
export function parseProxyHeader(buf: Uint8Array, out: ProxyHeader, auth?: ProxyAuth | Uint8Array): number {
  const n = buf.length;
  const sigCheck = n < 12 ? n : 12;
  for (let i = 0; i < sigCheck; i++) if (buf[i] !== PROXY_V2_SIGNATURE[i]) return PROXY_ERR_SIGNATURE;
  if (n < PROXY_V2_FIXED_LENGTH) return PROXY_ERR_TRUNCATED;
  const verCmd = buf[OFF_VER_CMD];
  if (verCmd >> 4 !== PROXY_V2_VERSION) return PROXY_ERR_VERSION;
  const cmd = verCmd & 0x0f;
  if (cmd !== ProxyCommand.LOCAL && cmd !== ProxyCommand.PROXY) return PROXY_ERR_COMMAND;
  const len = (buf[OFF_LENGTH] << 8) | buf[OFF_LENGTH + 1];
  const total = PROXY_V2_FIXED_LENGTH + len;
  const fam = buf[OFF_FAMILY];
  let addrLen: number;
  let family: 0 | 4 | 6 = 0;
  if (fam === PROXY_FAMILY_INET_DGRAM) {
    addrLen = PROXY_ADDR_LENGTH_INET;
    family = 4;
  } else if (fam === PROXY_FAMILY_INET6_DGRAM) {
    addrLen = PROXY_ADDR_LENGTH_INET6;
    family = 6;
  } else if (cmd === ProxyCommand.PROXY) {
    return PROXY_ERR_FAMILY; // we need a UDP source: only AF_INET/AF_INET6 over DGRAM
  } else {
    // LOCAL: addresses are to be ignored; only skip a well-formed block (§2.2).
    const f = fam >> 4;
    const t = fam & 0x0f;
    if (t > 2) return PROXY_ERR_FAMILY;
    if (f === 0) addrLen = 0;
    else if (f === 1) addrLen = PROXY_ADDR_LENGTH_INET;
    else if (f === 2) addrLen = PROXY_ADDR_LENGTH_INET6;
    else if (f === 3) addrLen = PROXY_ADDR_LENGTH_UNIX;
    else return PROXY_ERR_FAMILY;
  }
  if (len < addrLen) return PROXY_ERR_LENGTH;
  if (n < total) return PROXY_ERR_TRUNCATED;
  out.command = cmd as ProxyCommand;
  out.headerLength = total;
  out.authenticated = false;
  out.direction = -1;
  out.timestampMs = -1;
  out.keyIndex = -1;
  if (cmd === ProxyCommand.PROXY) {
    out.family = family;
    const a = OFF_ADDR;
    if (family === 4) {
      for (let i = 0; i < 4; i++) {
        out.srcAddr[i] = buf[a + i];
        out.dstAddr[i] = buf[a + 4 + i];
      }
      out.srcPort = (buf[a + 8] << 8) | buf[a + 9];
      out.dstPort = (buf[a + 10] << 8) | buf[a + 11];
    } else {
      for (let i = 0; i < 16; i++) {
        out.srcAddr[i] = buf[a + i];
        out.dstAddr[i] = buf[a + 16 + i];
      }
      out.srcPort = (buf[a + 32] << 8) | buf[a + 33];
      out.dstPort = (buf[a + 34] << 8) | buf[a + 35];
    }
  } else {
    out.family = 0;
    out.srcPort = 0;
    out.dstPort = 0;
  }
  // TLVs: validate structure, find our auth TLV.
  let authValue = -1;
  let p = OFF_ADDR + addrLen;
  while (p < total) {
    if (p + 3 > total) return PROXY_ERR_LENGTH;
    const tlvLen = (buf[p + 1] << 8) | buf[p + 2];
    const vEnd = p + 3 + tlvLen;
    if (vEnd > total) return PROXY_ERR_LENGTH;
    if (buf[p] === PP2_TYPE_QUICLB_AUTH) {
      if (authValue >= 0 || tlvLen !== PROXY_AUTH_VALUE_LENGTH)
        return auth === undefined ? PROXY_ERR_LENGTH : PROXY_ERR_AUTH;
      authValue = p + 3;
    }
    p = vEnd;
  }
  if (auth === undefined) return total;
  if (authValue < 0) return PROXY_ERR_AUTH;
  const ctx = auth instanceof Uint8Array ? toAuth(auth) : auth;
  const direction = buf[authValue];
  if (direction > ProxyDirection.TO_CLIENT) return PROXY_ERR_AUTH;
  if (ctx.expect !== undefined && direction !== ctx.expect) return PROXY_ERR_AUTH;
  const macOffset = authValue + 9;
  const keyIndex = matchingKey(ctx, buf, macOffset, n);
  if (keyIndex < 0) return PROXY_ERR_AUTH;
  const hi = (buf[authValue + 1] << 24) | (buf[authValue + 2] << 16) | (buf[authValue + 3] << 8) | buf[authValue + 4];
  const lo = (buf[authValue + 5] << 24) | (buf[authValue + 6] << 16) | (buf[authValue + 7] << 8) | buf[authValue + 8];
  const ts = (hi >>> 0) * 4294967296 + (lo >>> 0);
  const now = ctx.now();
  if (ts > now + ctx.windowMs || ts < now - ctx.windowMs) return PROXY_ERR_STALE;
  out.authenticated = true;
  out.direction = direction;
  out.timestampMs = ts;
  out.keyIndex = keyIndex;
  return total;
}

/** Index of the key whose MAC equals the one at `buf[macOffset]`, or -1; the last match first. */
function matchingKey(auth: ProxyAuth, buf: Uint8Array, macOffset: number, end: number): number {
  const keys = auth.keys;
  const first = auth.lastKey[0] < keys.length ? auth.lastKey[0] : 0;
  for (let k = 0; k < keys.length; k++) {
    // Order: first, then 0, 1, ... skipping first.
    const i = k === 0 ? first : k <= first ? k - 1 : k;
    const mac = macOf(keys[i], buf, macOffset, end);
    let diff = 0;
    for (let j = 0; j < PROXY_AUTH_MAC_LENGTH; j++) diff |= mac[j] ^ buf[macOffset + j];
    if (diff === 0) {
      auth.lastKey[0] = i;
      return i;
    }
  }
  return -1;
}

/** Header length for a family, with or without the auth TLV. */
export function proxyHeaderLength(family: 4 | 6, withAuth: boolean): number {
  return (
    PROXY_V2_FIXED_LENGTH +
    (family === 4 ? PROXY_ADDR_LENGTH_INET : PROXY_ADDR_LENGTH_INET6) +
    (withAuth ? PROXY_AUTH_TLV_LENGTH : 0)
  );
}

/**
 * Allocation-free writer: a PROXY (DGRAM) header at `out[offset]` from pre-parsed addresses
 * (`src`/`dst`: 4 octets for IPv4, 16 for IPv6, same family). With `withAuth` an auth TLV is
 * reserved (zero MAC): fill it with {@link signProxyHeader}. Returns the offset after the
 * header, or -1 if the family is inconsistent or `out` has no room (never throws).
 */
export function writeProxyHeader(
  out: Uint8Array,
  offset: number,
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  withAuth = false,
): number {
  const alen = src.length;
  if ((alen !== 4 && alen !== 16) || dst.length !== alen) return -1;
  const family = alen === 4 ? 4 : 6;
  const hlen = proxyHeaderLength(family, withAuth);
  if (offset < 0 || offset + hlen > out.length) return -1;
  out.set(PROXY_V2_SIGNATURE, offset);
  out[offset + OFF_VER_CMD] = (PROXY_V2_VERSION << 4) | ProxyCommand.PROXY;
  out[offset + OFF_FAMILY] = family === 4 ? PROXY_FAMILY_INET_DGRAM : PROXY_FAMILY_INET6_DGRAM;
  const len = hlen - PROXY_V2_FIXED_LENGTH;
  out[offset + OFF_LENGTH] = len >> 8;
  out[offset + OFF_LENGTH + 1] = len & 0xff;
  const a = offset + OFF_ADDR;
  out.set(src, a);
  out.set(dst, a + alen);
  out[a + 2 * alen] = srcPort >> 8;
  out[a + 2 * alen + 1] = srcPort & 0xff;
  out[a + 2 * alen + 2] = dstPort >> 8;
  out[a + 2 * alen + 3] = dstPort & 0xff;
  if (withAuth) {
    const t = a + 2 * alen + 4;
    out[t] = PP2_TYPE_QUICLB_AUTH;
    out[t + 1] = 0;
    out[t + 2] = PROXY_AUTH_VALUE_LENGTH;
    out.fill(0, t + 3, t + PROXY_AUTH_TLV_LENGTH);
  }
  return offset + hlen;
}

/**
 * Signs a header that ends with the auth TLV (as written by `writeProxyHeader(..., true)`,
 * `encodeProxyHeader` or a template with auth): sets direction, timestamp (`nowMs`, default
 * `auth.now()`) and the MAC over `header` (exactly the header octets) and `payload`.
 * Returns false if `header` does not end with an auth TLV. One HMAC computation.
 */
export function signProxyHeader(
  header: Uint8Array,
  payload: Uint8Array,
  auth: ProxyAuth,
  direction: ProxyDirection,
  nowMs: number = auth.now(),
): boolean {
  const v = header.length - PROXY_AUTH_VALUE_LENGTH;
  if (
    v < PROXY_V2_FIXED_LENGTH + 3 ||
    header[v - 3] !== PP2_TYPE_QUICLB_AUTH ||
    header[v - 1] !== PROXY_AUTH_VALUE_LENGTH
  ) {
    return false;
  }
  header[v] = direction;
  const ts = Math.max(0, Math.floor(nowMs));
  const hi = Math.floor(ts / 4294967296);
  const lo = ts % 4294967296;
  header[v + 1] = hi >>> 24;
  header[v + 2] = (hi >>> 16) & 0xff;
  header[v + 3] = (hi >>> 8) & 0xff;
  header[v + 4] = hi & 0xff;
  header[v + 5] = lo >>> 24;
  header[v + 6] = (lo >>> 16) & 0xff;
  header[v + 7] = (lo >>> 8) & 0xff;
  header[v + 8] = lo & 0xff;
  const macOffset = v + 9;
  const mac = macOf(auth.key, header, macOffset, header.length, payload);
  for (let i = 0; i < PROXY_AUTH_MAC_LENGTH; i++) header[macOffset + i] = mac[i];
  return true;
}

function checkPort(port: unknown, field: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new QuicWireError('ERR_PROXY_PORT', `${field} must be an integer in 0..65535`, field);
  }
  return port;
}

function addressBytes(addr: unknown, field: string): Uint8Array {
  if (typeof addr === 'string') {
    const b4 = new Uint8Array(4);
    if (parseIPv4Into(addr, b4, 0)) return b4;
    const b6 = new Uint8Array(16);
    if (parseIPv6Into(addr, b6, 0)) return b6;
  }
  throw new QuicWireError('ERR_PROXY_ADDRESS', `${field} ${String(addr)} is not an IP literal`, field);
}

/** Options of {@link encodeProxyHeader}. */
export interface ProxyHeaderOptions {
  /** 4 or 6; optional, checked against the addresses when given. */
  family?: 4 | 6;
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
  /** Default 'proxy'. 'local' writes an AF_UNSPEC header with no addresses (health probes). */
  command?: 'proxy' | 'local';
  /** Adds and signs the auth TLV; requires the `payload` argument. */
  hmacKey?: Uint8Array | ProxyAuth;
  /** Direction recorded in the auth TLV; default TO_BACKEND. */
  direction?: ProxyDirection;
  /** Reserve the auth TLV without signing (sign later with signProxyHeader). */
  reserveAuth?: boolean;
}

/**
 * Builds a PROXY v2 DGRAM header (a new Buffer; control path, or per-VIP caching). Throws
 * QuicWireError: ERR_PROXY_ADDRESS (not an IP literal, or src/dst families differ),
 * ERR_PROXY_FAMILY, ERR_PROXY_PORT, ERR_PROXY_HMAC_KEY, ERR_PROXY_PAYLOAD (hmacKey without payload).
 */
export function encodeProxyHeader(opts: ProxyHeaderOptions, payload?: Uint8Array): Buffer {
  const auth = opts.hmacKey === undefined ? undefined : toAuth(opts.hmacKey);
  if (auth !== undefined && !(payload instanceof Uint8Array)) {
    throw new QuicWireError('ERR_PROXY_PAYLOAD', 'an authenticated header needs the payload it covers', 'payload');
  }
  const withAuth = auth !== undefined || opts.reserveAuth === true;
  if (opts.command === 'local') {
    const len = withAuth ? PROXY_AUTH_TLV_LENGTH : 0;
    const out = Buffer.alloc(PROXY_V2_FIXED_LENGTH + len);
    out.set(PROXY_V2_SIGNATURE, 0);
    out[OFF_VER_CMD] = (PROXY_V2_VERSION << 4) | ProxyCommand.LOCAL;
    out[OFF_FAMILY] = PROXY_FAMILY_UNSPEC;
    out.writeUInt16BE(len, OFF_LENGTH);
    if (withAuth) {
      out[OFF_ADDR] = PP2_TYPE_QUICLB_AUTH;
      out.writeUInt16BE(PROXY_AUTH_VALUE_LENGTH, OFF_ADDR + 1);
    }
    if (auth !== undefined)
      signProxyHeader(out, payload as Uint8Array, auth, opts.direction ?? ProxyDirection.TO_BACKEND);
    return out;
  }
  const src = addressBytes(opts.srcAddr, 'srcAddr');
  const dst = addressBytes(opts.dstAddr, 'dstAddr');
  if (src.length !== dst.length) {
    throw new QuicWireError('ERR_PROXY_ADDRESS', 'srcAddr and dstAddr must be of the same family', 'dstAddr');
  }
  const family = src.length === 4 ? 4 : 6;
  if (opts.family !== undefined && opts.family !== family) {
    throw new QuicWireError(
      'ERR_PROXY_FAMILY',
      `family ${String(opts.family)} does not match the addresses (IPv${family})`,
      'family',
    );
  }
  const srcPort = checkPort(opts.srcPort, 'srcPort');
  const dstPort = checkPort(opts.dstPort, 'dstPort');
  const out = Buffer.alloc(proxyHeaderLength(family, withAuth));
  writeProxyHeader(out, 0, src, srcPort, dst, dstPort, withAuth);
  if (auth !== undefined)
    signProxyHeader(out, payload as Uint8Array, auth, opts.direction ?? ProxyDirection.TO_BACKEND);
  return out;
}

/**
 * A precomputed header for the hot path: one side (address + port) is fixed, e.g. the VIP; the
 * other is written per packet from the string node:dgram reports, without allocation.
 *
 * - LB -> backend: `fixedSide: 'dst'` (the VIP), per packet `write(..., client, port)` sets src;
 * - backend/LB return path: `fixedSide: 'src'` (the VIP), per packet the client is dst.
 */
export class ProxyHeaderTemplate {
  readonly family: 4 | 6;
  /** Header octets (with the auth TLV when `withAuth`). */
  readonly length: number;
  readonly withAuth: boolean;
  private readonly proto: Uint8Array;
  private readonly varAddr: number; // offset of the variable address within the header
  private readonly varPort: number;
  private readonly ring: Buffer[];
  private ringNext = 0;

  /**
   * Throws ERR_PROXY_ADDRESS / ERR_PROXY_PORT for a bad fixed address or port. `ringSize`
   * (default 256) sizes the pool used by {@link next}.
   */
  constructor(opts: {
    fixedAddr: string;
    fixedPort: number;
    fixedSide: 'src' | 'dst';
    withAuth?: boolean;
    ringSize?: number;
  }) {
    const fixed = addressBytes(opts.fixedAddr, 'fixedAddr');
    const port = checkPort(opts.fixedPort, 'fixedPort');
    this.family = fixed.length === 4 ? 4 : 6;
    this.withAuth = opts.withAuth === true;
    this.length = proxyHeaderLength(this.family, this.withAuth);
    this.proto = new Uint8Array(this.length);
    const zero = new Uint8Array(fixed.length);
    const alen = fixed.length;
    if (opts.fixedSide === 'dst') {
      writeProxyHeader(this.proto, 0, zero, 0, fixed, port, this.withAuth);
      this.varAddr = OFF_ADDR;
      this.varPort = OFF_ADDR + 2 * alen;
    } else {
      writeProxyHeader(this.proto, 0, fixed, port, zero, 0, this.withAuth);
      this.varAddr = OFF_ADDR + alen;
      this.varPort = OFF_ADDR + 2 * alen + 2;
    }
    const ringSize = opts.ringSize ?? 256;
    const slab = Buffer.alloc(ringSize * this.length);
    this.ring = [];
    for (let i = 0; i < ringSize; i++) this.ring.push(slab.subarray(i * this.length, (i + 1) * this.length));
  }

  /**
   * Writes the header at `out[offset]` with the variable side set to `addr`:`port`. Returns the
   * offset after the header, or -1 when `addr` is not an IP literal of the template's family
   * (or IPv4-mapped '::ffff:a.b.c.d' for an IPv4 template) or `out` has no room. No allocation.
   */
  write(out: Uint8Array, offset: number, addr: string, port: number): number {
    if (offset < 0 || offset + this.length > out.length) return -1;
    out.set(this.proto, offset);
    const at = offset + this.varAddr;
    if (this.family === 4) {
      if (!parseIPv4Into(addr, out, at)) {
        // dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
        if (addr.length < 14 || !addr.startsWith('::ffff:') || !parseIPv4Into(addr, out, at, 7)) return -1;
      }
    } else if (!parseIPv6Into(addr, out, at)) {
      return -1;
    }
    out[offset + this.varPort] = port >> 8;
    out[offset + this.varPort + 1] = port & 0xff;
    return offset + this.length;
  }

  /**
   * Writes into the next slot of a preallocated ring and returns that slot (a view), or
   * undefined if `addr` does not parse. A slot is overwritten `ringSize` calls later: use it
   * for `socket.send([header, datagram])` only while the socket's send queue is short
   * (`socket.getSendQueueCount() < ringSize`; node:dgram usually sends synchronously), else
   * copy the header. No allocation.
   */
  next(addr: string, port: number): Buffer | undefined {
    const slot = this.ring[this.ringNext];
    this.ringNext = this.ringNext + 1 === this.ring.length ? 0 : this.ringNext + 1;
    return this.write(slot, 0, addr, port) < 0 ? undefined : slot;
  }
}
