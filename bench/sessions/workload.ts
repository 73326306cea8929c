// The session benchmark's workload, from a seed (pure: the same seed gives the same plan, so every
// design carries the same sessions, rebinding at the same moments).
//
// A session is a voice call: a handshake through the tier, then FRAME_RATE frames per second each
// way (20 ms frames of about 160 octets, a voice codec's rate) for the run. A seeded share of the
// sessions rebind their NAT (new source port, same connection IDs) once, at a seeded moment in
// the rebinding window; the forwarding tier is restarted once, later, so the losses of the two
// events fall in separate phases of every session (see accounting.ts).
import { Prng } from '../lib/prng.js';

/** Frames per second each way: one every 20 ms. */
export const FRAME_RATE = 50;
/** Octets per frame datagram (QUIC short header + a ~130-octet voice frame + the bench trailer). */
export const FRAME_SIZE = 160;
/** Handshake datagrams per session after the Initial, carrying the CIDs the backend issued. */
export const HANDSHAKE_TAIL = 2;
/** NAT rebindings happen between these fractions of the run... */
export const REBIND_WINDOW: readonly [number, number] = [0.15, 0.4];
/** ...and the tier is restarted at this fraction, after every rebinding. */
export const RESTART_AT = 0.6;

export interface WorkloadOptions {
  seed: number;
  sessions: number;
  durationMs: number;
  /** Share of sessions that rebind their NAT once (0..1; the count is rounded). */
  rebindShare: number;
}

export interface SessionPlan {
  sessions: number;
  durationMs: number;
  /** Frames per second offered in total, one direction (sessions × FRAME_RATE). */
  rate: number;
  /** Frames each session sends in the run (the bitmap length per session). */
  framesPerSession: number;
  /** The sessions that rebind and when (ms into the run), by session index. */
  rebinds: { conn: number; atMs: number }[];
  restartAtMs: number;
}

/** The plan for `o.sessions` sessions: deterministic in `o.seed`. */
export function planSessions(o: WorkloadOptions): SessionPlan {
  if (!(o.sessions > 0) || !(o.durationMs > 0)) throw new Error('sessions and duration must be positive');
  if (!(o.rebindShare >= 0 && o.rebindShare <= 1)) throw new Error('rebind share must be in [0, 1]');
  const rng = new Prng(o.seed);
  // Exactly round(share × sessions) rebinding sessions: a seeded partial Fisher–Yates shuffle.
  const order = Array.from({ length: o.sessions }, (_, i) => i);
  const count = Math.round(o.rebindShare * o.sessions);
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, o.sessions - 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const [from, to] = REBIND_WINDOW;
  const rebinds = order
    .slice(0, count)
    .sort((a, b) => a - b)
    .map((conn) => ({ conn, atMs: Math.round((from + rng.float() * (to - from)) * o.durationMs) }));
  return {
    sessions: o.sessions,
    durationMs: o.durationMs,
    rate: o.sessions * FRAME_RATE,
    framesPerSession: Math.ceil((o.durationMs / 1000) * FRAME_RATE),
    rebinds,
    restartAtMs: Math.round(RESTART_AT * o.durationMs),
  };
}

/**
 * Frames whose latency is measured: those numbered below this, sent until 5 % of the run before
 * the tier restart (a margin for a generator running late), so the percentiles describe the path
 * and not the backlog of a restart. A rebinding adds no delay: its frames arrive or not.
 */
export function latencyFrames(plan: SessionPlan): number {
  return Math.floor(((plan.restartAtMs - plan.durationMs / 20) / 1000) * FRAME_RATE);
}

/** Octets per session row of the per-frame bitmaps (room for a generator that runs slightly ahead). */
export function bitmapRowBytes(plan: SessionPlan): number {
  return Math.ceil((plan.framesPerSession + FRAME_RATE) / 8);
}
