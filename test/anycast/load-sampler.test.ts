// The announcer's load signals (src/anycast/load-sampler.ts) on the real event loop. The
// assertions are coarse on purpose: a 300 ms stall must show as >= 250 ms of event-loop delay,
// and a period spent computing must read as busy and an idle one as idle. The stall burns 300 ms
// of this process's CPU time (not of wall time), so a preempted test only stretches the stall.
// How busy a busy period reads depends on the share of a core the machine gives the process
// (with a load average of 6 to 7 on the 2 shared cores it got 0.4, once 0.19), so the busy
// reading is checked against the test's own measurement of the same period, and against the
// idle reading (about 0.02), instead of against a fixed 0.5.
import { afterEach, describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { LoadSampler } from '../../src/anycast/load-sampler.js';
import { sleep } from '../helpers/wait.js';

const STALL_MS = 300;

/** Blocks the event loop until this process has used `ms` of CPU time (user + system). */
function burnCpu(ms: number): void {
  const start = process.cpuUsage();
  for (;;) {
    const used = process.cpuUsage(start);
    if (used.user + used.system >= ms * 1000) return;
  }
}

let sampler: LoadSampler | undefined;
afterEach(() => sampler?.close());

describe('LoadSampler', () => {
  it('a 300 ms stall inside a period shows as event-loop delay and CPU; the next idle period reads idle', async () => {
    sampler = new LoadSampler();
    await sleep(30);
    sampler.sample(); // start a fresh period
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(20);
    burnCpu(STALL_MS);
    await sleep(50); // let the delay timer tick after the stall
    const cpuUsed = process.cpuUsage(cpu0);
    const wallMs = performance.now() - t0;
    const busy = sampler.sample();
    expect(busy.eventLoopDelayMs).toBeGreaterThanOrEqual(250);
    expect(busy.cpu).toBeCloseTo((cpuUsed.user + cpuUsed.system) / 1000 / wallMs, 1);

    await sleep(300);
    const idle = sampler.sample();
    expect(idle.cpu).toBeLessThan(0.2);
    expect(idle.cpu).toBeLessThan(busy.cpu / 2);
    expect(idle.eventLoopDelayMs).toBeLessThan(250);
  });

  it('each sample covers only its own period: the stall is gone after a reset', async () => {
    sampler = new LoadSampler();
    await sleep(20);
    burnCpu(STALL_MS);
    await sleep(50);
    expect(sampler.sample().eventLoopDelayMs).toBeGreaterThanOrEqual(250);
    await sleep(100);
    expect(sampler.sample().eventLoopDelayMs).toBeLessThan(250);
  });

  it('a stall that delays the sample itself is not lost: it shows in that period or the next', async () => {
    // The case perf_hooks.monitorEventLoopDelay() loses (its reset() drops the delta that spans it).
    sampler = new LoadSampler();
    await sleep(30);
    sampler.sample();
    burnCpu(STALL_MS);
    const atStall = sampler.sample(); // before any timer could run
    await sleep(50);
    const after = sampler.sample();
    expect(atStall.eventLoopDelayMs).toBeLessThan(250);
    expect(after.eventLoopDelayMs).toBeGreaterThanOrEqual(250);

    // A sampling timer that the stall makes late, due together with the delay timer.
    const s = sampler;
    const late = await new Promise<number>((resolve) => {
      setTimeout(() => resolve(s.sample().eventLoopDelayMs), 5);
      burnCpu(STALL_MS);
    });
    await sleep(50);
    expect(Math.max(late, s.sample().eventLoopDelayMs)).toBeGreaterThanOrEqual(250);
  });

  it('after close() samples read zero and close() is idempotent; its timer never holds the process', async () => {
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timeouts();
    sampler = new LoadSampler();
    expect(timeouts()).toBe(before);
    await sleep(20);
    burnCpu(100);
    sampler.close();
    sampler.close();
    expect(sampler.sample()).toEqual({ eventLoopDelayMs: 0, cpu: 0 });
  });

  it('resolutionMs is clamped to at least 1 ms, and a non-number falls back to 10 ms', () => {
    const samplers = [0, 2.4, Number.NaN, undefined].map((resolutionMs) => new LoadSampler({ resolutionMs }));
    expect(samplers.map((s) => s.resolutionMs)).toEqual([1, 2, 10, 10]);
    for (const s of samplers) s.close();
  });
});
