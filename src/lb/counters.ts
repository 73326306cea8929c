// Plain numeric counters bumped on the packet path and read at scrape time (docs/design.md §4).
// Workers ship `snapshot()`s to the primary, which sums them (see metrics.ts).
import {
  ANYCAST_PATH_COUNT,
  CID_RESULT_COUNT,
  CODEPOINT_COUNT,
  MAX_HMAC_KEYS,
  REASON_COUNT,
  RETRY_DROP_COUNT,
  RETRY_TOKEN_RESULT_COUNT,
  RETURN_REJECT_COUNT,
  SEND_ERROR_COUNT,
} from './reasons.js';

/** Per-backend traffic, kept across reloads for a backend of the same name. */
export class BackendStats {
  /** Datagrams and octets (QUIC payload, without the PROXY header) handed to this backend's
   *  socket: a datagram dropped because its send queue was full is not among them. */
  packetsIn = 0;
  bytesIn = 0;
  /** Datagrams and octets this backend sent back to clients through the return port. */
  packetsOut = 0;
  bytesOut = 0;
  /** Datagrams routed to it by its server ID (the rest came by fallback). */
  packetsRouted = 0;
  /** Datagrams for this backend dropped because its socket's send queue was full. */
  packetsDropped = 0;
}

/** JSON form of `Counters`, for IPC between cluster workers and the primary. */
export interface CounterSnapshot {
  reasonPackets: number[];
  reasonBytes: number[];
  cid: number[];
  returnRejects: number[];
  returnPackets: number;
  returnBytes: number;
  sendErrors: number[];
  returnAuth: number[];
  anycast: number[];
  /** Retry offload (docs/retry.md); absent in snapshots of older workers. */
  retry?: RetrySnapshot;
  backends: Record<string, [number, number, number, number, number, number]>;
}

/** The Retry offload's counters in a snapshot (see `RetryCounters`). */
export interface RetrySnapshot {
  sent: number;
  sentBytes: number;
  answeredBytes: number;
  tokens: number[];
  dropped: number[];
  modeChanges: number;
  active: number[];
  since: number[];
}

/**
 * The Retry offload's counters (src/lb/retry-offload.ts). `active[v]` is 1 while the offload is
 * active on VIP index `v` in this process (summed over workers: the processes where it is);
 * `since[v]` when it last turned on or off there (ms since the epoch; the latest over workers).
 */
export class RetryCounters {
  /** Retry packets handed to the kernel, their octets, and the octets of the Initials they answered. */
  sent = 0;
  sentBytes = 0;
  answeredBytes = 0;
  /** Tokens seen on Initials, by RETRY_TOKEN_RESULT_NAMES. */
  readonly tokens = new Float64Array(RETRY_TOKEN_RESULT_COUNT);
  /** Initials dropped by the offload, by `RetryDrop`. */
  readonly dropped = new Float64Array(RETRY_DROP_COUNT);
  modeChanges = 0;
  readonly active: number[] = [];
  readonly since: number[] = [];

  snapshot(): RetrySnapshot {
    return {
      sent: this.sent,
      sentBytes: this.sentBytes,
      answeredBytes: this.answeredBytes,
      tokens: Array.from(this.tokens),
      dropped: Array.from(this.dropped),
      modeChanges: this.modeChanges,
      active: [...this.active],
      since: [...this.since],
    };
  }
}

function addRetry(a: RetrySnapshot, b: RetrySnapshot): void {
  a.sent += b.sent;
  a.sentBytes += b.sentBytes;
  a.answeredBytes += b.answeredBytes;
  for (let i = 0; i < a.tokens.length && i < b.tokens.length; i++) a.tokens[i] += b.tokens[i];
  for (let i = 0; i < a.dropped.length && i < b.dropped.length; i++) a.dropped[i] += b.dropped[i];
  a.modeChanges += b.modeChanges;
  b.active.forEach((v, i) => (a.active[i] = (a.active[i] ?? 0) + v));
  b.since.forEach((v, i) => (a.since[i] = Math.max(a.since[i] ?? 0, v)));
}

/** Every counter of one forwarding process. */
export class Counters {
  /** Inbound (client -> VIP) datagrams and octets by `Reason`. Their sum is every datagram received. */
  readonly reasonPackets = new Float64Array(REASON_COUNT);
  readonly reasonBytes = new Float64Array(REASON_COUNT);
  /** Inbound datagrams by DCID codepoint (0..7) x `CidResult`: index `codepoint * CID_RESULT_COUNT + result`. */
  readonly cid = new Float64Array(CODEPOINT_COUNT * CID_RESULT_COUNT);
  /** Return-port datagrams refused, by `ReturnReject`. */
  readonly returnRejects = new Float64Array(RETURN_REJECT_COUNT);
  /** Return-port datagrams accepted and sent to the client from the VIP. */
  returnPackets = 0;
  returnBytes = 0;
  /** Datagrams not sent, by `SendError` (checks before the send, and socket 'error' events). */
  readonly sendErrors = new Float64Array(SEND_ERROR_COUNT);
  /** Return-path datagrams authenticated, by the index of the key that verified (0 = current). */
  readonly returnAuth = new Float64Array(MAX_HMAC_KEYS);
  /** Server mode only: VIP datagrams by `AnycastPath` (local, peer, dropped). */
  readonly anycast = new Float64Array(ANYCAST_PATH_COUNT);
  /** Retry offload (docs/retry.md). */
  readonly retry = new RetryCounters();
  private readonly backendStats = new Map<string, BackendStats>();

  /** The stats object of backend `name` (created on first use; stable across reloads). */
  backend(name: string): BackendStats {
    let s = this.backendStats.get(name);
    if (!s) {
      s = new BackendStats();
      this.backendStats.set(name, s);
    }
    return s;
  }

  /** Total inbound datagrams counted (the sum over reasons). */
  totalPackets(): number {
    let t = 0;
    for (const v of this.reasonPackets) t += v;
    return t;
  }

  snapshot(): CounterSnapshot {
    const backends: CounterSnapshot['backends'] = {};
    for (const [name, s] of this.backendStats)
      backends[name] = [s.packetsIn, s.bytesIn, s.packetsOut, s.bytesOut, s.packetsRouted, s.packetsDropped];
    return {
      reasonPackets: Array.from(this.reasonPackets),
      reasonBytes: Array.from(this.reasonBytes),
      cid: Array.from(this.cid),
      returnRejects: Array.from(this.returnRejects),
      returnPackets: this.returnPackets,
      returnBytes: this.returnBytes,
      sendErrors: Array.from(this.sendErrors),
      returnAuth: Array.from(this.returnAuth),
      anycast: Array.from(this.anycast),
      retry: this.retry.snapshot(),
      backends,
    };
  }
}

/** An all-zero snapshot. */
export function emptySnapshot(): CounterSnapshot {
  return new Counters().snapshot();
}

/** Adds `b` into `a` (in place) and returns `a`. */
export function addSnapshot(a: CounterSnapshot, b: CounterSnapshot): CounterSnapshot {
  const addArr = (x: number[], y: number[]): void => {
    for (let i = 0; i < x.length && i < y.length; i++) x[i] += y[i];
  };
  addArr(a.reasonPackets, b.reasonPackets);
  addArr(a.reasonBytes, b.reasonBytes);
  addArr(a.cid, b.cid);
  addArr(a.returnRejects, b.returnRejects);
  a.returnPackets += b.returnPackets;
  a.returnBytes += b.returnBytes;
  addArr(a.sendErrors, b.sendErrors);
  addArr(a.returnAuth, b.returnAuth);
  addArr(a.anycast ?? [], b.anycast ?? []);
  if (b.retry) {
    if (a.retry) addRetry(a.retry, b.retry);
    else a.retry = structuredClone(b.retry);
  }
  for (const [name, v] of Object.entries(b.backends)) {
    const cur = a.backends[name];
    if (cur) for (let i = 0; i < cur.length; i++) cur[i] += v[i];
    else a.backends[name] = [...v];
  }
  return a;
}
