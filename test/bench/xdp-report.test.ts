// bench:xdp's pure parts: the kernel's BPF program fdinfo, what quic-lb serve says it carried,
// the CPU breakdown and the subtraction of the no-LB path, and the Markdown report.
import { describe, expect, it } from 'vitest';
import { parseProgFdinfo } from '../../bench/xdp/bpf-stats.js';
import {
  DIRECT_ID,
  carried,
  cpuBreakdown,
  cpuOverDirect,
  renderXdpMarkdown,
  sumSeries,
  type XdpExtra,
} from '../../bench/xdp/report.js';
import { xdpRouters } from '../../bench/xdp/run.js';
import { baseResults } from '../../bench/harness/suite.js';
import type { TrialCpu } from '../../bench/native/native.js';
import type { RateStep } from '../../bench/report/types.js';

const FDINFO = [
  'pos:\t0',
  'flags:\t02000002',
  'mnt_id:\t15',
  'ino:\t1057',
  'prog_type:\t6',
  'prog_jited:\t1',
  'prog_tag:\tf62b5c2cbe3f37cd',
  'memlock:\t69632',
  'prog_id:\t1983',
  'run_time_ns:\t123456789',
  'run_cnt:\t1000000',
  'recursion_misses:\t0',
  'verified_insns:\t5000',
  '',
].join('\n');

function trial(router: string, pps: number, received: number, loss: number, us: Partial<TrialCpu> = {}): TrialCpu {
  return {
    router,
    rate: pps,
    received,
    pps,
    loss,
    router_us: 0,
    blast_us: 0,
    sink_us: 0,
    softirqd_us: 0,
    ...us,
  };
}

const step = (rate: number, cpu: number | null, pass: boolean, round = 1): RateStep => ({
  rate,
  offered_pps: rate,
  pps: rate,
  loss: pass ? 0 : 0.5,
  cpu_us_per_packet: cpu,
  pass,
  round,
});

describe('bench:xdp figures', () => {
  it('parseProgFdinfo reads a BPF program fd (id, type, run time, runs) and rejects other fds', () => {
    expect(parseProgFdinfo(FDINFO)).toEqual({ id: 1983, type: 6, run_time_ns: 123456789, run_cnt: 1000000 });
    // stats off: no run_time_ns lines
    expect(parseProgFdinfo('prog_type:\t6\nprog_id:\t7\n')).toEqual({ id: 7, type: 6, run_time_ns: 0, run_cnt: 0 });
    expect(parseProgFdinfo('pos:\t0\nflags:\t02\nmnt_id:\t15\n')).toBeNull();
    expect(parseProgFdinfo('map_type:\t2\nmap_id:\t5\n')).toBeNull();
  });

  it('carried: routed and fallback datagrams, XDP and node:dgram apart; passes and drops are not forwarded', () => {
    const m = new Map<string, number>([
      ['quic_lb_xdp_packets_total{reason="routed"}', 900],
      ['quic_lb_xdp_packets_total{reason="fallback_initial"}', 50],
      ['quic_lb_xdp_packets_total{reason="not_vip"}', 7],
      ['quic_lb_xdp_packets_total{reason="dropped_malformed"}', 3],
      ['quic_lb_received_packets_total{reason="routed"}', 20],
      ['quic_lb_received_packets_total{reason="fallback_unknown_config"}', 5],
      ['quic_lb_received_packets_total{reason="dropped_malformed"}', 2],
    ]);
    expect(carried(m)).toEqual({ xdp: 950, node: 25 });
    expect(sumSeries(m, 'quic_lb_xdp_packets_total', 'reason="')).toBe(960);
    expect(carried(new Map())).toEqual({ xdp: 0, node: 0 });
  });

  it('cpuBreakdown: medians per datagram over held trials at >= half the highest held rate', () => {
    const trials = [
      trial('a', 100_000, 100_000, 0, { router_us: 500_000, blast_us: 300_000, sink_us: 100_000 }), // 5, 3, 1
      trial('a', 200_000, 200_000, 0.0005, { router_us: 800_000, blast_us: 400_000, sink_us: 200_000 }), // 4, 2, 1
      trial('a', 150_000, 150_000, 0, {
        router_us: 450_000,
        blast_us: 300_000,
        sink_us: 150_000,
        softirqd_us: 150_000,
      }), // 3, 2, 1, 1
      trial('a', 400_000, 300_000, 0.25, { router_us: 1 }), // lost too much: out
      trial('a', 50_000, 50_000, 0, { router_us: 5_000_000 }), // below half of 200 k: out
      trial('b', 300_000, 300_000, 0, { router_us: 3 }),
    ];
    expect(cpuBreakdown(trials, 'a', 0.001)).toEqual({
      trials: 3,
      total: 7,
      router: 4,
      blast: 2,
      sink: 1,
      softirqd: 0,
    });
    expect(cpuBreakdown(trials, 'c', 0.001)).toBeNull();
    expect(cpuBreakdown([trial('a', 1000, 1000, 0.5)], 'a', 0.001)).toBeNull();
  });

  it('cpuOverDirect: minus the no-LB path at the same round and rate, held on both sides', () => {
    const steps: Record<string, RateStep[]> = {
      [DIRECT_ID]: [step(100, 3, true), step(130, 2.5, true), step(100, 4, true, 2), step(170, 2, false)],
      xdp: [step(100, 5, true), step(130, 4, true), step(100, 7, true, 2), step(170, 9, true), step(200, 1, false)],
    };
    // pairs: (1,100) 2, (1,130) 1.5, (2,100) 3 -> median 2; (1,170): no-LB failed
    expect(cpuOverDirect(steps, 'xdp')).toBe(2);
    expect(cpuOverDirect(steps, 'none')).toBeNull();
    expect(cpuOverDirect({ xdp: steps.xdp }, 'xdp')).toBeNull();
  });

  it('xdpRouters: native rows only when native attach works; nginx, the bare relay and the no-LB path always', () => {
    const ids = (native: boolean): string[] => xdpRouters(native).map((r) => r.id);
    expect(ids(true)).toEqual([
      'quic-lb-plaintext-xdp-native',
      'quic-lb-plaintext-xdp-generic',
      'quic-lb-plaintext',
      'quic-lb-four-pass-xdp-native',
      'quic-lb-four-pass-xdp-generic',
      'quic-lb-four-pass',
      'nginx',
      'bare-relay',
      DIRECT_ID,
    ]);
    expect(ids(false).filter((id) => id.includes('native'))).toEqual([]);
    expect(ids(false)).toHaveLength(7);
  });

  it('renderXdpMarkdown: a row per router with its rounds, breakdown, XDP share and program time; ratios; limits', () => {
    const res = baseResults({
      kind: 'forwarder',
      profile: 'quick',
      preliminary: false,
      note: '',
      command: 'npm run bench:xdp',
    });
    res.routers = [
      {
        id: 'quic-lb-plaintext-xdp-native',
        label: 'quic-lb serve (plaintext, XDP native)',
        family: 'quic-lb',
        workers: 1,
      },
      { id: 'nginx', label: 'nginx stream UDP proxy', family: 'nginx', workers: 1 },
    ];
    const row = (router: string, pps: number): (typeof res.results)[number] => ({
      router,
      scenario: 'steady',
      pps,
      offered_pps: pps,
      loss: 0,
      cpu_us_per_packet: 4,
      redis_cpu_us_per_packet: null,
      p50_us: null,
      p99_us: null,
      correct_ratio: 1,
      misdelivered: 0,
      rss_mb: 50,
      redis_mem_mb: null,
    });
    res.results = [{ ...row('quic-lb-plaintext-xdp-native', 290_000), p50_us: 31, p99_us: 106 }, row('nginx', 185_000)];
    res.params.latency_pps = 5000;
    res.rounds = {
      'quic-lb-plaintext-xdp-native': [
        { pps: 280_000, cpu_us_per_packet: 4 },
        { pps: 290_000, cpu_us_per_packet: 4 },
      ],
      nginx: [{ pps: 185_000, cpu_us_per_packet: 8 }],
    };
    res.ratios = { 'quic-lb-plaintext-xdp-native/nginx pps': 1.568 };
    const x: XdpExtra = {
      topology: 'TOPOLOGY',
      cpu_method: 'METHOD',
      native_unavailable: '',
      breakdown: {
        'quic-lb-plaintext-xdp-native': { trials: 4, total: 4.41, router: 0, blast: 3.59, sink: 0.83, softirqd: 0 },
        nginx: null,
      },
      carried: { 'quic-lb-plaintext-xdp-native': { xdp: 999, node: 1 } },
      program_ns: { 'quic-lb-plaintext-xdp-native': 212 },
      lb_cpu_over_direct: { 'quic-lb-plaintext-xdp-native': 2.39, nginx: 5.47 },
      limits: ['THE GENERATOR'],
    };
    const md = renderXdpMarkdown(res, x);
    expect(md).toContain(
      '| quic-lb serve (plaintext, XDP native) | 290,000 | 280,000, 290,000 | 4.41 | 2.39 | 0 | 3.59 | 0.83 | 0 | 99.9 % | 212 | 31 / 106 |',
    );
    expect(md).toContain('| nginx stream UDP proxy | 185,000 | 185,000 | – | 5.47 | – | – | – | – | – | – | – / – |');
    expect(md).toContain('| quic-lb-plaintext-xdp-native/nginx pps | 1.568 |');
    expect(md).toContain('- THE GENERATOR');
    expect(md).toContain('one trial per router at 5,000 datagrams/s');
    expect(md).toContain('Topology: TOPOLOGY');
    expect(md).not.toContain('native attach not measured');
    expect(md).not.toMatch(/\n\n\n/);
    expect(renderXdpMarkdown(res, { ...x, native_unavailable: 'WHY' })).toContain(
      'XDP native attach not measured: WHY',
    );
  });
});
