// The two process-level load signals of the anycast announcer (announce.ts), measured per
// period: the event loop's delay and the process's CPU use. The caller (Announcer) decides the
// period by calling sample(); each call reports the period since the previous call (or since
// construction) and starts the next one.
//
// Event-loop delay. A timer due every `resolutionMs` records how late it runs into a histogram;
// sample() reports the p99 of the period and resets the histogram. We keep this timer ourselves
// instead of using perf_hooks.monitorEventLoopDelay() because that monitor's reset() also
// forgets the timestamp of its last tick, so the one delay that spans a reset is never
// recorded (measured on Node 20: a 300 ms stall right after reset() left the histogram's max
// at 12 ms). A stall that delays the announcer's own timer is exactly such a delay; here it is
// recorded by the tick after the stall, in whichever period that tick falls.
//
// What p99 means here: the delay that the slowest 1% of the ticks of the period saw. The ticks
// come every resolutionMs while the loop is free, so one stall of S ms in a period of P ms
// shows in the p99 while the period has at most 100 ticks, i.e. while P - S <= 100 *
// resolutionMs (1 s at the default 10 ms); a loop that stalls often shows in any period.
//
// CPU. process.cpuUsage() (user + system, every thread of the process) over the period, divided
// by the wall time of the period: 1 = one core busy for the whole period; it can exceed 1 (GC
// and libuv threads run beside the main thread).
import { type RecordableHistogram, createHistogram, performance } from 'node:perf_hooks';

/** The signals of one period (see the header). */
export interface LoadReading {
  /** p99 of the event loop's delay over the period, in ms; 0 when the period saw no tick. */
  eventLoopDelayMs: number;
  /** Process CPU seconds per wall second over the period (1 = one core); 0 for an empty period. */
  cpu: number;
}

export interface LoadSamplerOptions {
  /** How often the delay timer is due, in ms (default 10; at least 1). */
  resolutionMs?: number;
}

const DEFAULT_RESOLUTION_MS = 10;
const PERCENTILE = 99;

/**
 * Measures event-loop delay and CPU per period (see the header). Starts measuring when
 * constructed; its timer is unref'd, so it never keeps the process alive. close() stops it for
 * good; sample() after close() reports zeros. Never throws.
 */
export class LoadSampler {
  readonly resolutionMs: number;
  readonly #histogram: RecordableHistogram = createHistogram();
  #timer: NodeJS.Timeout | undefined;
  #lastTick: number;
  #periodStart: number;
  #cpuAtStart: NodeJS.CpuUsage;

  constructor(opts: LoadSamplerOptions = {}) {
    const resolution = opts.resolutionMs ?? DEFAULT_RESOLUTION_MS;
    this.resolutionMs = Number.isFinite(resolution) ? Math.max(1, Math.round(resolution)) : DEFAULT_RESOLUTION_MS;
    this.#lastTick = this.#periodStart = performance.now();
    this.#cpuAtStart = process.cpuUsage();
    this.#timer = setInterval(() => this.#tick(), this.resolutionMs);
    this.#timer.unref();
  }

  /** The signals of the period since the previous call (or construction); starts the next period. */
  sample(): LoadReading {
    if (this.#timer === undefined) return { eventLoopDelayMs: 0, cpu: 0 };
    const now = performance.now();
    const cpu = process.cpuUsage(this.#cpuAtStart);
    const wallUs = (now - this.#periodStart) * 1000;
    const reading: LoadReading = {
      // Recorded in µs (the histogram takes integers >= 1); reported in ms.
      eventLoopDelayMs: this.#histogram.count === 0 ? 0 : this.#histogram.percentile(PERCENTILE) / 1000,
      cpu: wallUs > 0 ? (cpu.user + cpu.system) / wallUs : 0,
    };
    this.#histogram.reset();
    this.#periodStart = now;
    this.#cpuAtStart = process.cpuUsage();
    return reading;
  }

  /** Stops the delay timer. Idempotent. */
  close(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const now = performance.now();
    const lateMs = now - this.#lastTick - this.resolutionMs;
    this.#lastTick = now;
    this.#histogram.record(Math.max(1, Math.round(lateMs * 1000)));
  }
}
