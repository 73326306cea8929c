// A slow link out of the LB while a flood is forwarded (issue 10, finding 4): the LB's send
// queue toward a backend must stay bounded (socket.maxQueuedDatagrams / maxQueuedOctets), its
// overflow dropped and counted (quic_lb_send_errors_total{reason="queue_full"}), and nothing
// counted as forwarded that never left.
//
// The link: `tc qdisc add dev eth0 root tbf rate 1mbit burst 32kbit limit 32mb` on the LB's
// only link (the LB->backend path and everything else the LB sends). `limit 1mb` rather than
// `latency 50ms`: with a 50 ms queue the qdisc itself drops the excess (ENOBUFS, which UDP
// swallows) and the sending socket never fills, so the LB's own queue would never be exercised.
// A 32 MB queue holds more than the socket's send buffer (SO_SNDBUF 8 MiB, capped at twice
// net.core.wmem_max), so the socket fills and the application has to queue or drop.
import { describe, expect, it } from 'vitest';
import {
  CONTRACT,
  QUIC_LB_KEYS,
  RSS_GROWTH_LIMIT_MB,
  blast,
  lbRssMb,
  metricSum,
  scrape,
  startHostile,
  udpStats,
  useHostile,
} from './harness.js';
import { OctetCounter } from './native.js';
import { mintedCid, shortHeader } from './payloads.js';
import { recordCase } from './summary.js';
import { sleep } from '../helpers/wait.js';

const FLOOD_COUNT = 60_000;
const FLOOD_RATE = 10_000;
const DATAGRAM = 1200;
const TBF_LIMIT = '32mb';
/** Arrival counting happens on another interface than the LB's counters: allow this many datagrams of slack. */
const SLACK = 64;

describe('hostile slow backend link', () => {
  // probes wait behind the slow queue too: keep the backends up for the whole flood, so the
  // datagrams stay on their way to a backend instead of being refused as dropped_no_backend
  const { ready } = useHostile(() =>
    startHostile({ workers: 1, health: '{ intervalMs: 1000, timeoutMs: 1000, fall: 100, rise: 1 }' }),
  );

  it(`${FLOOD_COUNT} datagrams of ${DATAGRAM} octets at ${FLOOD_RATE}/s through a 1 Mbit/s link: RSS bounded, drops counted`, async () => {
    const name = 'slow backend link (tbf 1 Mbit/s) under a flood';
    const h = ready(name);
    const { fleet, lbNs } = h;
    // arrivals at each backend (datagrams addressed to it), to compare with what the LB counts as forwarded
    const arrivals = await Promise.all(
      fleet.backends.map((b) => OctetCounter.start(fleet, b, h.bin, [`${b.address}/32`])),
    );
    const payloads = Array.from({ length: 256 }, () =>
      shortHeader(mintedCid(0, QUIC_LB_KEYS[0], Uint8Array.of(0, 1)), DATAGRAM),
    );
    const baseline = lbRssMb(h);
    const m0 = await scrape(fleet, lbNs);
    const k0 = await udpStats(fleet, lbNs);
    for (const a of arrivals) await a.reset();
    await fleet.execOk(lbNs, [
      'tc',
      'qdisc',
      'add',
      'dev',
      lbNs.ifname,
      'root',
      'tbf',
      'rate',
      '1mbit',
      'burst',
      '32kbit',
      'limit',
      TBF_LIMIT,
    ]);
    let peak = baseline;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, lbRssMb(h));
        await sleep(200);
      }
    })();
    let tbf: { drops: number; backlog: number } = { drops: 0, backlog: 0 };
    let outcome: Awaited<ReturnType<typeof blast>> | undefined;
    try {
      outcome = await blast(h, {
        name: `${name}: the flood`,
        target: 'vip',
        payloads,
        sport: 'random',
        sources: 64,
        count: FLOOD_COUNT,
        rate: FLOOD_RATE,
        settleMs: 2000,
        // what the LB sends toward the clients waits in the same slow queue: it has not left when
        // the case measures (this case compares forwarded with arrived at the backends instead)
        exclusive: false,
      });
    } finally {
      const st = JSON.parse(
        (await fleet.exec(lbNs, ['tc', '-s', '-j', 'qdisc', 'show', 'dev', lbNs.ifname])).stdout || '[]',
      ) as { kind: string; drops?: number; qlen?: number }[];
      const q = st.find((s) => s.kind === 'tbf');
      tbf = { drops: q?.drops ?? 0, backlog: q?.qlen ?? 0 };
      await fleet.exec(lbNs, ['tc', 'qdisc', 'del', 'dev', lbNs.ifname, 'root']);
      sampling = false;
      await sampler;
    }
    await sleep(3000); // whatever the LB still queues flows out at line rate now
    peak = Math.max(peak, lbRssMb(h));
    const m1 = await scrape(fleet, lbNs);
    const k1 = await udpStats(fleet, lbNs);
    const arrived = (await Promise.all(arrivals.map((a) => a.report()))).reduce((s, r) => s + r.packets, 0);
    const probes = metricSum(m1, 'quic_lb_health_checks_total') - metricSum(m0, 'quic_lb_health_checks_total');
    const forwarded =
      metricSum(m1, 'quic_lb_backend_packets_total', 'to_backend') -
      metricSum(m0, 'quic_lb_backend_packets_total', 'to_backend');
    const queueFull =
      metricSum(m1, CONTRACT.sendErrors, 'queue_full') - metricSum(m0, CONTRACT.sendErrors, 'queue_full');
    const kernelSendDrops = (k1.SndbufErrors ?? 0) - (k0.SndbufErrors ?? 0);
    if (!outcome) throw new Error('unreachable: the flood threw');
    const violations = [...outcome.result.violations];
    if (peak - baseline > RSS_GROWTH_LIMIT_MB)
      violations.push(
        `LB RSS grew ${(peak - baseline).toFixed(1)} MB (${baseline} -> ${peak} MB) > ${RSS_GROWTH_LIMIT_MB} MB`,
      );
    // what the LB counts as forwarded either reached a backend (probes excluded) or was dropped where the kernel shows it
    const leftOrDropped = arrived - probes + tbf.drops + tbf.backlog + kernelSendDrops;
    if (forwarded > leftOrDropped + SLACK)
      violations.push(
        `LB counts ${forwarded} datagrams forwarded, but only ${arrived - probes} reached a backend (+${tbf.drops} tbf drops, ${tbf.backlog} left queued, ${kernelSendDrops} kernel send drops): ${forwarded - leftOrDropped} counted as forwarded and never sent`,
      );
    const received = outcome.send.sent;
    recordCase({
      ...outcome.result,
      case: name,
      datagrams: 0, // the flood itself is recorded by its own entry
      rss: { baselineMb: baseline, peakMb: peak },
      counters: {
        forwarded,
        queueFull,
        arrived,
        probes,
        tbfDrops: tbf.drops,
        tbfBacklog: tbf.backlog,
        kernelSendDrops,
        received,
      },
      violations,
    });
    expect(violations).toEqual([]);
  }, 120_000);
});
