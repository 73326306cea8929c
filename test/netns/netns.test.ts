// Fleet infrastructure: the network-namespace topology itself (issue 6). Runs as root (CI);
// skipped for non-root developers via runIf.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  cleanupStaleNamespaces,
  createFleet,
  canUseNetns,
  listNamespaces,
  namespacePids,
  withFleet,
  FleetError,
  type Fleet,
} from './netns.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { probeFrom, startEcho } from './udp-probe.js';

const ROOT = canUseNetns();
describe.runIf(ROOT)('fleet topology in network namespaces (root)', () => {
  it('ECMP spreads UDP flows to the VIP over both LB namespaces, each flow sticks to one LB, backends are reachable', async () => {
    let names: string[] = [];
    await withFleet({ timeoutMs: 90_000 }, async (fleet) => {
      names = fleet.all.map((n) => n.name);
      expect(fleet.existingNamespaces().sort()).toEqual([...names].sort());
      expect(await fleet.vipNexthops()).toEqual(fleet.lbs.map((l) => l.address).sort());
      expect((await fleet.execOk(fleet.router, ['sysctl', '-n', 'net.ipv4.fib_multipath_hash_policy'])).trim()).toBe(
        '1',
      );
      for (const lb of fleet.lbs) await startEcho(fleet, lb, fleet.vip, lb.name);
      for (const be of fleet.backends) await startEcho(fleet, be, be.address as string, be.name);

      const answers = await probeFrom(fleet, fleet.vip, 200, 2);
      expect(answers.length).toBe(200);
      expect(new Set(answers.map(([p]) => p)).size).toBe(200); // 200 distinct source ports
      const perLb = new Map<string, number>();
      for (const [, tags] of answers) {
        expect(tags[0]).not.toBeNull();
        expect(tags[1]).toBe(tags[0]); // one flow, one LB
        perLb.set(tags[0] as string, (perLb.get(tags[0] as string) ?? 0) + 1);
      }
      expect([...perLb.keys()].sort()).toEqual(fleet.lbs.map((l) => l.name).sort());
      for (const lb of fleet.lbs) expect(perLb.get(lb.name)).toBeGreaterThanOrEqual(30); // ~100 each expected

      // Each backend's unicast address answers from its own namespace.
      for (const be of fleet.backends) {
        const [[, tags]] = await probeFrom(fleet, be.address as string, 1, 1);
        expect(tags[0]).toBe(be.name);
      }

      // Changing the route moves every flow: only lb1 left.
      await fleet.setVipNexthops([fleet.lbs[0]]);
      expect(await fleet.vipNexthops()).toEqual([fleet.lbs[0].address]);
      const after = await probeFrom(fleet, fleet.vip, 40, 1);
      expect(after.every(([, t]) => t[0] === fleet.lbs[0].name)).toBe(true);
      expect(fleet.trackedPids().length).toBe(fleet.lbs.length + fleet.backends.length);
    });
    // teardown: no namespace of this fleet is left
    const left = listNamespaces();
    for (const n of names) expect(left).not.toContain(n);
  });

  it('teardown kills every tracked process and deletes every namespace, even when the body throws', async () => {
    let fleetRef: Fleet | undefined;
    let pids: number[] = [];
    await expect(
      withFleet({ backendCount: 1 }, async (fleet) => {
        fleetRef = fleet;
        fleet.spawn(fleet.lbs[0], ['sleep', '1000']);
        fleet.spawn(fleet.backends[0], ['sh', '-c', 'sleep 1000 & sleep 1000']); // a child of a child
        await new Promise((r) => setTimeout(r, 200));
        pids = fleet.all.flatMap((n) => (fleet.existingNamespaces().includes(n.name) ? namespacePids(n.name) : []));
        expect(pids.length).toBeGreaterThanOrEqual(3);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(fleetRef?.existingNamespaces()).toEqual([]);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it('a body that hangs is cut by the timeout and still torn down', async () => {
    let fleetRef: Fleet | undefined;
    let pid = 0;
    await expect(
      withFleet({ lbCount: 1, backendCount: 0, timeoutMs: 1500 }, async (fleet) => {
        fleetRef = fleet;
        const c = fleet.spawn(fleet.client, ['sleep', '1000']);
        pid = c.pid ?? 0;
        await new Promise(() => undefined); // never settles
      }),
    ).rejects.toBeInstanceOf(FleetError);
    expect(fleetRef?.existingNamespaces()).toEqual([]);
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });

  it('namespaces left behind by a dead run are removed; those of live processes are kept', () => {
    const dead = spawnSync('true').pid as number; // a pid that has exited
    const stale = `qlbt${dead}-0dead-router`;
    const live = `qlbt${process.pid}-0live-router`;
    execFileSync('ip', ['netns', 'add', stale]);
    execFileSync('ip', ['netns', 'add', live]);
    try {
      expect(cleanupStaleNamespaces('qlbt')).toContain(stale);
      const left = listNamespaces('qlbt');
      expect(left).not.toContain(stale);
      expect(left).toContain(live);
    } finally {
      execFileSync('ip', ['netns', 'del', live]);
      if (listNamespaces('qlbt').includes(stale)) execFileSync('ip', ['netns', 'del', stale]);
    }
  });

  it('two fleets at once get distinct names and do not interfere', async () => {
    const a = await createFleet({ lbCount: 1, backendCount: 0 });
    const b = await createFleet({ lbCount: 1, backendCount: 0 });
    try {
      expect(a.id).not.toBe(b.id);
      expect(a.router.name).not.toBe(b.router.name);
      expect(a.existingNamespaces().length).toBe(3);
      expect(b.existingNamespaces().length).toBe(3);
    } finally {
      await a.teardown();
      await b.teardown();
    }
    expect(a.existingNamespaces()).toEqual([]);
    expect(b.existingNamespaces()).toEqual([]);
    await b.teardown(); // idempotent
  });
});

/** Running (a zombie waiting for its parent to reap it counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
