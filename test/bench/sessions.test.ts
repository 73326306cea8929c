// The session benchmark's pure parts: the seeded workload, the per-session accounting (what
// counts as a lost frame, a broken session, and in which phase), and the report rows.
import { describe, expect, it } from 'vitest';
import { phaseOf, tallySessions, type SessionRun } from '../../bench/sessions/accounting.js';
import {
  costTable,
  heldSize,
  pctPer1000,
  renderSessionsMarkdown,
  sessionCharts,
  sessionRow,
  sessionsReadmeSection,
  sessionTable,
  type SessionMeasurement,
  type SessionResults,
} from '../../bench/sessions/report.js';
import {
  bitmapRowBytes,
  FRAME_RATE,
  latencyFrames,
  planSessions,
  REBIND_WINDOW,
  RESTART_AT,
} from '../../bench/sessions/workload.js';

describe('planSessions', () => {
  const plan = planSessions({ seed: 13, sessions: 1000, durationMs: 20_000, rebindShare: 0.1 });

  it('is the same plan for the same seed and another for another seed', () => {
    expect(planSessions({ seed: 13, sessions: 1000, durationMs: 20_000, rebindShare: 0.1 })).toEqual(plan);
    const other = planSessions({ seed: 14, sessions: 1000, durationMs: 20_000, rebindShare: 0.1 });
    expect(other.rebinds.map((r) => r.conn)).not.toEqual(plan.rebinds.map((r) => r.conn));
  });

  it('rebinds exactly the rounded share, each session once, inside the window and before the restart', () => {
    expect(plan.rebinds).toHaveLength(100);
    expect(new Set(plan.rebinds.map((r) => r.conn)).size).toBe(100);
    for (const r of plan.rebinds) {
      expect(r.conn).toBeGreaterThanOrEqual(0);
      expect(r.conn).toBeLessThan(1000);
      expect(r.atMs).toBeGreaterThanOrEqual(REBIND_WINDOW[0] * 20_000);
      expect(r.atMs).toBeLessThanOrEqual(REBIND_WINDOW[1] * 20_000);
      expect(r.atMs).toBeLessThan(plan.restartAtMs);
    }
    expect(planSessions({ seed: 1, sessions: 7, durationMs: 1000, rebindShare: 0.1 }).rebinds).toHaveLength(1);
    expect(planSessions({ seed: 1, sessions: 7, durationMs: 1000, rebindShare: 0 }).rebinds).toHaveLength(0);
    expect(planSessions({ seed: 1, sessions: 7, durationMs: 1000, rebindShare: 1 }).rebinds).toHaveLength(7);
  });

  it('offers 50 frames/s per session and sizes the bitmaps with room to spare', () => {
    expect(plan.rate).toBe(1000 * FRAME_RATE);
    expect(plan.framesPerSession).toBe(1000);
    expect(plan.restartAtMs).toBe(RESTART_AT * 20_000);
    expect(bitmapRowBytes(plan) * 8).toBeGreaterThanOrEqual(plan.framesPerSession + FRAME_RATE);
  });

  it('refuses empty or impossible workloads', () => {
    expect(() => planSessions({ seed: 1, sessions: 0, durationMs: 1000, rebindShare: 0.1 })).toThrow();
    expect(() => planSessions({ seed: 1, sessions: 5, durationMs: 1000, rebindShare: 1.5 })).toThrow();
  });
});

/** A run of `sessions` sessions of `frames` frames each, every frame delivered and answered. */
function fullRun(sessions: number, frames: number): SessionRun {
  const rowBytes = Math.ceil(frames / 8) + 1;
  const up = new Uint8Array(sessions * rowBytes);
  const down = new Uint8Array(sessions * rowBytes);
  for (let i = 0; i < sessions; i++)
    for (let f = 0; f < frames; f++) {
      up[i * rowBytes + (f >> 3)] |= 1 << (f & 7);
      down[i * rowBytes + (f >> 3)] |= 1 << (f & 7);
    }
  return {
    rowBytes,
    up,
    down,
    sent: Array<number>(sessions).fill(frames),
    rebindSeq: Array<number>(sessions).fill(-1),
    markSeq: Array<number>(sessions).fill(60),
    owner: Array<number>(sessions).fill(0),
  };
}

function clear(map: Uint8Array, rowBytes: number, session: number, from: number, to: number): void {
  for (let f = from; f < to; f++) map[session * rowBytes + (f >> 3)] &= ~(1 << (f & 7));
}

describe('tallySessions', () => {
  it('counts nothing lost when every frame went both ways', () => {
    const t = tallySessions(fullRun(3, 100));
    expect(t).toMatchObject({ sessions: 3, established: 3, framesSent: 300, lostUp: 0, lostDown: 0 });
    expect(t.lostSessions).toEqual({ steady: 0, rebind: 0, restart: 0, any: 0 });
    expect(t.broken).toEqual({ steady: 0, rebind: 0, restart: 0 });
  });

  it('tells lost frames from broken sessions, by phase and direction', () => {
    const r = fullRun(7, 100);
    const rb = r.rowBytes;
    // 1: three frames lost on the way up early on, then fine: lost in steady, not broken.
    clear(r.up, rb, 1, 10, 13);
    // 2: rebinds at frame 20 and nothing reaches its backend after (a map keyed on the address).
    (r.rebindSeq as number[])[2] = 20;
    clear(r.up, rb, 2, 20, 100);
    // 3: the tier restarts at frame 60; 30 frames lost, then the session carries on.
    clear(r.up, rb, 3, 60, 90);
    // 4: the answers stop coming back from frame 65 on: broken at the restart, lost down.
    clear(r.down, rb, 4, 65, 100);
    // 5: its handshake failed: no owner, not counted.
    (r.owner as number[])[5] = -1;
    // 6: its last three frames are lost: losses, but a run too short to call it broken.
    clear(r.up, rb, 6, 97, 100);
    const t = tallySessions(r, 20);
    expect(t.established).toBe(6);
    expect(t.rebound).toBe(1);
    expect(t.lostUp).toBe(3 + 80 + 30 + 3);
    expect(t.lostDown).toBe(35);
    expect(t.lostFrames).toEqual({ steady: 3, rebind: 40, restart: 40 + 30 + 35 + 3 });
    expect(t.lostSessions).toEqual({ steady: 1, rebind: 1, restart: 4, any: 5 });
    expect(t.broken).toEqual({ steady: 0, rebind: 1, restart: 1 });
  });

  it('reads a lost frame as one in either direction: a frame delivered to a wrong backend is lost up', () => {
    const r = fullRun(1, 100);
    clear(r.up, r.rowBytes, 0, 0, 100); // none reached the owner; any echo bits cannot count
    const t = tallySessions(r);
    expect(t.lostUp).toBe(100);
    expect(t.lostDown).toBe(0);
    expect(t.broken.steady).toBe(1);
  });

  it('uses the rebinding and the restart mark as phase boundaries', () => {
    expect(phaseOf(5, 10, 50)).toBe('steady');
    expect(phaseOf(10, 10, 50)).toBe('rebind');
    expect(phaseOf(50, 10, 50)).toBe('restart');
    expect(phaseOf(70, -1, -1)).toBe('steady');
    expect(phaseOf(70, -1, 50)).toBe('restart');
  });

  it('never reads past the bitmap row when a session sent more frames than it holds', () => {
    const r = fullRun(2, 16);
    (r.sent as number[])[0] = 1000;
    const t = tallySessions(r);
    expect(t.framesSent).toBe(r.rowBytes * 8 + 16);
  });
});

function measurement(id: string, extra: Partial<SessionMeasurement> = {}): SessionMeasurement {
  const tally = tallySessions(fullRun(500, 100));
  return {
    design: { id, label: id },
    durationMs: 10_000,
    elapsedMs: 10_000,
    tally,
    tierCpuUs: 1_000_000,
    handshakeCpuUs: 50_000,
    redisCpuUs: null,
    handshakeDatagrams: 1500,
    upViaTier: 40_000,
    downViaTier: 45_000,
    received: 50_000,
    answered: 50_000,
    p50Us: 120.04,
    p99Us: 800,
    rttP50Us: 250,
    rttP99Us: 1500,
    rssBytes: 64 * 1048576,
    redisMemMb: null,
    ...extra,
  };
}

describe('session report rows', () => {
  it('gives CPU as % of one core per 1000 sessions', () => {
    // 1 s of CPU in 10 s = 10 % of a core, for 500 sessions = 20 % per 1000.
    expect(pctPer1000(1_000_000, 10_000, 500)).toBe(20);
    expect(pctPer1000(null, 10_000, 500)).toBeNull();
    expect(pctPer1000(1, 10_000, 0)).toBeNull();
  });

  it('derives a row from what a run measured', () => {
    const row = sessionRow(measurement('quic-lb-vip'));
    expect(row).toMatchObject({
      design: 'quic-lb-vip',
      sessions: 500,
      established: 500,
      frame_rate: 10, // 100 frames each in 10 s
      tier_cpu_pct_per_1000: 20,
      handshake_cpu_us_per_session: 100,
      frames_via_tier: 85_000,
      frames_carried: 100_000,
      p50_us: 120,
      rss_mb: 64,
    });
    const direct = sessionRow(measurement('direct', { tierCpuUs: null, rssBytes: null, handshakeCpuUs: null }));
    expect(direct.tier_cpu_pct_per_1000).toBeNull();
    expect(direct.rss_mb).toBeNull();
  });

  it('renders the tables, charts and README section from the rows', () => {
    const rows = [
      sessionRow(measurement('direct', { tierCpuUs: null, upViaTier: 0, downViaTier: 0 })),
      sessionRow(measurement('nginx')),
    ];
    const res: SessionResults = {
      date: '2026-12-02T00:00:00Z',
      commit: 'abc',
      node: 'v20',
      profile: 'quick',
      command: 'npm run bench:sessions -- --quick',
      note: '',
      duration_s: 30,
      machine: { cpu_model: 'cpu', cores: 2, kernel: 'k', loadavg_start: [0, 0, 0] },
      seed: 13,
      rebind_share: 0.1,
      duration_ms: 10_000,
      sizes: [500],
      rows,
    };
    const cost = costTable(rows);
    expect(cost.split('\n')).toHaveLength(4);
    expect(cost).toContain('| nginx | 500/500 | 10 | 20 |');
    expect(cost).toContain('| 100 | 1,500 | 85,000 | 85.0 % |');
    expect(sessionTable(rows)).toContain('| direct | 500/500 | 0 | 0 / 0 / 0 |');
    const charts = sessionCharts(res);
    expect(Object.keys(charts)).toEqual(['cpu', 'sessions', 'latency']);
    for (const svg of Object.values(charts)) expect(svg).toMatch(/^<svg[\s\S]*<\/svg>\s*$/);
    expect(charts.cpu).toContain('nginx');
    expect(charts.cpu).not.toContain('>direct<');
    const md = renderSessionsMarkdown(res, { cpu: 'x-cpu.svg' });
    expect(md).toContain('## 500 sessions');
    expect(md).toContain('![cpu](x-cpu.svg)');
    const readme = sessionsReadmeSection(res, 'sessions-quick');
    expect(readme).toContain('npm run bench:sessions');
    expect(readme).toContain('**Quick profile.**');
    expect(readme).toContain('bench/results/sessions-quick.md');
  });

  it('summarises the largest session count every design carried without overload', () => {
    const at = (n: number, frameRate: number, steadyLoss = 0): ReturnType<typeof sessionRow> => {
      const r = sessionRow(measurement('nginx'));
      return {
        ...r,
        sessions: n,
        frame_rate: frameRate,
        tally: { ...r.tally, lostFrames: { ...r.tally.lostFrames, steady: steadyLoss } },
      };
    };
    const res = {
      sizes: [250, 500, 1000],
      rows: [at(250, 50), at(500, 50, 12), at(1000, 40)],
      profile: 'default',
      duration_ms: 20_000,
      date: 'd',
      note: '',
    } as SessionResults;
    expect(heldSize(res)).toBe(250);
    const text = sessionsReadmeSection(res, 'sessions');
    expect(text).toContain('250 sessions, 20 s');
    expect(text).toContain('at 500, 1000 sessions the machine was saturated');
    expect(heldSize({ ...res, rows: [at(250, 30), at(500, 30), at(1000, 30)] })).toBe(1000);
  });
});

describe('latencyFrames', () => {
  it('measures latency on the frames sent before the tier restart only', () => {
    const plan = planSessions({ seed: 1, sessions: 10, durationMs: 20_000, rebindShare: 0.1 });
    const n = latencyFrames(plan);
    // 55 % of 20 s at 50 frames/s; the restart comes at frame 600.
    expect(n).toBe(550);
    expect(n).toBeLessThan((plan.restartAtMs / 1000) * FRAME_RATE);
  });
});
