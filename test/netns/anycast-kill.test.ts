// Issue 12, proof 4: a server is killed (SIGKILL) with connections open on it and on the others.
// Only its own connections fail (the others, also VIP-path ones whose flow the router sent to the
// dead server until its route went away, complete), and new connections succeed once its route is
// gone. Measures the time from the kill to the route leaving the router. Root only (CI); needs
// the build.
import { describe, expect, it } from 'vitest';
import {
  acceptedBySCID,
  clientBurst,
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
    const runs = await Promise.all(clients.map((c) => c.done));
    route.stop();
    const gone = route.transitions.find((t) => t.at >= killedAt && !t.value.split(',').includes(s2.address as string));
    expect(gone, JSON.stringify(route.transitions)).toBeDefined();

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
      gone!.at - killedAt,
      'ms',
      `vip-health.sh every ${VIP_HEALTH.intervalS} s, withdraw after ${VIP_HEALTH.fall} failures`,
    );

    // new connections, started once the route is gone: all complete, none on the dead server
    const later = [
      ...(await clientBurst(af, 6, 50, { size: 100_000, migrating: true })),
      ...(await clientBurst(af, 6, 50, { size: 100_000, migrating: false })),
    ];
    expect(later.filter((r) => !r.ok).map((r) => r.out.slice(-1500))).toEqual([]);
    const laterOwners = ownerOf(later, acceptedBySCID(af.procs.values()));
    expect(laterOwners.every((o) => o !== undefined && o.server !== 's2')).toBe(true);
    expect(await fleet.vipNexthops()).toEqual([fleet.servers[0].address, fleet.servers[2].address].sort());
  }, 90_000);
});
