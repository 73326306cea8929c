// Active health checks with hysteresis. Runs in one place per LB (the cluster primary, or the
// single process) so every worker routes on the same health view; the view is a plain
// name -> up map that `withHealth()` turns into a new fallback table.
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  HEALTH_PROBE_TOKEN_OFFSET,
  HealthProbeKind,
  encodeHealthProbe,
  parseHealthProbe,
} from '../quic/index.js';
import type { BackendSpec, HealthCheckSpec, LbConfig } from './config.js';
import { formatEndpoint } from './ip.js';

/** Per-backend health bookkeeping, exposed for metrics. */
export interface BackendHealth {
  up: boolean;
  checksOk: number;
  checksFailed: number;
  transitions: number;
}

interface Check {
  spec: HealthCheckSpec;
  state: BackendHealth;
  successes: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
}

interface Pending {
  resolve: (ok: boolean) => void;
  address: string;
  port: number;
  timer: NodeJS.Timeout;
}

export interface HealthCheckerOptions {
  logger: Logger;
  /** Called after any backend changes state, with the full view. */
  onChange: (view: Map<string, boolean>) => void;
}

/**
 * Probes every backend on its own timer. A backend goes down after `fall` consecutive failures
 * and up after `rise` consecutive successes; it starts in `config.health.initial`, and a backend
 * with type 'none' is always up.
 */
export class HealthChecker {
  private readonly checks = new Map<string, Check>();
  private readonly pending = new Map<number, Pending>();
  private readonly tokenPrefix = randomBytes(4);
  private seq = 0;
  private sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  private closed = false;

  constructor(private readonly opts: HealthCheckerOptions) {}

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
      const up = b.health.type === 'none' ? true : old ? old.state.up : config.health.initial === 'up';
      const check: Check = {
        spec: b.health,
        state: old?.state ?? { up, checksOk: 0, checksFailed: 0, transitions: 0 },
        successes: 0,
        failures: 0,
        timer: undefined,
        stopped: false,
      };
      if (b.health.type === 'none') check.state.up = true;
      this.checks.set(b.name, check);
      if (b.health.type !== 'none') this.schedule(b.name, check, 0);
    }
  }

  /** name -> up for every configured backend. */
  view(): Map<string, boolean> {
    const v = new Map<string, boolean>();
    for (const [name, c] of this.checks) v.set(name, c.state.up);
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
      p.resolve(false);
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
      void this.probe(c.spec).then((ok) => {
        if (c.stopped || this.closed) return;
        this.record(name, c, ok);
        this.schedule(name, c, Math.max(0, c.spec.intervalMs - (Date.now() - started)));
      });
    }, delay);
    c.timer.unref();
  }

  private record(name: string, c: Check, ok: boolean): void {
    if (ok) {
      c.state.checksOk++;
      c.failures = 0;
      c.successes++;
      if (!c.state.up && c.successes >= c.spec.rise) this.transition(name, c, true);
    } else {
      c.state.checksFailed++;
      c.successes = 0;
      c.failures++;
      if (c.state.up && c.failures >= c.spec.fall) this.transition(name, c, false);
    }
  }

  private transition(name: string, c: Check, up: boolean): void {
    c.state.up = up;
    c.state.transitions++;
    this.opts.logger.warn({ backend: name, up, probe: c.spec.type }, up ? 'backend up' : 'backend down');
    this.opts.onChange(this.view());
  }

  /** One probe of `spec`. */
  probe(spec: HealthCheckSpec): Promise<boolean> {
    switch (spec.type) {
      case 'udp':
        return this.probeUdp(spec);
      case 'tcp':
        return probeTcp(spec);
      case 'http':
        return probeHttp(spec);
      default:
        return Promise.resolve(true);
    }
  }

  private socket(family: 4 | 6): dgram.Socket {
    let s = this.sockets[family];
    if (!s) {
      s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
      s.on('message', (msg, rinfo) => this.onReply(msg, rinfo));
      s.on('error', (err) => this.opts.logger.error({ err }, 'health probe socket error'));
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
    p.resolve(kind === HealthProbeKind.UP);
  }

  private probeUdp(spec: HealthCheckSpec): Promise<boolean> {
    const target = spec.address;
    if (!target || this.closed) return Promise.resolve(false);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const token = Buffer.alloc(8);
    this.tokenPrefix.copy(token, 0);
    token.writeUInt32BE(seq, 4);
    const probe = encodeHealthProbe(HealthProbeKind.REQUEST, token);
    return new Promise<boolean>((resolve) => {
      // When the timeout fires, a reply may already be waiting in the socket: a busy or stalled
      // event loop runs expired timers before it polls for I/O. Give the poll phase one turn
      // (setImmediate runs after it) so a starved LB does not mark a healthy backend down.
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (this.pending.get(seq)?.resolve !== resolve) return;
          this.pending.delete(seq);
          resolve(false);
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
