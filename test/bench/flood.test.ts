// The flood benchmark's pure parts: how a gtlsclient run is judged (handshake time from ngtcp2's
// own clock, Retry seen, body checked), how rounds fold into rows, the verdicts (saturation
// without the offload, the rate the offload holds, the 10x target, the LB's ceiling), the LB
// config it writes (the contract's `retry` section) and the report.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BODY_SIZE, judge, parseClientOutput, type ClientOutcome } from '../../bench/flood/clients.js';
import {
  floodRow,
  floodRows,
  floodVerdict,
  markdownTable,
  percentileOf,
  renderFloodMarkdown,
  type FloodResults,
  type FloodRow,
  type StepMeasurement,
} from '../../bench/flood/report.js';
import { floodConfig, type Mode } from '../../bench/flood/topology.js';
import type { Fleet } from '../netns/netns.js';

// A gtlsclient run through a Retry (lines as ngtcp2 prints them, shortened).
const RETRIED = [
  'I00000000 0xb850 pkt tx pkn=0 dcid=0x1dc8 scid=0xb850 version=0x00000001 type=Initial len=0',
  'I00000002 0xb850 pkt rx pkn=0 dcid=0xb850 scid=0x0889 version=0x00000001 type=Retry len=0',
  'I00000002 0xb850 pkt tx pkn=1 dcid=0x0889 scid=0xb850 version=0x00000001 type=Initial len=0',
  'I00000041 0xb850 frm rx 0 Handshake PADDING(0x00) len=371',
  'http: control stream=2',
  'I00000043 0xb850 con processing buffered handshake packet',
  'QUIC handshake has completed',
  'Negotiated ALPN is h3',
  'I00000055 0xb850 frm tx 3 1RTT CONNECTION_CLOSE(0x1d)',
].join('\n');
const demoBody = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));

describe('judging a legitimate client', () => {
  it('reads the handshake time from the last ngtcp2 timestamp before the completion line, and the Retry', () => {
    expect(parseClientOutput(RETRIED)).toEqual({ handshakeMs: 43, retried: true });
    expect(parseClientOutput(RETRIED.replace('type=Retry', 'type=Handshake'))).toEqual({
      handshakeMs: 43,
      retried: false,
    });
    expect(parseClientOutput(RETRIED.replace('QUIC handshake has completed', 'handshake timeout'))).toEqual({
      handshakeMs: null,
      retried: true,
    });
  });

  it('counts a success only for a handshake within the deadline and the right body', () => {
    expect(judge(RETRIED, demoBody(BODY_SIZE), 2500)).toEqual({
      handshake: true,
      body: true,
      handshakeMs: 43,
      retried: true,
    });
    expect(judge(RETRIED, demoBody(BODY_SIZE), 40).handshake).toBe(false);
    const wrong = demoBody(BODY_SIZE);
    wrong[500] ^= 1;
    expect(judge(RETRIED, wrong, 2500).body).toBe(false);
    expect(judge(RETRIED, demoBody(BODY_SIZE - 1), 2500).body).toBe(false);
    expect(judge(RETRIED, undefined, 2500)).toMatchObject({ handshake: true, body: false });
  });
});

const okClient = (ms: number): ClientOutcome => ({ handshake: true, body: true, handshakeMs: ms, retried: false });
const failed: ClientOutcome = { handshake: false, body: false, handshakeMs: null, retried: false };

function stepOf(o: Partial<StepMeasurement> & { mode: Mode; rate: number; clients: ClientOutcome[] }): StepMeasurement {
  return {
    round: 1,
    elapsedMs: 5000,
    sent: o.rate * 5,
    sentOctets: o.rate * 5 * 1228,
    backOctets: 0,
    backPackets: 0,
    lbCpuUs: 500_000,
    backendCpuUs: 1_000_000,
    lbDrops: 0,
    backendDrops: 0,
    startMs: 1500,
    busyCores: 1.5,
    lbMetrics: {},
    ...o,
  };
}

describe('rows', () => {
  it('pools client outcomes over rounds and takes medians of the per-round costs', () => {
    const a = stepOf({
      mode: 'off',
      rate: 1000,
      clients: [okClient(80), okClient(120), failed, { ...okClient(110), body: false }],
      backOctets: 1000 * 5 * 1228 * 3,
      backendCpuUs: 4_000_000,
      lbDrops: 50,
      lbMetrics: { 'quic_lb_received_packets_total{reason="dropped_no_backend"}': 500 },
    });
    const b = stepOf({ mode: 'off', rate: 1000, round: 2, clients: [okClient(100)], backOctets: 1000 * 5 * 1228 });
    const c = stepOf({ mode: 'off', rate: 1000, round: 3, clients: [okClient(90)], backOctets: 1000 * 5 * 1228 * 2 });
    const r = floodRow([a, b, c]);
    expect(r).toMatchObject({
      mode: 'off',
      rate: 1000,
      rounds: 3,
      achieved_rate: 1000,
      attempts: 6,
      succeeded: 5,
      success_pct: 83.3,
      handshake_p50_ms: 100,
      handshake_p99_ms: 120,
      body_pct: 80,
      backend_cpu_pct: 20, // rounds: 80 %, 20 %, 20 % of one core
      lb_cpu_pct: 10,
      lb_us_per_initial: 100, // 500 ms of CPU for 5000 Initials
      amplification: 2,
      lb_drop_pct: 0,
      no_backend_pct: 0,
    });
    expect(floodRow([a]).lb_drop_pct).toBe(1);
    expect(floodRow([a]).lb_us_per_initial).toBe(Math.round(500_000 / (5000 - 50)));
    expect(floodRow([a]).no_backend_pct).toBe(10);
  });

  it('has no flood figures at rate 0 and keeps the rates x modes order', () => {
    const steps = [
      stepOf({ mode: 'always', rate: 500, clients: [okClient(1)] }),
      stepOf({ mode: 'off', rate: 500, clients: [okClient(1)] }),
      stepOf({ mode: 'off', rate: 0, clients: [okClient(1)] }),
    ];
    const rows = floodRows(steps, ['off', 'load', 'always'], [0, 500]);
    expect(rows.map((r) => `${r.rate}/${r.mode}`)).toEqual(['0/off', '500/off', '500/always']);
    expect(rows[0]).toMatchObject({ amplification: null, lb_drop_pct: null, achieved_rate: 0 });
  });

  it('percentileOf is nearest-rank', () => {
    expect(percentileOf([], 50)).toBeNull();
    expect(percentileOf([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(
      percentileOf(
        Array.from({ length: 100 }, (_, i) => i + 1),
        99,
      ),
    ).toBe(99);
  });
});

function row(mode: Mode, rate: number, success: number, p50: number, lbDrop = 0): FloodRow {
  return {
    mode,
    rate,
    rounds: 1,
    achieved_rate: rate,
    attempts: 100,
    succeeded: success,
    success_pct: success,
    handshake_p50_ms: p50,
    handshake_p99_ms: p50 * 2,
    body_pct: 100,
    retried_pct: mode === 'off' ? 0 : 100,
    backend_cpu_pct: 10,
    lb_cpu_pct: 10,
    lb_us_per_initial: 20,
    amplification: 0.1,
    lb_drop_pct: rate === 0 ? null : lbDrop,
    backend_drop_pct: 0,
    no_backend_pct: 0,
    busy_cores: 1,
    lb_metrics: {},
  };
}

describe('floodVerdict', () => {
  const rates = [250, 500, 1000, 2500, 5000, 10000];

  it('finds the saturation rate, the rate the offload holds, the 10x target and the LB ceiling', () => {
    const rows = [
      row('off', 0, 100, 40),
      ...rates.map((r) => row('off', r, r >= 1000 ? 70 : 100, r === 500 ? 141 : 45)),
      ...rates.map((r) => row('always', r, 100, 60, r >= 5000 ? 3 : 0)),
      ...rates.map((r) => row('load', r, r === 10000 ? 97 : 100, 60)),
    ];
    const v = floodVerdict(rows, 2);
    // 500/s: success held but the p50 (141 ms) is more than 100 ms over the unloaded 40 ms
    expect(v).toEqual({
      baseline_p50_ms: 40,
      saturation_rate: 500,
      held_rate: { load: 5000, always: 10000 },
      target_met: { load: true, always: true },
      lb_ceiling: { load: null, always: 5000 },
      max_achieved: { load: 10000, always: 10000 },
      ceiling_machine_busy: { always: false },
    });
    expect(floodVerdict(rows, 1).ceiling_machine_busy).toEqual({ always: true });
  });

  it('says not met when a rate >= 10x saturation fails, and undecidable when none was run', () => {
    const rows = [
      ...rates.map((r) => row('off', r, r >= 1000 ? 50 : 100, 50)),
      ...rates.map((r) => row('always', r, r >= 2500 ? 98 : 100, 60)),
    ];
    expect(floodVerdict(rows, 2)).toMatchObject({ saturation_rate: 1000, held_rate: { always: 1000 } });
    expect(floodVerdict(rows, 2).target_met.always).toBe(false);
    const short = [row('off', 500, 50, 50), row('always', 500, 100, 50), row('always', 2500, 100, 50)];
    expect(floodVerdict(short, 2).target_met.always).toBeNull();
    expect(floodVerdict([row('off', 500, 100, 50), row('always', 500, 100, 50)], 2)).toMatchObject({
      saturation_rate: null,
      target_met: { always: null },
    });
  });
});

describe('the LB config', () => {
  const fleet = {
    vip: '198.19.0.1',
    backends: [
      { index: 1, address: '198.18.21.2' },
      { index: 2, address: '198.18.22.2' },
    ],
  } as unknown as Fleet;
  const load = { onPerSecond: 200, offPerSecond: 100, offAfterMs: 2000, transitionMs: 1000 };
  const cfg = (mode: Mode): Record<string, unknown> =>
    parse(
      floodConfig(fleet, {
        mode,
        keyFile: '/k/retry.key',
        quicLbKey: '00'.repeat(16),
        fallbackKey: '11'.repeat(16),
        load,
        workers: 2,
      }),
    ) as Record<string, unknown>;

  it('has the contract`s retry section for load and always, none for off', () => {
    expect(cfg('off').retry).toBeUndefined();
    expect(cfg('always').retry).toEqual({ mode: 'always', keyFiles: ['/k/retry.key'], tokenLifetimeSeconds: 10, load });
    expect((cfg('load').retry as { mode: string }).mode).toBe('load');
    expect(cfg('load').backends).toEqual([
      { name: 'be1', address: '198.18.21.2:4434', weight: 1, serverIds: { '0': '0001' } },
      { name: 'be2', address: '198.18.22.2:4434', weight: 1, serverIds: { '0': '0002' } },
    ]);
    expect(cfg('load').listen).toEqual(['198.19.0.1:4433']);
    expect(cfg('off').workers).toBe(2);
  });
});

describe('the report', () => {
  const rows = [row('off', 0, 100, 40), row('off', 1000, 60, 200), row('always', 1000, 100, 70)];
  const res: FloodResults = {
    date: '2026-12-02T16:00:00.000Z',
    commit: 'abc1234',
    node: 'v20.20.2',
    profile: 'quick',
    command: 'npm run bench:flood -- --quick',
    note: 'Other work kept 1.20 cores busy',
    duration_s: 50,
    machine: { cpu_model: 'Xeon', cores: 2, kernel: '6.1', loadavg_start: [1, 1, 1] },
    params: {
      rates: [0, 1000],
      ceiling_rates: [],
      modes: ['off', 'load', 'always'],
      rounds: 1,
      flood_ms: 4500,
      legit_rate: 10,
      client_window_ms: 2000,
      deadline_ms: 2000,
      sources: 30000,
      workers: 1,
      load: { onPerSecond: 200, offPerSecond: 100, offAfterMs: 2000, transitionMs: 1000 },
      backend_retry_key: true,
    },
    skipped: { load: 'the LB build has no offload' },
    rows,
    verdict: floodVerdict(rows, 2),
  };

  it('states the command, the machine, the note, the verdict and one line per row', () => {
    const md = renderFloodMarkdown(res);
    expect(md).toContain('`npm run bench:flood -- --quick`');
    expect(md).toContain('Xeon, 2 cores');
    expect(md).toContain('a fresh LB (1 worker, `retry.mode`');
    expect(md).toContain('> Other work kept 1.20 cores busy');
    expect(md).toContain('saturate at **1000/s**');
    expect(md).toContain('Offload `load`: not run (the LB build has no offload)');
    expect(md).toContain('Offload `always`: >= 99 % legitimate success up to **1000/s**');
    expect(md).toContain("up to 1000/s sent (the LB's ceiling is above)");
    const dropping = floodVerdict([rows[0], rows[1], { ...rows[2], lb_drop_pct: 5 }], 2);
    expect(renderFloodMarkdown({ ...res, verdict: dropping })).toContain('drops > 1 % of the flood from **1000/s**.');
    const busy = floodVerdict([rows[0], rows[1], { ...rows[2], lb_drop_pct: 5, busy_cores: 1.95 }], 2);
    expect(renderFloodMarkdown({ ...res, verdict: busy })).toContain(
      'from **1000/s** (every core of the machine was busy',
    );
    expect(md).toContain('| 1000 | always | 1000 | 100/100 (100 %) | 70 | 140 | 100 % | 100 % | 10 | 10 | 20 | 0.1 |');
    expect(markdownTable(rows).split('\n')).toHaveLength(2 + rows.length);
    expect(md).not.toContain('took no `--retry-key-file`');
    const keyless = { ...res, params: { ...res.params, backend_retry_key: false } };
    expect(renderFloodMarkdown(keyless)).toContain("This build's demo backend took no `--retry-key-file`");
  });
});
