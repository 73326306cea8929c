// The one trial record of both engines (bench/harness/engine.ts and bench/native/native.ts):
// loss and the offered rate count attempted sends, refused ones included; the per-packet and
// ratio fields follow the same null rules for both.
import { describe, expect, it } from 'vitest';
import { trialRecord, type TrialMeasurement } from '../../bench/harness/engine.js';

const base: TrialMeasurement = {
  load: { attempted: 10_000, sendErrors: 0, elapsedMs: 500 },
  connections: 64,
  sinks: { received: 10_000, wrong: 0, orphaned: 0, corrupt: 0, p50Us: 41.26, p99Us: 180.04 },
  routerCpuUs: 50_000,
  routerRssBytes: 80 * 1048576,
  redisCpuUs: null,
  redisMemMb: null,
};

describe('trialRecord', () => {
  it('derives rates, loss and per-packet CPU from the counts', () => {
    const r = trialRecord({ ...base, sinks: { ...base.sinks, received: 9_500 } });
    expect(r).toEqual({
      offered_pps: 20_000,
      attempted: 10_000,
      sent: 10_000,
      received: 9_500,
      pps: 19_000,
      loss: expect.closeTo(0.05, 12),
      cpu_us_per_packet: 5.26,
      redis_cpu_us_per_packet: null,
      p50_us: 41.3,
      p99_us: 180,
      correct_ratio: 1,
      misdelivered: 0,
      orphaned: 0,
      connections: 64,
      rss_mb: 80,
      redis_mem_mb: null,
      corrupt: 0,
      send_errors: 0,
      rtt_p50_us: null,
      rtt_p99_us: null,
      echo_ratio: null,
    });
  });

  it('counts sends the kernel refused as loss and as offered load, not as sent', () => {
    const r = trialRecord({
      ...base,
      load: { attempted: 10_000, sendErrors: 1_000, elapsedMs: 500 },
      sinks: { ...base.sinks, received: 9_000 },
    });
    expect(r.attempted).toBe(10_000);
    expect(r.sent).toBe(9_000);
    expect(r.send_errors).toBe(1_000);
    expect(r.offered_pps).toBe(20_000);
    expect(r.loss).toBeCloseTo(0.1, 12);
  });

  it('loss is 0, not NaN or negative, when nothing was attempted or more arrived than was sent', () => {
    expect(
      trialRecord({
        ...base,
        load: { attempted: 0, sendErrors: 0, elapsedMs: 500 },
        sinks: { ...base.sinks, received: 0 },
      }).loss,
    ).toBe(0);
    expect(trialRecord({ ...base, sinks: { ...base.sinks, received: 10_010 } }).loss).toBe(0);
  });

  it('leaves orphaned packets out of the correct ratio and counts misdeliveries against the rest', () => {
    const r = trialRecord({ ...base, sinks: { ...base.sinks, received: 1_000, orphaned: 200, wrong: 8 } });
    expect(r.correct_ratio).toBe(0.99);
    expect(r.misdelivered).toBe(8);
    expect(r.orphaned).toBe(200);
    expect(trialRecord({ ...base, sinks: { ...base.sinks, received: 200, orphaned: 200 } }).correct_ratio).toBeNull();
  });

  it('no router, a restarted router or nothing received gives no per-packet CPU; no router gives RSS 0', () => {
    const direct = trialRecord({ ...base, routerCpuUs: null, routerRssBytes: null });
    expect(direct.cpu_us_per_packet).toBeNull();
    expect(direct.rss_mb).toBe(0);
    expect(trialRecord({ ...base, routerCpuUs: Number.NaN }).cpu_us_per_packet).toBeNull();
    expect(trialRecord({ ...base, sinks: { ...base.sinks, received: 0 } }).cpu_us_per_packet).toBeNull();
  });

  it('reports Redis CPU and memory only when measured, and the echo fields only for echo trials', () => {
    const r = trialRecord({
      ...base,
      redisCpuUs: 20_000,
      redisMemMb: 12.345,
      echo: { p50Us: 90.04, p99Us: 300.06, ratio: 0.99996 },
    });
    expect(r.redis_cpu_us_per_packet).toBe(2);
    expect(r.redis_mem_mb).toBe(12.35);
    expect(r.rtt_p50_us).toBe(90);
    expect(r.rtt_p99_us).toBe(300.1);
    expect(r.echo_ratio).toBe(1);
    expect(trialRecord({ ...base, redisCpuUs: Number.NaN }).redis_cpu_us_per_packet).toBeNull();
  });
});
