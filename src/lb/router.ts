// The pure routing decision (docs/lb.md "A datagram's way", step 2): datagram + 4-tuple + state -> backend index
// and reason. No I/O, no allocation, no exceptions per packet. The forwarder, `quic-lb route`
// and the tests all call this same `decide()`.
import {
  MAX_CONFIG_ID,
  MAX_SERVER_ID_LENGTH,
  QuicLbDecoder,
  UNKNOWN_CONFIG,
  UNROUTABLE,
  configFromSpec,
  configIdOf,
} from '../cid/index.js';
import { HeaderForm, PacketHeader, PacketType, parseHeader } from '../wire/index.js';
import type { LbConfig } from './config.js';
import { type BackendStats, Counters } from './counters.js';
import { buildMaglevTable } from './maglev.js';
import { CID_RESULT_COUNT, CidResult, Reason } from './reasons.js';
import { SipHash24 } from './siphash.js';

/** Server IDs up to 6 octets are exact integers (< 2^53) and need no byte comparison. */
const EXACT_KEY_OCTETS = 6;

/**
 * The 4-tuple of an inbound datagram, reused across packets. `client` and `vip` hold 4 (family
 * 4) or 16 (family 6) address octets. Hash input (fixed layout, so every LB computes the same):
 * client address | client port (2, big-endian) | VIP address | VIP port (2, big-endian).
 */
export class FourTuple {
  family: 4 | 6 = 4;
  readonly client = new Uint8Array(16);
  clientPort = 0;
  readonly vip = new Uint8Array(16);
  vipPort = 0;
}

/** The result of `decide()`, reused across packets. */
export class Decision {
  /** Index into `RouterState.backends`, or -1 when the datagram is dropped. */
  backend = -1;
  /** A `Reason`. */
  reason: number = Reason.DROPPED_MALFORMED;
  /** DCID codepoint 0..7, or -1 when there was no CID octet. */
  codepoint = -1;
  /** A `CidResult` counted per codepoint, or -1 when not counted (client-chosen Initial DCIDs). */
  cidResult = -1;
  /** The decoded server ID's config id, or -1. */
  configId = -1;
}

/** A backend as the router sees it. */
export interface RouterBackend {
  readonly name: string;
  readonly index: number;
  readonly weight: number;
  readonly stats: BackendStats;
}

/** Server ID -> backend index for one config. Keys are the big-endian integer of the first
 *  6 octets; longer server IDs are confirmed by comparing the remaining octets. */
class ServerIdTable {
  private readonly map = new Map<number, number>();
  private readonly longIds: Uint8Array[] = [];
  private readonly longBackends: number[] = [];
  private readonly longNext: number[] = [];

  constructor(private readonly length: number) {}

  add(serverId: Uint8Array, backend: number): void {
    const key = keyOf(serverId);
    if (this.length <= EXACT_KEY_OCTETS) {
      this.map.set(key, backend);
      return;
    }
    const entry = this.longIds.length;
    this.longIds.push(Uint8Array.from(serverId));
    this.longBackends.push(backend);
    this.longNext.push(this.map.get(key) ?? -1);
    this.map.set(key, entry);
  }

  /** Backend index for the server ID in `sid[0..length)`, or -1. */
  lookup(sid: Uint8Array): number {
    const v = this.map.get(keyOf6(sid, this.length));
    if (v === undefined) return -1;
    if (this.length <= EXACT_KEY_OCTETS) return v;
    for (let e = v; e >= 0; e = this.longNext[e]) {
      const id = this.longIds[e];
      let i = EXACT_KEY_OCTETS;
      while (i < this.length && id[i] === sid[i]) i++;
      if (i === this.length) return this.longBackends[e];
    }
    return -1;
  }
}

function keyOf(sid: Uint8Array): number {
  return keyOf6(sid, sid.length);
}

function keyOf6(sid: Uint8Array, length: number): number {
  const n = length < EXACT_KEY_OCTETS ? length : EXACT_KEY_OCTETS;
  let k = 0;
  for (let i = 0; i < n; i++) k = k * 256 + sid[i];
  return k;
}

/**
 * What the LB does with a backend, from its health (docs/lb.md "Health and drain policy"):
 * - `up`: new flows (fallback table) and its CID-routed datagrams;
 * - `draining`: it answered the probe "draining", or has weight 0 in spirit: no new flows, but
 *   every datagram whose CID names it still goes to it (a drain never detours a live connection);
 * - `unreachable`: it failed `fall` probes in a row: no new flows, CID-routed datagrams still go to
 *   it for `downGraceMs` (probe loss is not death);
 * - `down`: unreachable for longer than the grace: its CID-routed datagrams take the fallback
 *   (reason `fallback_backend_down`), where a live backend can answer with a stateless reset.
 */
export const BACKEND_STATES = ['up', 'draining', 'unreachable', 'down'] as const;
export type BackendState = (typeof BACKEND_STATES)[number];

/** Everything `decide()` reads. Immutable once built; reloads and health changes build a new one. */
export interface RouterState {
  readonly config: LbConfig;
  readonly decoder: QuicLbDecoder;
  /** Per codepoint 0..6, the server-ID table of that config (undefined if none). */
  readonly serverIds: readonly (ServerIdTable | undefined)[];
  readonly backends: readonly RouterBackend[];
  /** 1 where datagrams whose CID names the backend go to it (every state but `down`), per backend index. */
  readonly routable: Uint8Array;
  /** Maglev slots -> backend index over the `up` backends with weight > 0 (empty: none). */
  readonly table: Int32Array;
  readonly hasher: SipHash24;
  readonly counters: Counters;
  // Scratch, reused by every decide() on this state.
  readonly header: PacketHeader;
  readonly serverIdScratch: Uint8Array;
  readonly tupleScratch: Uint8Array;
  readonly decision: Decision;
}

/** Health view: backend name -> state. Names missing from it take `initialState()`. */
export type HealthView = ReadonlyMap<string, BackendState>;

/**
 * Builds the router state of a validated config and a health view. `counters` supplies the
 * per-backend stats objects (kept across reloads by name). Deterministic: the Maglev table
 * depends only on the healthy backends' names and weights, the table size and nothing else.
 */
export function buildRouterState(
  config: LbConfig,
  health: HealthView = new Map(),
  counters: Counters = new Counters(),
): RouterState {
  const decoder = new QuicLbDecoder();
  const serverIds: (ServerIdTable | undefined)[] = new Array(MAX_CONFIG_ID + 1).fill(undefined);
  for (const spec of config.quicLb) {
    decoder.setConfig(configFromSpec(spec));
    serverIds[spec.configId] = new ServerIdTable(spec.serverIdLength);
  }
  const backends: RouterBackend[] = config.backends.map((b, index) => ({
    name: b.name,
    index,
    weight: b.weight,
    stats: counters.backend(b.name),
  }));
  config.backends.forEach((b, index) => {
    for (const { configId, serverId } of b.serverIds) serverIds[configId]?.add(Buffer.from(serverId, 'hex'), index);
  });
  const states = statesOf(config, health);
  return {
    config,
    decoder,
    serverIds,
    backends,
    routable: routableOf(states),
    table: fallbackTable(backends, states, config.fallback.tableSize),
    hasher: new SipHash24(Buffer.from(config.fallback.key, 'hex')),
    counters,
    header: new PacketHeader(),
    serverIdScratch: new Uint8Array(MAX_SERVER_ID_LENGTH + 1),
    tupleScratch: new Uint8Array(36),
    decision: new Decision(),
  };
}

/** The same state with another health view (new routable set and fallback table; rest shared). */
export function withHealth(state: RouterState, health: HealthView): RouterState {
  const states = statesOf(state.config, health);
  return {
    ...state,
    routable: routableOf(states),
    table: fallbackTable(state.backends, states, state.config.fallback.tableSize),
    header: new PacketHeader(),
    decision: new Decision(),
  };
}

/** The state of a backend the view does not know yet: always up for type 'none', else `health.initial`. */
export function initialState(config: LbConfig, backend: LbConfig['backends'][number]): BackendState {
  return backend.health.type === 'none' || config.health.initial === 'up' ? 'up' : 'down';
}

/** The state of every backend index: the view's answer, else `initialState()`. */
function statesOf(config: LbConfig, health: HealthView): BackendState[] {
  return config.backends.map((b) => health.get(b.name) ?? initialState(config, b));
}

function routableOf(states: readonly BackendState[]): Uint8Array {
  return Uint8Array.from(states, (s) => (s === 'down' ? 0 : 1));
}

function fallbackTable(backends: readonly RouterBackend[], states: readonly BackendState[], size: number): Int32Array {
  // Only `up` backends take new flows. Sorted by name (code unit order, locale-independent) so
  // every LB builds the same table.
  const healthy = backends
    .filter((b) => states[b.index] === 'up' && b.weight > 0)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const slots = buildMaglevTable(healthy, size);
  for (let i = 0; i < slots.length; i++) slots[i] = healthy[slots[i]].index;
  return slots;
}

/** Maglev slot of a 4-tuple under `state`'s fallback key (exported for tests and `route`). */
export function fallbackSlot(tuple: FourTuple, state: RouterState): number {
  const s = state.tupleScratch;
  const n = tuple.family === 4 ? 4 : 16;
  let o = 0;
  for (let i = 0; i < n; i++) s[o++] = tuple.client[i];
  s[o++] = tuple.clientPort >>> 8;
  s[o++] = tuple.clientPort & 0xff;
  for (let i = 0; i < n; i++) s[o++] = tuple.vip[i];
  s[o++] = tuple.vipPort >>> 8;
  s[o++] = tuple.vipPort & 0xff;
  return state.hasher.hashMod(s, 0, o, state.config.fallback.tableSize);
}

/**
 * Decides where `datagram` goes (draft-21 §4.2 steps 1 and 5; this LB keeps no flow tables):
 * 1. parse the RFC 8999 invariant header (src/wire parseHeader); not even that -> DROPPED_MALFORMED;
 * 2. DCID: long header -> DCIL octets at offset 6; short header -> from offset 1, length implied
 *    by the config its first octet names (the rest of the datagram is `available`);
 * 3. codepoint 0b111 / no config / too short / unknown server ID / backend `down` -> fallback,
 *    otherwise ROUTED to the server ID's backend (also when it is draining or unreachable: a
 *    live connection is never detoured while its backend may still hold it);
 * 4. fallback: SipHash-2-4 of the 4-tuple into the Maglev table of healthy backends. The reason
 *    names the packet class first (client Initial/0-RTT, Version Negotiation, unknown version)
 *    and the CID problem otherwise; a dead backend is always FALLBACK_BACKEND_DOWN.
 * Writes into and returns `out` (default: the state's scratch Decision). Never throws.
 */
export function decide(
  datagram: Uint8Array,
  tuple: FourTuple,
  state: RouterState,
  out: Decision = state.decision,
): Decision {
  out.backend = -1;
  out.codepoint = -1;
  out.cidResult = -1;
  out.configId = -1;
  const h = state.header;
  if (!parseHeader(datagram, h)) {
    out.reason = Reason.DROPPED_MALFORMED;
    return out;
  }
  const off = h.dcidOffset;
  const available = h.form === HeaderForm.LONG ? h.dcidLength : datagram.length - off;
  let reason: number;
  if (available <= 0) {
    reason = Reason.FALLBACK_TOO_SHORT;
  } else {
    out.codepoint = configIdOf(datagram[off]);
    const id = state.decoder.decode(datagram, off, available, state.serverIdScratch);
    if (id === UNROUTABLE) {
      reason = Reason.FALLBACK_UNROUTABLE_0B111;
      out.cidResult = CidResult.UNKNOWN_CONFIG;
    } else if (id === UNKNOWN_CONFIG) {
      reason = Reason.FALLBACK_UNKNOWN_CONFIG;
      out.cidResult = CidResult.UNKNOWN_CONFIG;
    } else if (id < 0) {
      reason = Reason.FALLBACK_TOO_SHORT;
      out.cidResult = CidResult.TOO_SHORT;
    } else {
      out.configId = id;
      const b = (state.serverIds[id] as ServerIdTable).lookup(state.serverIdScratch);
      if (b < 0) {
        reason = Reason.FALLBACK_UNKNOWN_SERVER_ID;
        out.cidResult = CidResult.UNKNOWN_SERVER_ID;
      } else if (state.routable[b] === 0) {
        reason = Reason.FALLBACK_BACKEND_DOWN;
        out.cidResult = CidResult.BACKEND_DOWN;
      } else {
        out.backend = b;
        out.reason = Reason.ROUTED;
        out.cidResult = CidResult.ROUTED;
        return out;
      }
    }
  }
  if (reason !== Reason.FALLBACK_BACKEND_DOWN && h.form === HeaderForm.LONG) {
    const t = h.packetType;
    if (t === PacketType.INITIAL || t === PacketType.ZERO_RTT) {
      // Client-chosen DCID (RFC 9000 §7.2): not a CID problem, so not counted per codepoint.
      reason = Reason.FALLBACK_INITIAL;
      out.cidResult = -1;
    } else if (t === PacketType.VERSION_NEGOTIATION) reason = Reason.FALLBACK_VERSION_NEGOTIATION;
    else if (t === PacketType.UNKNOWN_VERSION_LONG) reason = Reason.FALLBACK_UNKNOWN_VERSION;
  }
  const table = state.table;
  if (table.length === 0) {
    out.reason = Reason.DROPPED_NO_BACKEND;
    return out;
  }
  out.reason = reason;
  out.backend = table[fallbackSlot(tuple, state)];
  return out;
}

/**
 * Bumps the counters of one decided datagram of `bytes` octets: reason, codepoint result, and
 * the backend's stats when forwarded. Plain number increments only.
 */
export function countDecision(state: RouterState, d: Decision, bytes: number): void {
  const c = state.counters;
  c.reasonPackets[d.reason]++;
  c.reasonBytes[d.reason] += bytes;
  if (d.cidResult >= 0) c.cid[d.codepoint * CID_RESULT_COUNT + d.cidResult]++;
  if (d.backend >= 0) {
    const s = state.backends[d.backend].stats;
    s.packetsIn++;
    s.bytesIn += bytes;
    if (d.reason === Reason.ROUTED) s.packetsRouted++;
  }
}

/** `decide()` followed by `countDecision()`: what the forwarder does per datagram. */
export function route(datagram: Uint8Array, tuple: FourTuple, state: RouterState): Decision {
  const d = decide(datagram, tuple, state);
  countDecision(state, d, datagram.length);
  return d;
}
