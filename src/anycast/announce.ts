// When an anycast server announces the VIP: only while it accepts new connections. A withdrawal
// moves new handshakes to the other servers (the routers drop this server from the ECMP set)
// while every existing connection stays: it lives on the server's unicast address after
// preferred_address, and VIP datagrams whose CID names this server are still forwarded to it by
// every server. The announcement itself is BGP via BIRD, driven by /healthz; this file only
// decides.
//
// The rules, applied once per sample (nextAnnounceState, pure) and by drain():
//
// - `draining` (the operator, SIGUSR2): withdraw at once, without waiting for a sample, and stay
//   withdrawn until the drain is lifted. The operator asked; there is nothing to confirm.
// - `self-check` (the server's own health probe through its unicast socket): withdraw after
//   `withdrawAfter` failures in a row, so one lost probe datagram does not flap the route.
// - `connections`, `event-loop-delay`, `cpu` (the load signals; a max of 0 switches a signal
//   off): withdraw after `withdrawAfter` samples in a row above the signal's max. A burst of
//   one period does not withdraw: each withdrawal and re-announcement changes the routers' ECMP
//   set, which moves in-flight handshakes of *other* servers' clients too.
// - Re-announce after `announceAfter` samples in a row that are calm: not draining, self-check
//   ok and every enabled signal at or under its resume level. Between a signal's resume level
//   and its max nothing changes (hysteresis): an announced server stays announced, a withdrawn
//   one stays withdrawn, so a server near its limit does not flap.
// - `starting`: the state before the first sample. The first sample that finds the server not
//   draining, self-check ok and no enabled signal over its max announces at once: a server
//   that just started has no history to confirm, and waiting `announceAfter` periods would only
//   delay its share of the handshakes. A sample that does not announce keeps `starting` unless
//   a reason has meanwhile tripped (`withdrawAfter` in a row), which then replaces it; from then
//   on the server re-announces like any withdrawn one.
//
// A reason "trips" when draining is on, or its streak of failed/over samples has reached
// `withdrawAfter`. When several trip at once the reported reason is the first in
// REASON_PRIORITY (draining > self-check > connections > event-loop-delay > cpu): the operator's
// drain is the most deliberate, a failing self-check means the server may not be reachable at
// all, and connections outrank the two process signals because they are what a re-announcement
// waits to shed. While withdrawn the reason follows the highest tripped reason, so it can change
// (withdrawn for cpu, then connections trip: reason `connections`); when none trips any more the
// reason stays what the server is recovering from until it re-announces.
//
// Every streak counts consecutive samples and restarts at 0 on a sample that breaks it, and on
// a reload (restartStreaks): new thresholds are judged on samples taken under them only.
import type { AnnounceSpec } from '../lb/index.js';
import { EventEmitter } from 'node:events';
import { LoadSampler } from './load-sampler.js';

/** Why a server does not announce the VIP; also the `reason` label of the anycast metrics. */
export const WITHDRAW_REASONS = [
  'starting',
  'draining',
  'connections',
  'event-loop-delay',
  'cpu',
  'self-check',
] as const;
export type WithdrawReason = (typeof WITHDRAW_REASONS)[number];

/** The reasons a sample or drain() can trip, highest priority first (see the header). */
export const REASON_PRIORITY = ['draining', 'self-check', 'connections', 'event-loop-delay', 'cpu'] as const;

/** The load signals, each with a max (withdraw above) and a resume level (calm at or under). */
export const LOAD_SIGNALS = ['connections', 'event-loop-delay', 'cpu'] as const;
export type LoadSignal = (typeof LOAD_SIGNALS)[number];

/**
 * The `anycast.announce` section of the config (src/lb `AnnounceSpec`), with defaults resolved
 * by the config loader. A max of 0 switches its signal off (its resume level is then ignored).
 * `withdrawAfter` and `announceAfter` below 1 act as 1.
 */
export type AnnounceThresholds = AnnounceSpec;

/** One sample: the load signals of the last period and the self-check's latest result. */
export interface LoadSample {
  activeConnections: number;
  eventLoopDelayMs: number;
  cpu: number;
  selfCheckOk: boolean;
}

/** The announcer's state after a sample. Immutable; the streak fields count consecutive samples. */
export interface AnnounceState {
  readonly announced: boolean;
  /** Why the server is withdrawn; undefined while announced. */
  readonly reason: WithdrawReason | undefined;
  /** Samples in a row whose self-check failed. */
  readonly selfCheckFailures: number;
  /** Samples in a row above the signal's max (stays 0 while the signal is off). */
  readonly over: Readonly<Record<LoadSignal, number>>;
  /** Calm samples in a row: not draining, self-check ok, every enabled signal at or under its resume level. */
  readonly calm: number;
}

interface SignalSpec {
  value(sample: LoadSample): number;
  max(t: AnnounceThresholds): number;
  resume(t: AnnounceThresholds): number;
}

const SIGNALS: Readonly<Record<LoadSignal, SignalSpec>> = {
  connections: {
    value: (s) => s.activeConnections,
    max: (t) => t.maxConnections,
    resume: (t) => t.resumeConnections,
  },
  'event-loop-delay': {
    value: (s) => s.eventLoopDelayMs,
    max: (t) => t.maxEventLoopDelayMs,
    resume: (t) => t.resumeEventLoopDelayMs,
  },
  cpu: { value: (s) => s.cpu, max: (t) => t.maxCpu, resume: (t) => t.resumeCpu },
};

function noStreaks(): Pick<AnnounceState, 'selfCheckFailures' | 'over' | 'calm'> {
  return { selfCheckFailures: 0, over: { connections: 0, 'event-loop-delay': 0, cpu: 0 }, calm: 0 };
}

/** The state before the first sample: withdrawn, reason `starting`, no streaks. */
export function initialAnnounceState(): AnnounceState {
  return { announced: false, reason: 'starting', ...noStreaks() };
}

/** The same announcement and reason with every streak back at 0 (after a reload). Pure. */
export function restartStreaks(state: AnnounceState): AnnounceState {
  return { announced: state.announced, reason: state.reason, ...noStreaks() };
}

/**
 * The state after one `sample` taken under thresholds `t`, `draining` being whether the
 * operator's drain is on (see the header for the rules). Pure; never throws. A signal value
 * that is not a finite number counts as neither over its max nor calm.
 */
export function nextAnnounceState(
  prev: AnnounceState,
  sample: LoadSample,
  t: AnnounceThresholds,
  draining: boolean,
): AnnounceState {
  const over = { connections: 0, 'event-loop-delay': 0, cpu: 0 };
  let calm = !draining && sample.selfCheckOk;
  let anyOver = false;
  for (const signal of LOAD_SIGNALS) {
    const spec = SIGNALS[signal];
    const max = spec.max(t);
    if (!(max > 0)) continue; // off
    const value = spec.value(sample);
    if (value > max) {
      over[signal] = prev.over[signal] + 1;
      anyOver = true;
    }
    if (!(value <= spec.resume(t))) calm = false;
  }
  const streaks = {
    selfCheckFailures: sample.selfCheckOk ? 0 : prev.selfCheckFailures + 1,
    over,
    calm: calm ? prev.calm + 1 : 0,
  };
  const tripped = trippedReason(streaks, t, draining);

  if (prev.announced)
    return tripped === undefined
      ? { announced: true, reason: undefined, ...streaks }
      : { announced: false, reason: tripped, ...streaks };
  if (prev.reason === 'starting' && !draining && sample.selfCheckOk && !anyOver)
    return { announced: true, reason: undefined, ...streaks };
  if (tripped === undefined && streaks.calm >= Math.max(1, t.announceAfter))
    return { announced: true, reason: undefined, ...streaks };
  return { announced: false, reason: tripped ?? prev.reason ?? 'starting', ...streaks };
}

/** The highest-priority reason that trips with these streaks, or undefined. */
function trippedReason(
  streaks: Pick<AnnounceState, 'selfCheckFailures' | 'over'>,
  t: AnnounceThresholds,
  draining: boolean,
): WithdrawReason | undefined {
  for (const reason of REASON_PRIORITY) {
    switch (reason) {
      case 'draining':
        if (draining) return reason;
        break;
      case 'self-check':
        if (streaks.selfCheckFailures > 0 && streaks.selfCheckFailures >= t.withdrawAfter) return reason;
        break;
      case 'connections':
      case 'event-loop-delay':
      case 'cpu':
        if (streaks.over[reason] > 0 && streaks.over[reason] >= t.withdrawAfter) return reason;
        break;
    }
  }
  return undefined;
}

/** The state right after drain() switches the drain on: withdrawn for `draining`, no calm streak. Pure. */
export function drainAnnounceState(prev: AnnounceState): AnnounceState {
  return { ...prev, announced: false, reason: 'draining', calm: 0 };
}

export interface AnnouncerOptions {
  thresholds: AnnounceThresholds;
  /** Active QUIC connections now. A throw counts the sample as a failed self-check. */
  activeConnections: () => number;
  /** The latest result of the server's own health probe (true = ok). A throw counts as false. */
  selfCheck: () => boolean;
  /** The event-loop delay and CPU source; default a LoadSampler that start() creates and stop() closes. */
  sampler?: Pick<LoadSampler, 'sample' | 'close'>;
}

export interface AnnouncerEvents {
  /** The announcement or the reason changed. */
  change: [state: AnnounceState, previous: AnnounceState];
  /** A sample could not be taken (a callback or the sampler threw); counted as a failed self-check. */
  'sample-error': [error: unknown];
}

/**
 * Samples the server's load every `intervalMs` and keeps the announcement state (see the
 * header). Emits 'change' (state, previous) on every change of `announced` or `reason`, and
 * 'sample-error' (error) when a sample could not be taken. Nothing throws out of its timer: a
 * failing callback counts as a failed self-check, and a throwing listener is ignored.
 */
export class Announcer extends EventEmitter<AnnouncerEvents> {
  #thresholds: AnnounceThresholds;
  readonly #activeConnections: () => number;
  readonly #selfCheck: () => boolean;
  readonly #injectedSampler: Pick<LoadSampler, 'sample' | 'close'> | undefined;
  #sampler: Pick<LoadSampler, 'sample' | 'close'> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #draining = false;
  #state: AnnounceState = initialAnnounceState();
  #lastSample: LoadSample | undefined;
  readonly #withdrawals: Record<WithdrawReason, number> = zeroCounts();
  /** Samples that could not be taken (see 'sample-error'). */
  sampleErrors = 0;

  constructor(opts: AnnouncerOptions) {
    super();
    this.#thresholds = opts.thresholds;
    this.#activeConnections = opts.activeConnections;
    this.#selfCheck = opts.selfCheck;
    this.#injectedSampler = opts.sampler;
  }

  get state(): AnnounceState {
    return this.#state;
  }

  /** The last sample taken, or undefined before the first. */
  get lastSample(): LoadSample | undefined {
    return this.#lastSample;
  }

  /** Transitions announced -> withdrawn, by the reason of the withdrawal (a live view). */
  get withdrawals(): Readonly<Record<WithdrawReason, number>> {
    return this.#withdrawals;
  }

  get thresholds(): AnnounceThresholds {
    return this.#thresholds;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Starts sampling every intervalMs (the timer is unref'd); the first sample comes one intervalMs later. Idempotent. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#sampler ??= this.#injectedSampler ?? new LoadSampler();
    this.#timer = setInterval(() => this.sampleNow(), Math.max(1, this.#thresholds.intervalMs));
    this.#timer.unref();
  }

  /** Stops sampling and closes the sampler start() created (an injected one is the caller's). Idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#sampler !== undefined && this.#sampler !== this.#injectedSampler) this.#sampler.close();
    this.#sampler = undefined;
  }

  /**
   * drain() or drain(true): withdraw at once with reason `draining` and stay withdrawn while the
   * drain is on. drain(false): lift it; the server re-announces after `announceAfter` calm samples.
   */
  drain(on = true): void {
    this.#draining = on;
    if (on) this.#apply(drainAnnounceState(this.#state));
  }

  /** New thresholds (a reload): every streak restarts, the announcement and reason stay; a new interval applies at once. */
  setThresholds(t: AnnounceThresholds): void {
    const intervalChanged = t.intervalMs !== this.#thresholds.intervalMs;
    this.#thresholds = t;
    this.#state = restartStreaks(this.#state);
    if (intervalChanged && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.start();
    }
  }

  /**
   * Takes one sample now and applies it. The timer calls this; a process may too, e.g. to
   * announce as soon as its first self-check passes instead of one intervalMs after start().
   * Before start(), without an injected sampler, the event-loop delay and CPU read 0. Never throws.
   */
  sampleNow(): void {
    const sample = this.#takeSample();
    this.#lastSample = sample;
    this.#apply(nextAnnounceState(this.#state, sample, this.#thresholds, this.#draining));
  }

  #takeSample(): LoadSample {
    try {
      const load = (this.#sampler ?? this.#injectedSampler)?.sample() ?? { eventLoopDelayMs: 0, cpu: 0 };
      return {
        activeConnections: this.#activeConnections(),
        eventLoopDelayMs: load.eventLoopDelayMs,
        cpu: load.cpu,
        selfCheckOk: this.#selfCheck() === true,
      };
    } catch (err) {
      this.sampleErrors++;
      this.#safely(() => this.emit('sample-error', err));
      const last = this.#lastSample;
      return {
        activeConnections: last?.activeConnections ?? 0,
        eventLoopDelayMs: last?.eventLoopDelayMs ?? 0,
        cpu: last?.cpu ?? 0,
        selfCheckOk: false,
      };
    }
  }

  #apply(next: AnnounceState): void {
    const prev = this.#state;
    this.#state = next;
    if (prev.announced === next.announced && prev.reason === next.reason) return;
    if (prev.announced && !next.announced && next.reason !== undefined) this.#withdrawals[next.reason]++;
    this.#safely(() => this.emit('change', next, prev));
  }

  /** Runs `emit`; a listener's throw must neither escape the sampling timer nor undo the state change. */
  #safely(emit: () => void): void {
    try {
      emit();
    } catch {
      // ignored (see the class comment)
    }
  }
}

function zeroCounts(): Record<WithdrawReason, number> {
  const counts = {} as Record<WithdrawReason, number>;
  for (const reason of WITHDRAW_REASONS) counts[reason] = 0;
  return counts;
}
