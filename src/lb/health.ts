// Active health checks with hysteresis. Runs in one place per LB (the cluster primary, or the
// single process) so every worker routes on the same health view; the view is a plain
// name -> up map that `withHealth()` turns into a new fallback table.
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { HEALTH_PROBE_TOKEN_OFFSET, HealthProbeKind, encodeHealthProbe, parseHealthProbe } from '../wire/index.js';
import type { BackendSpec, HealthCheckSpec, LbConfig } from './config.js';
import { formatEndpoint } from '../wire/index.js';
import { type BackendState, initialState } from './router.js';

/** Per-backend health bookkeeping, exposed for metrics. */
export interface BackendHealth {
  state: BackendState;
  /** When `state` was entered (ms since the epoch). */
  since: number;
  checksOk: number;
  checksFailed: number;
  transitions: number;
  /** The outcome of the latest probe (undefined before the first, and for type 'none'). */
  lastProbe?: ProbeResult;
}

/** The outcome of one probe: the backend answered "up", answered "draining", or did not answer (in time). */
export type ProbeResult = 'up' | 'draining' | 'failed';

/** Consecutive probe outcomes of one backend. */
export interface ProbeStreaks {
  /** Answers of either kind in a row. */
  answers: number;
  /** "up" answers in a row. */
  ups: number;
  /** Failed probes in a row. */
  failures: number;
}

/**
 * The health state machine (see HealthChecker): the state after one probe `result`, for a
 * backend in `state` since `since` (ms). Updates `streaks`; nothing else. Pure, for tests.
 */
export function nextState(
  state: BackendState,
  since: number,
  streaks: ProbeStreaks,
  spec: Pick<HealthCheckSpec, 'rise' | 'fall' | 'downGraceMs'>,
  result: ProbeResult,
  now: number,
): BackendState {
  if (result === 'failed') {
    streaks.answers = 0;
    streaks.ups = 0;
    streaks.failures++;
    if ((state === 'up' || state === 'draining') && streaks.failures >= spec.fall)
      return spec.downGraceMs === 0 ? 'down' : 'unreachable';
    if (state === 'unreachable' && now - since >= spec.downGraceMs) return 'down';
    return state;
  }
  streaks.failures = 0;
  streaks.answers++;
  if (result === 'draining') {
    streaks.ups = 0;
    if (state === 'up' || state === 'unreachable') return 'draining';
    if (state === 'down' && streaks.answers >= spec.rise) return 'draining';
    return state;
  }
  streaks.ups++;
  return state !== 'up' && streaks.ups >= spec.rise ? 'up' : state;
}

interface Check {
  spec: HealthCheckSpec;
  state: BackendHealth;
  streaks: ProbeStreaks;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

interface Pending {
  resolve: (result: ProbeResult) => void;
  address: string;
  port: number;
  timer: NodeJS.Timeout;
}

export interface HealthCheckerOptions {
  logger: Logger;
  /** Called after any backend changes state, with the full view. */
  onChange: (view: Map<string, BackendState>) => void;
  /** The clock (ms), injectable for tests. Default Date.now. */
  now?: () => number;
  /**
   * Source address of the UDP probes (default: the kernel picks). The server mode probes its
   * peers from its own unicast address, the one their allow lists hold.
   */
  sourceAddress?: string;
}

/**
 * Probes every backend on its own timer and keeps its `BackendState` (router.ts), so that no
 * fault resets a live connection (docs/lb.md "Health and drain policy"):
 * - a "draining" answer makes an `up` or `unreachable` backend `draining` at once (the backend
 *   said so); `rise` consecutive "up" answers make any other state `up`; from `down`, `rise`
 *   consecutive answers of either kind are needed before its CID-routed traffic returns;
 * - `fall` consecutive failures make an `up` or `draining` backend `unreachable` (out of the
 *   fallback table, CID-routed traffic still delivered); still failing `downGraceMs` after that,
 *   it is `down` (CID-routed traffic takes the fallback);
 * - a backend starts in `initialState()` (type 'none': always up).
 */
export class HealthChecker {
  private readonly checks = new Map<string, Check>();
  private readonly pending = new Map<number, Pending>();
  private readonly tokenPrefix = randomBytes(4);
  private seq = 0;
  private readonly now: () => number;
  private sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  private closed = false;

  constructor(private readonly opts: HealthCheckerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Applies a (new) config: starts, restarts or stops checks. Keeps the state of kept backends. */
  configure(config: LbConfig): void {
    const wanted = new Map<string, BackendSpec>(config.backends.map((b) => [b.name, b]));
    for (const [name, check] of this.checks) {
      const b = wanted.get(name);
      if (!b || JSON.stringify(b.health) !== JSON.stringify(check.spec)) {
        this.stop(check);
        if (!b) this.checks.delete(name);
      }
    }
    for (const b of config.backends) {
      const old = this.checks.get(b.name);
      if (old && !old.stopped) continue;
      const check: Check = {
        spec: b.health,
        state: old?.state ?? {
          state: initialState(config, b),
          since: this.now(),
          checksOk: 0,
          checksFailed: 0,
          transitions: 0,
        },
        streaks: { answers: 0, ups: 0, failures: 0 },
        timer: undefined,
        stopped: false,
      };
      if (b.health.type === 'none') check.state.state = 'up';
      this.checks.set(b.name, check);
      if (b.health.type !== 'none') this.schedule(b.name, check, 0);
    }
  }

  /** name -> state for every configured backend. */
  view(): Map<string, BackendState> {
    const v = new Map<string, BackendState>();
    for (const [name, c] of this.checks) v.set(name, c.state.state);
    return v;
  }

  /** Health bookkeeping per backend (for metrics). */
  states(): Map<string, BackendHealth> {
    const v = new Map<string, BackendHealth>();
    for (const [name, c] of this.checks) v.set(name, c.state);
    return v;
  }

  close(): void {
    this.closed = true;
    for (const c of this.checks.values()) this.stop(c);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.resolve('failed');
    }
    this.pending.clear();
    this.sockets[4]?.close();
    this.sockets[6]?.close();
    this.sockets = {};
  }

  private stop(c: Check): void {
    c.stopped = true;
    if (c.timer) clearTimeout(c.timer);
    c.timer = undefined;
  }

  private schedule(name: string, c: Check, delay: number): void {
    c.timer = setTimeout(() => {
      const started = Date.now();
      void this.probe(c.spec).then((result) => {
        if (c.stopped || this.closed) return;
        this.record(name, c, result);
        this.schedule(name, c, Math.max(0, c.spec.intervalMs - (Date.now() - started)));
      });
    }, delay);
    c.timer.unref();
  }

  private record(name: string, c: Check, result: ProbeResult): void {
    if (result === 'failed') c.state.checksFailed++;
    else c.state.checksOk++;
    c.state.lastProbe = result;
    const to = nextState(c.state.state, c.state.since, c.streaks, c.spec, result, this.now());
    if (to === c.state.state) return;
    const from = c.state.state;
    c.state.state = to;
    c.state.since = this.now();
    c.state.transitions++;
    this.opts.logger.warn({ backend: name, from, to, probe: c.spec.type }, `backend ${to}`);
    this.opts.onChange(this.view());
  }

  /** One probe of `spec`. */
  probe(spec: HealthCheckSpec): Promise<ProbeResult> {
    switch (spec.type) {
      case 'udp':
        return this.probeUdp(spec);
      case 'tcp':
        return probeTcp(spec).then(upOrFailed);
      case 'http':
        return probeHttp(spec).then(upOrFailed);
      case 'none':
        return Promise.resolve('up');
    }
  }

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.sockets[family];
    if (!s) {
      s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
      s.on('message', (msg, rinfo) => this.onReply(msg, rinfo));
      s.on('error', (err) => this.opts.logger.error({ err }, 'health probe socket error'));
      const from = this.opts.sourceAddress;
      // node:dgram queues sends made while the bind runs.
      if (from !== undefined && from.includes(':') === (family === 6)) s.bind({ port: 0, address: from });
      s.unref();
      this.sockets[family] = s;
    }
    return s;
  }

  private onReply(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const kind = parseHealthProbe(msg);
    if (kind !== HealthProbeKind.UP && kind !== HealthProbeKind.DRAINING) return;
    const t = HEALTH_PROBE_TOKEN_OFFSET;
    for (let i = 0; i < 4; i++) if (msg[t + i] !== this.tokenPrefix[i]) return;
    const seq = msg.readUInt32BE(t + 4);
    const p = this.pending.get(seq);
    if (!p || p.address !== rinfo.address || p.port !== rinfo.port) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    p.resolve(kind === HealthProbeKind.UP ? 'up' : 'draining');
  }

  private probeUdp(spec: HealthCheckSpec): Promise<ProbeResult> {
    const target = spec.address;
    if (!target || this.closed) return Promise.resolve('failed');
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const token = Buffer.alloc(8);
    this.tokenPrefix.copy(token, 0);
    token.writeUInt32BE(seq, 4);
    const probe = encodeHealthProbe(HealthProbeKind.REQUEST, token);
    return new Promise<ProbeResult>((resolve) => {
      // When the timeout fires, a reply may already be waiting in the socket: a busy or stalled
      // event loop runs expired timers before it polls for I/O. Give the poll phase one turn
      // (setImmediate runs after it) so a starved LB does not mark a healthy backend down.
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (this.pending.get(seq)?.resolve !== resolve) return;
          this.pending.delete(seq);
          resolve('failed');
        });
      }, spec.timeoutMs);
      timer.unref();
      this.pending.set(seq, { resolve, address: target.address, port: target.port, timer });
      this.socket(target.family).send(probe, target.port, target.address, (err) => {
        if (err) {
          this.opts.logger.debug({ err, target: formatEndpoint(target) }, 'health probe send failed');
        }
      });
    });
  }
}

const upOrFailed = (ok: boolean): ProbeResult => (ok ? 'up' : 'failed');

function probeTcp(spec: HealthCheckSpec): Promise<boolean> {
  const target = spec.address;
  if (!target) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = net.connect({ host: target.address, port: target.port });
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => setImmediate(() => done(false)), spec.timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function probeHttp(spec: HealthCheckSpec): Promise<boolean> {
  const url = spec.url;
  if (!url) return Promise.resolve(false);
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(ok);
    };
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      done(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300);
    });
    const timer = setTimeout(() => setImmediate(() => done(false)), spec.timeoutMs);
    req.once('error', () => done(false));
  });
}
