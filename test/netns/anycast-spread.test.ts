// Issue 12, proof 1: three servers announce the VIP by BGP, the router spreads handshakes by ECMP;
// each connection is owned by the server the keyed Maglev hash of its Initial DCID picks (the same
// on every server), a client that honours preferred_address moves to that server's unicast
// address, and one that does not stays on the VIP path, its datagrams forwarded by whichever
// server ECMP hands them to. Also measures the forwarding hops per connection for both kinds.
// Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import {
  acceptedBySCID,
  clientBurst,
  ownerOf,
  recordFigure,
  RUN_ANYCAST,
  sampleEach,
  UNICAST_PORT,
  useAnycastFleet,
  type AnycastFleet,
} from './anycast-fleet.js';

const PEER = 'quic_lb_anycast_datagrams_total{path="peer"}';
const LOCAL = 'quic_lb_anycast_datagrams_total{path="local"}';
const DROPPED = 'quic_lb_anycast_datagrams_total{path="dropped"}';
const PEER_RECEIVED = 'quic_lb_anycast_peer_received_total';

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** Per server: VIP datagrams it received from the router (every path), forwarded ones, and ones received from peers. */
async function counters(af: AnycastFleet): Promise<{ vip: number[]; peer: number[]; received: number[] }> {
  const [local, peer, dropped, received] = await Promise.all(
    [LOCAL, PEER, DROPPED, PEER_RECEIVED].map((m) => sampleEach(af, m)),
  );
  return { vip: local.map((l, i) => l + peer[i] + dropped[i]), peer, received };
}

/** `hops` as a percentage of the VIP datagrams the servers received between the two samples. */
function share(hops: number, before: { vip: number[] }, after: { vip: number[] }): string {
  const vip = sum(after.vip) - sum(before.vip);
  return vip > 0 ? `${Math.round((100 * hops) / vip)} %` : 'none';
}

describe.runIf(RUN_ANYCAST)('anycast servers: handshakes by ECMP, connections on unicast (root)', () => {
  const ctx = useAnycastFleet();

  it('handshakes spread over the three servers; every migrating connection moves to its server and completes', async () => {
    const { af } = ctx;
    const { fleet } = af;
    expect((await fleet.vipNexthops()).length).toBe(3);
    const before = await counters(af);
    const runs = await clientBurst(af, 24, 40, { size: 100_000, migrating: true });
    const after = await counters(af);
    const owners = ownerOf(runs, acceptedBySCID(af.procs.values()));
    const perServer = new Map<string, number>();
    runs.forEach((r, i) => {
      const owner = owners[i];
      expect(r.ok, r.out.slice(-2000)).toBe(true); // 200 and the exact 100000 octets
      expect(owner).toBeDefined();
      const ns = fleet.servers.find((s) => `s${s.index}` === owner?.server);
      const unicast = `${ns?.address}:${UNICAST_PORT}`;
      expect(r.preferred).toBe(`[${ns?.address}]:${UNICAST_PORT}`); // preferred_address = its owner's unicast address
      expect(r.validated).toBe(true);
      expect(owner?.migratedVia).toContain(`direct:${unicast}`); // the server saw the move too
      perServer.set(owner!.server, (perServer.get(owner!.server) ?? 0) + 1);
    });
    // 24 Initial DCIDs by a keyed hash over 3 servers: each server owns some
    expect([...perServer.keys()].sort()).toEqual(['s1', 's2', 's3']);
    // ECMP handed VIP datagrams to every server (24 flows by the router's 4-tuple hash)
    for (let i = 0; i < 3; i++) expect(after.vip[i] - before.vip[i]).toBeGreaterThan(0);
    const hops = sum(after.peer) - sum(before.peer);
    // every forwarded datagram arrived (veth links, nothing lost)
    expect(sum(after.received) - sum(before.received)).toBe(hops);
    recordFigure(
      'spread.handshakesPerServer',
      ['s1', 's2', 's3'].map((s) => perServer.get(s) ?? 0).join('/'),
      'connections (s1/s2/s3)',
      '24 migrating clients',
    );
    recordFigure(
      'spread.vipDatagramsPerServer',
      after.vip.map((v, i) => v - before.vip[i]).join('/'),
      'datagrams (s1/s2/s3)',
      'VIP datagrams the router handed to each server',
    );
    recordFigure(
      'hops.migrating',
      (hops / runs.length).toFixed(2),
      'forwarded datagrams per connection',
      `${hops} over ${runs.length} migrating connections of 100 kB; ${share(hops, before, after)} of their VIP datagrams`,
    );
  }, 90_000);

  it('clients that ignore preferred_address stay on the VIP path and complete; their datagrams are forwarded to the owner', async () => {
    const { af } = ctx;
    const before = await counters(af);
    const runs = await clientBurst(af, 12, 40, { size: 100_000, migrating: false });
    const after = await counters(af);
    const owners = ownerOf(runs, acceptedBySCID(af.procs.values()));
    runs.forEach((r, i) => {
      expect(r.ok, r.out.slice(-2000)).toBe(true);
      expect(r.preferred).toBeUndefined();
      expect(owners[i]).toBeDefined();
      expect(owners[i]?.migratedVia).toEqual([]);
    });
    const hops = sum(after.peer) - sum(before.peer);
    // the flow's ECMP server and its Maglev owner differ for ~2/3 of 12 connections: some hops
    expect(hops).toBeGreaterThan(0);
    expect(sum(after.received) - sum(before.received)).toBe(hops);
    recordFigure(
      'hops.vipPath',
      (hops / runs.length).toFixed(2),
      'forwarded datagrams per connection',
      `${hops} over ${runs.length} VIP-path connections of 100 kB; ${share(hops, before, after)} of their VIP datagrams`,
    );
  }, 90_000);
});
