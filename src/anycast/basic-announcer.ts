// TEMPORARY stand-in for announce.ts (written in parallel on wip-announce), with the same API
// surface the server uses: announced from start() until drain(). Replaced at the merge.
import { EventEmitter } from 'node:events';

export const WITHDRAW_REASONS = [
  'starting',
  'draining',
  'connections',
  'event-loop-delay',
  'cpu',
  'self-check',
] as const;
export type WithdrawReason = (typeof WITHDRAW_REASONS)[number];

export interface AnnounceThresholds {
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

export interface LoadSample {
  activeConnections: number;
  eventLoopDelayMs: number;
  cpu: number;
  selfCheckOk: boolean;
}

export interface AnnounceState {
  readonly announced: boolean;
  readonly reason: WithdrawReason | undefined;
}

export class Announcer extends EventEmitter {
  state: AnnounceState = { announced: false, reason: 'starting' };
  lastSample: LoadSample | undefined;
  readonly withdrawals: Record<WithdrawReason, number> = {
    starting: 0,
    draining: 0,
    connections: 0,
    'event-loop-delay': 0,
    cpu: 0,
    'self-check': 0,
  };
  private draining = false;

  constructor(
    readonly opts: {
      thresholds: AnnounceThresholds;
      activeConnections: () => number;
      selfCheck: () => boolean;
    },
  ) {
    super();
  }

  start(): void {
    if (!this.draining) this.set({ announced: true, reason: undefined });
  }

  stop(): void {}

  drain(on = true): void {
    this.draining = on;
    this.set(on ? { announced: false, reason: 'draining' } : { announced: true, reason: undefined });
  }

  setThresholds(_t: AnnounceThresholds): void {}

  private set(next: AnnounceState): void {
    const prev = this.state;
    if (prev.announced === next.announced && prev.reason === next.reason) return;
    if (prev.announced && !next.announced && next.reason) this.withdrawals[next.reason]++;
    this.state = next;
    this.emit('change', next, prev);
  }
}
