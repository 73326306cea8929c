// Issue 12, proof 4: a server is killed (SIGKILL) with connections open on it and on the others.
// Only its own connections fail (the others, also VIP-path ones whose flow the router sent to the
// dead server until its route went away, complete), and new connections succeed once its route is
// gone. Measures the time from the kill to the route leaving the router. Root only (CI); needs
// the build.
import { describe, expect, it } from 'vitest';
import {
  acceptedBySCID,
  HEALTH,
  metricsOf,
  ownerOf,
  recordFigure,
  RUN_ANYCAST,
  startClient,
  useAnycastFleet,
  VIP_HEALTH,
  watchRoute,
} from './anycast-fleet.js';
import { waitFor } from '../helpers/wait.js';

describe.runIf(RUN_ANYCAST)('anycast: a server is killed (root)', () => {
  const ctx = useAnycastFleet();

  it('only its own connections fail; new connections succeed once its route is gone', async () => {
    const { af } = ctx;
    const { fleet } = af;
    const s2 = fleet.servers[1];
    const route = watchRoute(af);
    // 18 connections (12 migrating, 6 on the VIP path), each sending its request 2.5 s after the handshake
    const clients = Array.from({ length: 18 }, (_, i) =>
      startClient(af, { size: 200_000, migrating: i % 3 !== 2, delayMs: 2500 }),
    );
    const accepted = (): number => acceptedBySCID(af.procs.values()).size;
    await waitFor('18 handshakes accepted', () => accepted() >= 18, 10_000);
    const killedAt = Date.now();
    process.kill(af.procs.get('s2')!.child.pid!, 'SIGKILL');
    // the survivors' health views: when does each stop calling s2 up (out of its Maglev set)?
    const views = [fleet.servers[0], fleet.servers[2]].map(async (s) => {
      await waitFor(
        `${s.name} sees s2 down`,
        async () => ((await metricsOf(af, s)).get('quic_lb_backend_state{backend="s2",state="up"}') ?? 1) === 0,
        10_000,
      );
      return Date.now() - killedAt;
    });
    await waitFor(
      'route without s2',
      () => route.transitions.some((t) => t.at >= killedAt && !t.value.split(',').includes(s2.address as string)),
      10_000,
    );
    const gone = route.transitions.find((t) => t.at >= killedAt && !t.value.split(',').includes(s2.address as string))!;
    // new connections, started as soon as the route is gone (the old ones still running)
    const later = Array.from({ length: 12 }, (_, i) => startClient(af, { size: 100_000, migrating: i % 2 === 0 }));
    const runs = await Promise.all(clients.map((c) => c.done));
    const laterRuns = await Promise.all(later.map((c) => c.done));
    const [viewS1, viewS3] = await Promise.all(views);
    route.stop();

    const owners = ownerOf(runs, acceptedBySCID(af.procs.values()));
    const own = runs.filter((_, i) => owners[i]?.server === 's2');
    const others = runs.filter((_, i) => owners[i] !== undefined && owners[i]?.server !== 's2');
    expect(own.length + others.length).toBe(runs.length); // every client was accepted somewhere
    expect(own.length).toBeGreaterThan(0);
    expect(own.filter((r) => r.ok)).toEqual([]); // its connections die with it (no request was answered yet)
    expect(others.filter((r) => !r.ok).map((r) => r.out.slice(-1500))).toEqual([]); // only its own
    recordFigure(
      'kill.ownConnectionsFailed',
      `${own.length}/${own.length}`,
      'connections',
      'owned by the killed server',
    );
    recordFigure(
      'kill.otherConnectionsFailed',
      `0/${others.length}`,
      'connections',
      `${others.filter((r) => !r.migrating).length} of them on the VIP path`,
    );
    recordFigure(
      'kill.killToRouteGone',
      gone.at - killedAt,
      'ms',
      `vip-health.sh every ${VIP_HEALTH.intervalS} s, withdraw after ${VIP_HEALTH.fall} failures`,
    );

    // the new connections: all complete, none on the dead server
    expect(laterRuns.filter((r) => !r.ok).map((r) => r.out.slice(-1500))).toEqual([]);
    const laterOwners = ownerOf(laterRuns, acceptedBySCID(af.procs.values()));
    expect(laterOwners.every((o) => o !== undefined && o.server !== 's2')).toBe(true);
    recordFigure(
      'kill.newConnectionsFailed',
      `${laterRuns.filter((r) => !r.ok).length}/${laterRuns.length}`,
      'connections',
      `started the moment the route was gone, ${gone.at - killedAt < Math.min(viewS1, viewS3) ? 'before' : 'after'} the survivors' views dropped s2; slowest took ${Math.max(...laterRuns.map((r) => r.endedAt - r.startedAt))} ms (a first flight forwarded to the dead server is retransmitted)`,
    );
    recordFigure(
      'kill.killToPeerViews',
      `${viewS1}/${viewS3}`,
      'ms (s1/s3)',
      `until each survivor's health check calls s2 down (probe every ${HEALTH.intervalMs} ms, timeout ${HEALTH.timeoutMs} ms, fall ${HEALTH.fall}); the servers disagree on the set for ${Math.abs(viewS1 - viewS3)} ms, ±50 ms of polling`,
    );
    expect(await fleet.vipNexthops()).toEqual([fleet.servers[0].address, fleet.servers[2].address].sort());
  }, 90_000);
});
