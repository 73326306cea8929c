// Live VIP-path downloads (gtlsclient --no-preferred-addr, so every packet goes through the LB)
// while the fleet changes under them and a light spoofed flood runs (issue 10, findings 3, 5,
// 7): a backend drains (SIGUSR2), its probe answers are lost for a few seconds, the return-path
// HMAC key rotates ([old] -> [old,new] -> [new,old] -> [new], SIGHUP to the LB and the backends
// at each step), and reloads overlap (SIGHUPs with alternating config files, two workers).
// Every download must complete intact; each case also asserts what `blast` asserts.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { type Ns } from '../netns/netns.js';
import { ProxyDirection } from '../../src/wire/proxy-v2.js';
import {
  CONTRACT,
  QUIC_LB_KEYS,
  VICTIM,
  VIP_PORT,
  blast,
  deadProcesses,
  downloads,
  lbConfig,
  lbRssMb,
  metricSum,
  scrape,
  signal,
  startHostile,
  useHostile,
  type Hostile,
  type LbOptions,
} from './harness.js';
import { mintedCid, proxyForgeries, shortHeader } from './payloads.js';
import { recordCase, type CaseResult } from './summary.js';
import { sleep, waitFor } from '../helpers/wait.js';

/** Concurrent downloads per case and their size (the demo's /bytes/N). */
const DOWNLOADS = 4;
const SIZE = 4_000_000;
/**
 * The router's link toward the client is held to this rate, so the downloads last ~8 s: long
 * enough that a drain or a probe loss (which takes ~3 s to mark a backend down) hits them.
 */
const CLIENT_LINK = ['rate', '16mbit', 'burst', '64kb', 'latency', '100ms'];

/** The light background flood of every live case: spoofed short headers at the VIP. */
function backgroundFlood(name: string): Parameters<typeof blast>[1] {
  const payloads = Array.from({ length: 64 }, (_, i) =>
    shortHeader(i % 2 ? randomBytes(8) : mintedCid(0, QUIC_LB_KEYS[0], Uint8Array.of(0, 1)), 100),
  );
  return {
    name: `${name}: background flood`,
    target: 'vip',
    payloads,
    sport: 'random',
    sources: 256,
    count: 3000,
    rate: 1000,
    record: false,
    exclusive: false,
  };
}

/**
 * Runs `act` while DOWNLOADS downloads and the background flood run; records one case with the
 * downloads (scenario `scenario`), the flood's figures and `act`'s own violations.
 */
async function live(
  h: Hostile,
  name: string,
  scenario: string,
  act: () => Promise<string[]>,
  withFlood = true,
): Promise<CaseResult> {
  const dl = downloads(h, DOWNLOADS, SIZE);
  // (a case whose `act` runs blasts of its own goes without: blasts share the counters)
  const flood = withFlood ? blast(h, backgroundFlood(name)) : undefined;
  await sleep(800); // the downloads are under way
  let actViolations: string[];
  try {
    actViolations = await act();
  } catch (e) {
    actViolations = [`${scenario}: ${String(e)}`];
  }
  const [d, f] = await Promise.all([dl, flood]);
  const dead = deadProcesses(h);
  const base: CaseResult = f?.result ?? {
    case: name,
    datagrams: 0,
    octetsFromAttacker: 0,
    octetsTowardUnvalidated: 0,
    octetsTowardVictims: 0,
    amplification: 0,
    amplificationLimit: 1,
    crashes: dead.length,
    rssMb: lbRssMb(h),
    violations: dead.length > 0 ? [`processes down: ${dead.join(', ')}`] : [],
  };
  const result: CaseResult = {
    ...base,
    case: name,
    downloads: { ok: d.ok, total: d.total, scenario },
    violations: [...base.violations, ...actViolations, ...d.failures.map((x) => `download failed: ${x}`)],
  };
  recordCase(result);
  return result;
}

/** The backend that has sent the most reply octets through the LB so far (the downloads' main carrier), and how many. */
async function busiestBackend(h: Hostile): Promise<{ be: Ns; octets: number }> {
  const m = await scrape(h.fleet, h.lbNs);
  const octets = (b: Ns): number =>
    metricSum(m, 'quic_lb_backend_bytes_total', `backend="be${b.index}",direction="to_client"`);
  const be = [...h.fleet.backends].sort((a, b) => octets(b) - octets(a))[0];
  return { be, octets: octets(be) };
}
/** A case that acts on a backend carrying less than this proves nothing. */
const CARRIED_MIN = 200_000;
/** How long {@link carryingBackend} waits for the downloads to reach CARRIED_MIN on one backend. */
const CARRYING_WAIT_MS = 6_000;

/**
 * The busiest backend once it has carried CARRIED_MIN octets (handshakes under the flood on a
 * loaded machine can take seconds), or, after CARRYING_WAIT_MS, the busiest one as it is: the
 * case then reports that it proved nothing rather than acting on an idle backend.
 */
async function carryingBackend(h: Hostile): Promise<{ be: Ns; octets: number }> {
  const end = Date.now() + CARRYING_WAIT_MS;
  for (;;) {
    const b = await busiestBackend(h);
    if (b.octets >= CARRIED_MIN || Date.now() >= end) return b;
    await sleep(100);
  }
}

/** One fleet per scenario: started before its test, torn down after it; the client link shaped (CLIENT_LINK). */
function useLiveFleet(o: LbOptions): { ready: (name: string) => Hostile } {
  return useHostile(async () => {
    const h = await startHostile(o);
    await h.fleet.execOk(h.fleet.router, [
      'tc',
      'qdisc',
      'add',
      'dev',
      h.fleet.client.routerIfname,
      'root',
      'tbf',
      ...CLIENT_LINK,
    ]);
    return h;
  });
}

describe('hostile live: drain', () => {
  const fx = useLiveFleet({ workers: 1 });
  it(`a backend drained (SIGUSR2) during ${DOWNLOADS} VIP-path downloads: every download completes`, async () => {
    const name = 'drain during VIP-path downloads';
    const h = fx.ready(name);
    const r = await live(h, name, 'drain', async () => {
      const { be, octets } = await carryingBackend(h);
      signal(h.backends.get(`be${be.index}`)!, 'SIGUSR2');
      await sleep(3000); // past the LB's fall count: the drain has taken effect while the downloads run
      return octets >= CARRIED_MIN
        ? []
        : [`be${be.index} carried only ${octets} octets before the drain: the case proves nothing`];
    });
    expect(r.violations).toEqual([]);
  }, 120_000);
});

describe('hostile live: probe loss', () => {
  const fx = useLiveFleet({ workers: 1 });
  it(`the busiest backend's probe answers lost for 5 s during ${DOWNLOADS} VIP-path downloads: every download completes`, async () => {
    const name = 'probe loss during VIP-path downloads';
    const h = fx.ready(name);
    const r = await live(h, name, 'probe loss', async () => {
      const { fleet } = h;
      const { be, octets } = await carryingBackend(h);
      // On the router: what the backend sends to the LB's own address (only probe answers: replies go
      // to the return port on the VIP) is blackholed, silently (no ICMP on the EINVAL path).
      const rule = [
        'ip',
        'rule',
        'add',
        'from',
        `${be.address}/32`,
        'to',
        `${h.lbNs.address}/32`,
        'blackhole',
        'pref',
        '100',
      ];
      const m0 = await scrape(fleet, h.lbNs);
      await fleet.execOk(fleet.router, rule);
      try {
        await sleep(5000);
      } finally {
        await fleet.execOk(fleet.router, ['ip', 'rule', 'del', 'pref', '100']);
      }
      const m1 = await scrape(fleet, h.lbNs);
      const label = `backend="be${be.index}",result="failed"`;
      const failed =
        metricSum(m1, 'quic_lb_health_checks_total', label) - metricSum(m0, 'quic_lb_health_checks_total', label);
      const v =
        failed >= 3 ? [] : [`only ${failed} of be${be.index}'s probes failed: the probe loss did not take effect`];
      return octets >= CARRIED_MIN
        ? v
        : [...v, `be${be.index} carried only ${octets} octets before the probe loss: the case proves nothing`];
    });
    expect(r.violations).toEqual([]);
  }, 120_000);
});

describe('hostile live: HMAC key rotation', () => {
  const OLD = randomBytes(32).toString('hex');
  const NEW = randomBytes(32).toString('hex');
  const fx = useLiveFleet({ workers: 1, hmacKeys: [OLD] });
  it(`[old] -> [old,new] -> [new,old] -> [new] during ${DOWNLOADS} VIP-path downloads: no reply rejected, every download completes`, async () => {
    const name = 'HMAC rotation during VIP-path downloads';
    const h = fx.ready(name);
    const { fleet } = h;
    const m0 = await scrape(fleet, h.lbNs);
    const r = await live(h, name, 'key rotation', async () => {
      const v: string[] = [];
      for (const keys of [[OLD, NEW], [NEW, OLD], [NEW]]) {
        const before = metricSum(await scrape(fleet, h.lbNs), 'quic_lb_config_reloads_total', 'outcome="success"');
        writeFileSync(h.config, lbConfig(fleet, { ...h.options, hmacKeys: keys, keyList: true }));
        // The order of a real rollout: every LB accepts a key before any backend signs with it.
        signal(h.lb, 'SIGHUP');
        const ok = await waitFor(
          'LB reload',
          async () =>
            metricSum(await scrape(fleet, h.lbNs), 'quic_lb_config_reloads_total', 'outcome="success"') > before,
          5000,
        ).then(
          () => true,
          () => false,
        );
        if (!ok)
          v.push(
            `the LB did not reload to [${keys.map((k) => (k === OLD ? 'old' : 'new')).join(',')}]: ${CONTRACT.hmacKeys} refused?`,
          );
        for (const b of h.backends.values()) signal(b, 'SIGHUP');
        await sleep(1000);
      }
      return v;
    });
    const m1 = await scrape(fleet, h.lbNs);
    const hmacRejected =
      metricSum(m1, CONTRACT.returnRejected, 'reason="hmac"') - metricSum(m0, CONTRACT.returnRejected, 'reason="hmac"');
    if (hmacRejected > 0)
      r.violations.push(`${hmacRejected} return datagrams rejected for their HMAC during the rotation`);
    // the old key is retired at the end: a header signed with it (from a backend's address) is refused
    const retired = proxyForgeries('replayed', {
      victims: [VICTIM],
      victimPort: 443,
      vip: fleet.vip,
      vipPort: VIP_PORT,
      payload: shortHeader(randomBytes(8), 100),
      direction: ProxyDirection.TO_CLIENT,
      signedWith: Buffer.from(OLD, 'hex'),
    });
    const after = await blast(h, {
      name: `${name}: old key retired`,
      target: 'return',
      payloads: retired,
      sport: 4434,
      src: fleet.backends[0].address,
      count: 50,
      rate: 500,
      victimsGetNothing: true,
    });
    expect({ rotation: r.violations, retired: after.result.violations }).toEqual({ rotation: [], retired: [] });
  }, 120_000);
});

describe('hostile live: overlapping reloads', () => {
  const fx = useLiveFleet({ workers: 2 });
  it(`SIGHUPs with alternating config files in quick succession, 2 workers, during ${DOWNLOADS} downloads: consistent, nothing lost`, async () => {
    const name = 'overlapping reloads during VIP-path downloads (2 workers)';
    const h = fx.ready(name);
    const { fleet } = h;
    const A = lbConfig(fleet, { ...h.options, configIds: [0] });
    const B = lbConfig(fleet, { ...h.options, configIds: [0, 1] });
    // CID-routed datagrams of config 1: `routed` only where config 1 is loaded, in every worker
    const config1 = Array.from({ length: 64 }, () =>
      shortHeader(mintedCid(1, QUIC_LB_KEYS[1], Uint8Array.of(0, 1)), 80),
    );
    const burst = async (last: string): Promise<void> => {
      for (let i = 0; i < 12; i++) {
        writeFileSync(h.config, i % 2 === 0 ? (last === B ? A : B) : last);
        signal(h.lb, 'SIGHUP');
        await sleep(15);
      }
    };
    const checkConfig1 = async (expectLoaded: boolean, label: string): Promise<string[]> => {
      await sleep(2500); // settle: every apply has finished
      const o = await blast(h, {
        name: `${name}: config 1 ${label}`,
        target: 'vip',
        payloads: config1,
        sport: 'random',
        sources: 512,
        count: 400,
        rate: 1000,
        record: false,
        exclusive: false,
      });
      const routed = o.delta['quic_lb_cid_packets_total{config_id="1",result="routed"}'] ?? 0;
      const unknown = o.delta['quic_lb_received_packets_total{reason="fallback_unknown_config"}'] ?? 0;
      const v = [...o.result.violations];
      if (expectLoaded && routed !== o.send.sent)
        v.push(
          `after a burst ending on [0,1]: ${routed} of ${o.send.sent} config-1 datagrams routed (${unknown} unknown config): workers disagree or the last file was not applied`,
        );
      if (!expectLoaded && unknown !== o.send.sent)
        v.push(
          `after a burst ending on [0]: ${unknown} of ${o.send.sent} config-1 datagrams unknown (${routed} routed): workers disagree or the last file was not applied`,
        );
      const m = await scrape(fleet, h.lbNs);
      if (m.get('quic_lb_config_last_reload_success') !== 1)
        v.push('quic_lb_config_last_reload_success is not 1 after valid files');
      return v;
    };
    const r = await live(
      h,
      name,
      'overlapping reloads',
      async () => {
        await burst(B);
        const v = await checkConfig1(true, 'loaded');
        await burst(A);
        return [...v, ...(await checkConfig1(false, 'removed'))];
      },
      false,
    );
    expect(r.violations).toEqual([]);
  }, 120_000);
});

describe('hostile live: dual-stack backends', () => {
  const fx = useLiveFleet({ workers: 1, dualStackBackends: true });
  it(`backends on [::]:4434 with --allow-lb naming the LB's IPv4 address: ${DOWNLOADS} VIP-path downloads complete`, async () => {
    const name = 'dual-stack backends with --allow-lb (IPv4 LB)';
    const h = fx.ready(name);
    // nothing happens to the fleet: the LB's datagrams must simply be accepted (they arrive as ::ffff:198.18.11.2)
    const r = await live(h, name, 'dual-stack backends', async () => []);
    expect(r.violations).toEqual([]);
  }, 120_000);
});
