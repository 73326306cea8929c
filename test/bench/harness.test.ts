// A few-second end-to-end run of the routing harness (profile `tiny`): real router processes,
// real sockets, the results file with every required field. Speed is never asserted.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../../bench/harness/build.js';
import { PROFILES } from '../../bench/harness/profiles.js';
import { bareRelay, quicLbRouter, redisRouter } from '../../bench/harness/routers.js';
import { buildNativeTools } from '../../bench/native/native.js';
import { runRoutingSuite } from '../../bench/harness/suite.js';
import { processTree } from '../../bench/lib/procstat.js';
import { writeReport } from '../../bench/report/write.js';
import type { BenchResults } from '../../bench/report/types.js';

describe('routing harness end to end (tiny profile)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-bench-e2e-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('measures the bare relay and quic-lb serve and writes a complete results file', async () => {
    ensureBuilt(() => {});
    const res = await runRoutingSuite({
      profile: PROFILES.tiny,
      routers: [quicLbRouter('plaintext'), bareRelay()],
      log: () => {},
      preliminary: true,
      note: 'test run',
      command: 'vitest',
    });
    writeReport(res, dir);
    const json = JSON.parse(readFileSync(path.join(dir, 'latest.json'), 'utf8')) as BenchResults;

    expect(json.skipped).toEqual([]);
    expect(json.node).toBe(process.version);
    expect(json.machine.cores).toBeGreaterThan(0);
    expect(json.machine.cpu_model).not.toBe('');
    expect(json.commit).toMatch(/^[0-9a-f]{7,}/);
    expect(Number.isNaN(Date.parse(json.date))).toBe(false);
    for (const r of json.results) {
      for (const k of ['pps', 'loss', 'cpu_us_per_packet', 'p50_us', 'p99_us', 'correct_ratio', 'rss_mb'] as const)
        expect(r, `${r.router}/${r.scenario}`).toHaveProperty(k);
      expect(r.pps).toBeGreaterThan(0);
      expect(r.rss_mb).toBeGreaterThan(0);
    }
    const row = (router: string, scenario: string) =>
      json.results.find((r) => r.router === router && r.scenario === scenario);
    const bare = row('bare-relay', 'steady')!;
    expect(bare.correct_ratio).toBe(1);
    expect(bare.cpu_us_per_packet).toBeGreaterThan(0);
    expect(bare.p50_us).toBeGreaterThan(0);
    expect(json.rate_search['bare-relay'].length).toBeGreaterThan(0);
    // Echoes came back through each router's return path (quic-lb: via the LB).
    for (const id of ['bare-relay', 'quic-lb-plaintext']) {
      const steady = row(id, 'steady')!;
      expect(steady.rtt_p50_us, id).toBeGreaterThan(0);
      expect(steady.echo_ratio, id).toBeGreaterThan(0.9);
    }
    // quic-lb serve routes every packet of a connection to its owner, also after NAT rebinding.
    expect(row('quic-lb-plaintext', 'steady')!.correct_ratio).toBe(1);
    expect(row('quic-lb-plaintext', 'nat-rebinding')!.correct_ratio).toBe(1);
    expect(row('bare-relay', 'nat-rebinding')).toBeUndefined(); // one backend: not applicable
    expect(json.memory['quic-lb-plaintext'][0].connections).toBe(PROFILES.tiny.memorySteps[0]);
    // Every router process the run started is stopped (tsx's esbuild helper may linger; it is not ours to judge).
    const left = processTree(process.pid)
      .filter((p) => p !== process.pid)
      .map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ');
        } catch {
          return '';
        }
      })
      .filter((c) => /cli\.js serve|bare-relay|redis-router|redis-server|nginx/.test(c));
    expect(left).toEqual([]);
  });

  it('with the native load tools: the rate search runs on them for quic-lb and the Redis router, the rest on the Node generator', async () => {
    ensureBuilt(() => {});
    const native = buildNativeTools(path.join(dir, 'bin'));
    if ('error' in native) throw new Error(native.error);
    const res = await runRoutingSuite({
      profile: { ...PROFILES.tiny, scenarios: ['steady'], memorySteps: [200], memoryRouters: ['redis-per-packet'] },
      routers: [quicLbRouter('four-pass'), redisRouter('per-packet')],
      native,
      log: () => {},
      preliminary: true,
      note: 'test run',
      command: 'vitest',
    });
    expect(res.skipped).toEqual([]);
    expect(res.params.rate_search_load).toBe('native');
    for (const id of ['quic-lb-four-pass', 'redis-per-packet']) {
      const steps = res.rate_search[id];
      expect(steps.length, id).toBeGreaterThan(0);
      expect(
        steps.some((s) => s.pass),
        id,
      ).toBe(true);
      const steady = res.results.find((r) => r.router === id && r.scenario === 'steady')!;
      // The row's rate is the best passing native step; its latency and echo come from the Node generator.
      expect(steady.pps, id).toBe(Math.max(...steps.filter((s) => s.pass).map((s) => s.pps)));
      expect(steady.correct_ratio, id).toBe(1);
      expect(steady.misdelivered, id).toBe(0);
      expect(steady.echo_ratio, id).toBeGreaterThan(0.9);
    }
    // Redis is emptied before a Redis router's memory curve: it counts only the curve's own flows.
    expect(res.memory['redis-per-packet'][0].redis_keys).toBe(200);
  });
});
