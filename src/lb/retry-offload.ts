// Retry offload at the LB (draft-ietf-quic-retry-offload-00 §4, shared-state; docs/retry.md): the
// LB answers token-less client Initials with a Retry whose token it seals with the fleet's key,
// and forwards only Initials whose Retry token opens. Spoofed sources never see a token, so their
// Initials never reach a backend. Stateless: every LB and backend holding the key ring accepts
// every token. Per datagram: no allocation except the Retry being sent (and the token opening
// of src/wire), no timers (a periodic tick turns the load-triggered mode off).
import type { Logger } from 'pino';
import {
  type QuicLbConfig,
  MAX_CID_LENGTH,
  RandomPool,
  UNROUTABLE_CONFIG_ID,
  configFromSpec,
  encodeConnectionIdInto,
} from '../cid/index.js';
import {
  HeaderForm,
  type InitialToken,
  MIN_CLIENT_INITIAL_DCID_LENGTH,
  MIN_INITIAL_DATAGRAM_SIZE,
  OpenedRetryToken,
  PacketType,
  type PacketHeader,
  RETRY_TOKEN_ERR_EXPIRED,
  RETRY_TOKEN_ERR_NEW_TOKEN,
  RETRY_TOKEN_ERR_ODCID,
  RETRY_TOKEN_ERR_PORT,
  RETRY_TOKEN_OK,
  RetryTokenKeys,
  encodeRetry,
  initialTokenOf,
  openRetryToken,
  sealRetryToken,
} from '../wire/index.js';
import { type LbConfig, type RetrySpec, retryOf } from './config.js';
import type { RetryCounters } from './counters.js';
import { RETRY_TOKEN_UNVERIFIED, Reason, RetryDrop } from './reasons.js';
import type { Decision, FourTuple } from './router.js';

/** RFC 9000 §17.2.2: the first bit of a token says who made it; 1 = NEW_TOKEN (a backend's). */
const NEW_TOKEN_BIT = 0x80;
/** The rate window of the load-triggered mode: two buckets of this many ms (a sliding estimate). */
const RATE_WINDOW_MS = 1000;
/** How often the load-triggered mode checks whether a busy VIP went quiet. */
export const RETRY_TICK_MS = 250;
/** draft-21 §3.2: the first octet of an unroutable CID carries codepoint 0b111. */
const UNROUTABLE_FIRST_OCTET = UNROUTABLE_CONFIG_ID << 5;

/** Sends a datagram to a client from VIP socket `vipIndex`; false when refused (counted by the sender). */
export type VipSender = (msg: Uint8Array, address: string, port: number, vipIndex: number) => boolean;

/**
 * The Retry SCID of one backend: a QUIC-LB CID of the first `quicLb` config for which it has a
 * server ID, fresh random nonce each time, so the client's next Initial (DCID = this SCID) is
 * routed by CID to that backend by any LB of the fleet. Undefined when no config gives one of at
 * least 8 octets (RFC 9000 §7.2 asks clients for 8 in the DCID of a first Initial; the Retry SCID
 * becomes that DCID): then the SCID is random with codepoint 0b111 (`randomScid`).
 */
interface Minter {
  readonly config: QuicLbConfig;
  readonly serverId: Uint8Array;
  readonly nonce: Uint8Array;
  readonly out: Uint8Array;
}

/** What changes with a config: built at each commit, read by the packet path. */
interface Plan {
  readonly spec: RetrySpec;
  readonly keys: RetryTokenKeys;
  readonly versions: readonly number[];
  /** Per backend index. */
  readonly minters: readonly (Minter | undefined)[];
  readonly randomScid: Uint8Array;
}

/** The load-triggered state of one VIP in this process. */
class VipState {
  active = false;
  /** When it last turned on or off (ms since the epoch). */
  since = 0;
  /** Until then (ms), Retry tokens are still opened after turning off (the draft's transition). */
  transitionUntil = 0;
  /** Sliding rate of token-less Initials: the current bucket and the one before it. */
  bucketStart = 0;
  current = 0;
  previous = 0;
  /** Last time the rate was seen at or above `offPerSecond`. */
  lastBusy = 0;
  /** A 4-octet view of the VIP tuple's client address (the token's IPv4 form). */
  constructor(readonly client4: Uint8Array) {}

  /** Token-less Initials per second: the current bucket plus the part of the previous one still in the window. */
  rate(now: number): number {
    const e = now - this.bucketStart;
    if (e >= 2 * RATE_WINDOW_MS || e < 0) {
      this.previous = 0;
      this.current = 0;
      this.bucketStart = now;
    } else if (e >= RATE_WINDOW_MS) {
      this.previous = this.current;
      this.current = 0;
      this.bucketStart += RATE_WINDOW_MS;
    }
    const f = (now - this.bucketStart) / RATE_WINDOW_MS;
    return this.previous * (1 - f) + this.current;
  }
}

/**
 * The offload of one forwarding process. `configure()` at every committed config; the forwarder
 * calls `intercept()` only while `spec.mode` is not `off` (one branch otherwise).
 */
export class RetryOffload {
  private plan: Plan | undefined;
  private readonly vips: VipState[] = [];
  private readonly token: InitialToken = { tokenOffset: 0, tokenLength: 0 };
  private readonly opened = new OpenedRetryToken();
  /** DCID copies by length (0..20), for `openRetryToken` without a view per datagram. */
  private readonly dcids = Array.from({ length: MAX_CID_LENGTH + 1 }, (_, n) => new Uint8Array(n));
  private readonly random = new RandomPool();

  constructor(
    private readonly counters: RetryCounters,
    private readonly logger: Logger,
    private readonly send: VipSender,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Registers VIP index `vips.length` (its reused 4-tuple); on at once in mode `always`. */
  addVip(tuple: FourTuple): void {
    const v = this.vips.length;
    this.vips.push(new VipState(tuple.client.subarray(0, 4)));
    this.counters.active.push(0);
    this.counters.since.push(0);
    if (this.plan?.spec.mode === 'always') this.setActive(v, true, this.clock(), 'mode always');
  }

  /**
   * Installs the `retry` settings of `config` (keys, versions, thresholds, Retry SCIDs of its
   * backends). Returns whether the packet path must call `intercept()` (mode not off). Mode
   * `always` turns every VIP on; `off` turns every VIP off; `load` keeps each VIP's state, an
   * active VIP then turns off after `offAfterMs` of quiet. Throws only on a config
   * `validateConfig` refused.
   */
  configure(config: LbConfig): boolean {
    const spec = retryOf(config);
    const now = this.clock();
    if (spec.mode === 'off') {
      this.plan = undefined;
      for (let v = 0; v < this.vips.length; v++) this.setActive(v, false, now, 'mode off');
      return false;
    }
    this.plan = buildPlan(config, spec);
    for (let v = 0; v < this.vips.length; v++) {
      if (spec.mode === 'always') this.setActive(v, true, now, 'mode always');
      else this.vips[v].lastBusy = now;
    }
    return true;
  }

  /**
   * Load-triggered mode: turns off each VIP whose rate stayed under `offPerSecond` for
   * `offAfterMs` (then opens tokens for `transitionMs` more). Called every RETRY_TICK_MS.
   */
  tick(): void {
    const p = this.plan;
    if (p === undefined || p.spec.mode !== 'load') return;
    const now = this.clock();
    const { offPerSecond, offAfterMs } = p.spec.load;
    for (let v = 0; v < this.vips.length; v++) {
      const s = this.vips[v];
      if (!s.active) continue;
      if (s.rate(now) >= offPerSecond && offPerSecond > 0) s.lastBusy = now;
      else if (now - s.lastBusy >= offAfterMs) this.setActive(v, false, now, 'quiet');
    }
  }

  /**
   * One client datagram `decide()` sent to backend `d.backend` (>= 0), its header parsed in `h`.
   * Returns true when the offload consumed it (answered with a Retry, or dropped and counted):
   * the caller then does not forward it. Only v1/v2 Initials (of `versions`) are looked at:
   * - DCID routed (a handshake the backend already answered, or the client's next Initial to a
   *   Retry SCID): forwarded; a Retry token on it is opened while the offload is active or in
   *   transition, and dropped only when it opens under this DCID but is expired, for another
   *   port or malformed (only the Initial answering our Retry opens with RSCID = its DCID);
   * - no token: counted for the load rate; while active, a Retry (or a drop under 1200 octets);
   * - a NEW_TOKEN token (first bit 1): forwarded untouched (the backend that issued it checks it);
   * - a Retry token, while active or in transition: forwarded if it opens, else dropped.
   * Never throws.
   */
  intercept(msg: Buffer, h: PacketHeader, d: Decision, t: FourTuple, address: string, vipIndex: number): boolean {
    const p = this.plan;
    if (p === undefined || h.form !== HeaderForm.LONG || h.packetType !== PacketType.INITIAL) return false;
    if (!p.versions.includes(h.version)) return false;
    const tok = this.token;
    const routed = d.reason === Reason.ROUTED;
    const s = this.vips[vipIndex];
    const now = this.clock();
    if (!initialTokenOf(msg, tok)) return !routed && s.active && this.drop(RetryDrop.MALFORMED);
    if (tok.tokenLength === 0) {
      if (routed) return false;
      if (p.spec.mode === 'load') this.countTokenless(p, s, vipIndex, now);
      if (!s.active) return false;
      if (msg.length < MIN_INITIAL_DATAGRAM_SIZE) return this.drop(RetryDrop.SMALL_DATAGRAM);
      return this.answer(p, msg, h, d, t, address, vipIndex, now);
    }
    const c = this.counters;
    if ((msg[tok.tokenOffset] & NEW_TOKEN_BIT) !== 0) {
      c.tokens[-RETRY_TOKEN_ERR_NEW_TOKEN]++;
      return !routed && s.active && msg.length < MIN_INITIAL_DATAGRAM_SIZE && this.drop(RetryDrop.SMALL_DATAGRAM);
    }
    if (!s.active && now >= s.transitionUntil) {
      c.tokens[RETRY_TOKEN_UNVERIFIED]++;
      return false;
    }
    if (!routed && s.active && msg.length < MIN_INITIAL_DATAGRAM_SIZE) return this.drop(RetryDrop.SMALL_DATAGRAM);
    const r = this.open(p, msg, h, t, vipIndex, now);
    if (r === RETRY_TOKEN_OK) {
      c.tokens[0]++;
      return false;
    }
    if (routed && r !== RETRY_TOKEN_ERR_EXPIRED && r !== RETRY_TOKEN_ERR_PORT && r !== RETRY_TOKEN_ERR_ODCID) {
      c.tokens[RETRY_TOKEN_UNVERIFIED]++;
      return false;
    }
    c.tokens[-r]++;
    return this.drop(RetryDrop.INVALID_TOKEN);
  }

  /** Whether the offload is active on VIP index `v` in this process. */
  isActive(v: number): boolean {
    return this.vips[v]?.active === true;
  }

  private drop(reason: number): true {
    this.counters.dropped[reason]++;
    return true;
  }

  /** Opens the Initial's Retry token with RSCID = its DCID (draft §4.1); an RETRY_TOKEN_* code. */
  private open(p: Plan, msg: Buffer, h: PacketHeader, t: FourTuple, vipIndex: number, now: number): number {
    const dcid = this.dcids[h.dcidLength];
    for (let i = 0; i < h.dcidLength; i++) dcid[i] = msg[h.dcidOffset + i];
    const ip = t.family === 4 ? this.vips[vipIndex].client4 : t.client;
    const tok = this.token;
    return openRetryToken(
      p.keys,
      msg,
      tok.tokenOffset,
      tok.tokenLength,
      ip,
      t.clientPort,
      dcid,
      Math.floor(now / 1000),
      this.opened,
    );
  }

  /** Counts a token-less Initial in the VIP's rate and turns the VIP on above `onPerSecond`. */
  private countTokenless(p: Plan, s: VipState, vipIndex: number, now: number): void {
    const r = s.rate(now);
    s.current++;
    const rate = r + 1;
    if (rate >= p.spec.load.offPerSecond && p.spec.load.offPerSecond > 0) s.lastBusy = now;
    if (!s.active && rate > p.spec.load.onPerSecond) {
      s.lastBusy = now;
      this.setActive(vipIndex, true, now, 'load');
    }
  }

  /**
   * Sends the Retry for a token-less Initial (RFC 9000 §17.2.5; draft §4): version of the Initial,
   * DCID = its SCID, SCID = the Retry SCID of the backend `decide()` chose, ODCID = its DCID,
   * token sealed for the client's address and port. ~130 octets for an Initial of >= 1200: the
   * offload never amplifies. Never throws (a throw is counted `error`).
   */
  private answer(
    p: Plan,
    msg: Buffer,
    h: PacketHeader,
    d: Decision,
    t: FourTuple,
    address: string,
    vipIndex: number,
    now: number,
  ): true {
    if (h.dcidLength < MIN_CLIENT_INITIAL_DCID_LENGTH) return this.drop(RetryDrop.SHORT_DCID);
    let retry: Buffer;
    try {
      const scid = this.retryScid(p, d.backend);
      const odcid = msg.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength);
      const token = sealRetryToken(p.keys, {
        clientIp: t.family === 4 ? this.vips[vipIndex].client4 : t.client,
        clientPort: t.clientPort,
        odcid,
        rscid: scid,
        expiresAt: Math.floor(now / 1000) + p.spec.tokenLifetimeSeconds,
      });
      const dcid = msg.subarray(h.scidOffset, h.scidOffset + h.scidLength);
      retry = encodeRetry({ version: h.version, dcid, scid, token, odcid });
    } catch {
      return this.drop(RetryDrop.ERROR);
    }
    if (this.send(retry, address, t.clientPort, vipIndex)) {
      const c = this.counters;
      c.sent++;
      c.sentBytes += retry.length;
      c.answeredBytes += msg.length;
    }
    return true;
  }

  /** A fresh Retry SCID for backend index `b` (see `Minter`); valid until the next call. */
  private retryScid(p: Plan, b: number): Uint8Array {
    const m = p.minters[b];
    if (m !== undefined) {
      this.random.fill(m.nonce, 0, m.nonce.length);
      encodeConnectionIdInto(m.config, m.serverId, m.nonce, m.out, 0);
      return m.out;
    }
    const out = p.randomScid;
    this.random.fill(out, 1, out.length - 1);
    return out;
  }

  /** Turns VIP `v` on or off (logged once, counted); nothing when it already is. */
  private setActive(v: number, on: boolean, now: number, why: string): void {
    const s = this.vips[v];
    if (s.active === on) return;
    s.active = on;
    s.since = now;
    if (!on) s.transitionUntil = now + (this.plan?.spec.load.transitionMs ?? 0);
    const c = this.counters;
    c.modeChanges++;
    c.active[v] = on ? 1 : 0;
    c.since[v] = now;
    this.logger.info({ vip: v, active: on, why }, on ? 'retry offload on' : 'retry offload off');
  }
}

/** The packet path's view of a config's `retry` section (mode not off: keys present). */
function buildPlan(config: LbConfig, spec: RetrySpec): Plan {
  const keys = new RetryTokenKeys(
    spec.keys.map((k) => ({ sequence: k.sequence, key: Buffer.from(k.key, 'hex'), iv: Buffer.from(k.iv, 'hex') })),
  );
  const configs = config.quicLb.map((q) => ({ spec: q, config: configFromSpec(q) }));
  const minters = config.backends.map((b): Minter | undefined => {
    for (const { spec: q, config: qc } of configs) {
      const sid = b.serverIds.find((s) => s.configId === q.configId);
      if (sid === undefined || qc.cidLength < MIN_CLIENT_INITIAL_DCID_LENGTH) continue;
      return {
        config: qc,
        serverId: Buffer.from(sid.serverId, 'hex'),
        nonce: new Uint8Array(q.nonceLength),
        out: new Uint8Array(qc.cidLength),
      };
    }
    return undefined;
  });
  const randomLength = Math.max(MIN_CLIENT_INITIAL_DCID_LENGTH, ...configs.map((c) => c.config.cidLength));
  const randomScid = new Uint8Array(randomLength);
  // Codepoint 0b111 with the self-encoded length (draft-21 §3.2): no LB decodes it, so the next
  // Initial takes the 4-tuple hash, to the same backend while the health view is unchanged.
  randomScid[0] = UNROUTABLE_FIRST_OCTET | (randomLength - 1);
  return { spec, keys, versions: spec.versions, minters, randomScid };
}
