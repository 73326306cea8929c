// Issue 12, proof 2: one server (s3, `--announce-max-connections 3`) withdraws the VIP for overload
// during a burst of new connections. Nothing fails; s3 keeps every connection it owns to the end of
// its download; once the router's route no longer names s3 (withdrawal converged) no new handshake
// lands on s3. Measures the time from s3's /healthz turning 503 to the route leaving the router and
// to s3's last new handshake; then s3, idle again, re-announces (hysteresis: announceAfter samples).
// Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import {
  acceptedBySCID,
  clientBurst,
  healthz,
  metricsOf,
  ownerOf,
  recordFigure,
  RUN_ANYCAST,
  useAnycastFleet,
  VIP_HEALTH,
  waitNexthops,
  watchHealthz,
  watchRoute,
} from './anycast-fleet.js';
import { waitFor } from '../helpers/wait.js';

const MAX_CONNECTIONS = 3;
const ANNOUNCE = { intervalMs: 250, withdrawAfter: 2, announceAfter: 3 };
/** Connections started after the withdrawal converged. */
const SECOND_WAVE = 8;

describe.runIf(RUN_ANYCAST)('anycast: a server withdraws for overload during a burst (root)', () => {
  const ctx = useAnycastFleet({
    anycast: { announce: ANNOUNCE },
    extra: { s3: ['--announce-max-connections', String(MAX_CONNECTIONS)] },
  });

  it('0 failed connections, the overloaded server keeps its connections, no new handshake after convergence', async () => {
    const { af } = ctx;
    const { fleet } = af;
    const s3 = fleet.servers[2];
    const health = watchHealthz(af, s3);
    const route = watchRoute(af);
    // 36 connections started 100 ms apart, each open ~4 s (request 3.5 s after the handshake):
    // about a third are placed on s3, more than MAX_CONNECTIONS at once, so it withdraws and stays
    // withdrawn while they run. A second wave starts once the route no longer names s3, so
    // handshakes certainly happen in the converged window however slow the machine is.
    const burst = clientBurst(af, 36, 100, { size: 200_000, migrating: true, delayMs: 3500 });
    const withoutS3 = (t: { value: string }): boolean => !t.value.split(',').includes(s3.address as string);
    await waitFor(
      's3 withdrawn and its route gone from the router',
      () => health.transitions.some((t) => t.value === '503') && route.transitions.some(withoutS3),
      30_000,
    );
    const secondWave = clientBurst(af, SECOND_WAVE, 50, { size: 20_000, migrating: true, delayMs: 0 });
    const runs = [...(await burst), ...(await secondWave)];
    health.stop();
    route.stop();

    const failed = runs.filter((r) => !r.ok);
    expect(failed.map((r) => r.out.slice(-1500))).toEqual([]);

    // the first withdrawal: /healthz 503, then the route without s3, until /healthz is 200 again
    // (s3 may re-announce during the burst once its connections end, and withdraw again)
    const t503 = health.transitions.find((t) => t.value === '503')?.at;
    expect(t503, JSON.stringify(health.transitions)).toBeDefined();
    const tBack = health.transitions.find((t) => t.at > t503! && t.value === '200')?.at ?? Infinity;
    const gone = route.transitions.find((t) => t.at >= t503! && withoutS3(t));
    expect(gone, JSON.stringify(route.transitions)).toBeDefined();
    const tGone = gone!.at;
    expect(tGone).toBeLessThan(tBack);

    const accepted = acceptedBySCID(af.procs.values());
    const owners = ownerOf(runs, accepted);
    const onS3 = runs.filter((_, i) => owners[i]?.server === 's3');
    expect(onS3.length).toBeGreaterThan(MAX_CONNECTIONS); // it was overloaded…
    expect(onS3.every((r) => r.ok)).toBe(true); // …and kept every connection to the end of its download
    // after convergence and while withdrawn, handshakes went on elsewhere and none landed on s3
    const inWindow = [...accepted.values()].filter((a) => a.at > tGone && a.at < tBack);
    expect(inWindow.filter((a) => a.server === 's3')).toEqual([]);
    expect(inWindow.length).toBeGreaterThanOrEqual(3); // the check above is not vacuous
    const lastS3 = Math.max(
      ...[...accepted.values()].filter((a) => a.server === 's3' && a.at < tBack).map((a) => a.at),
    );

    const m = await metricsOf(af, s3);
    expect(m.get('quic_lb_anycast_withdrawals_total{reason="connections"}') ?? 0).toBeGreaterThanOrEqual(1);

    recordFigure(
      'overload.failedConnections',
      failed.length,
      'connections',
      `${runs.length} new connections: 36 in 3.6 s, then ${SECOND_WAVE} once the route was gone`,
    );
    recordFigure(
      'overload.keptOnWithdrawnServer',
      `${onS3.filter((r) => r.ok).length}/${onS3.length}`,
      'connections',
      's3 downloads completed',
    );
    recordFigure(
      'overload.healthz503ToRouteGone',
      tGone - t503!,
      'ms',
      `vip-health.sh every ${VIP_HEALTH.intervalS} s, withdraw after ${VIP_HEALTH.fall} failures, BGP to the router's FIB`,
    );
    recordFigure(
      'overload.healthz503ToLastHandshake',
      lastS3 - t503!,
      'ms',
      'last connection-accepted on s3 before it re-announced, minus its 503 (negative: before the 503)',
    );
    recordFigure(
      'overload.withdrawnWindow',
      Number.isFinite(tBack) ? tBack - t503! : 'still withdrawn',
      'ms',
      `503 to 200 again; ${inWindow.length} handshakes elsewhere after the route was gone; ${health.transitions.filter((t) => t.value === '503').length} withdrawals during the burst`,
    );

    // idle again: every signal under its resume level for announceAfter samples → announced again
    await waitNexthops(af, fleet.servers, 15_000);
    expect((await healthz(af, s3)).status).toBe(200);
    expect((await metricsOf(af, s3)).get('quic_lb_anycast_announced')).toBe(1);
  }, 90_000);

  it('while withdrawn, /healthz and the metrics name the reason', async () => {
    const { af } = ctx;
    const s3 = af.fleet.servers[2];
    // hold MAX_CONNECTIONS + 3 connections: keep starting until s3 reports the reason
    const runs = clientBurst(af, 24, 50, { size: 50_000, migrating: true, delayMs: 2500 });
    let seen: { status: number; body: string } | undefined;
    let metrics: Map<string, number> | undefined;
    const end = Date.now() + 8000;
    while (Date.now() < end) {
      const h = await healthz(af, s3);
      if (h.status === 503) {
        seen = h;
        metrics = await metricsOf(af, s3);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await runs).every((r) => r.ok)).toBe(true);
    expect(seen?.body).toMatch(/connections/);
    expect(metrics?.get('quic_lb_anycast_announced')).toBe(0);
    expect(metrics?.get('quic_lb_anycast_withdrawn{reason="connections"}')).toBe(1);
  }, 60_000);
});
