// Issue 12, proof 3: the ECMP set changes while handshakes and VIP-path downloads are in flight: s3
// joins (started, announces) and s1 leaves (SIGUSR2: drains, withdraws, keeps its connections).
// With co-located forwarding every connection completes; the same run with `--no-forward` on every
// server counts the connections that break. Which flows really changed server is read from the
// router (ip route get with the flow's ports, before and after), so the comparison is known to have
// measured something. Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import {
  ecmpChoice,
  recordFigure,
  RUN_ANYCAST,
  sampleEach,
  startClient,
  useAnycastFleet,
  waitNexthops,
  type AnycastFleet,
  type ClientRun,
} from './anycast-fleet.js';
import { sleep } from '../helpers/wait.js';

interface ChurnResult {
  /** VIP-path downloads started before the change (request 2.5 s after the handshake). */
  long: ClientRun[];
  /** For each of them: did its flow's ECMP server change? */
  moved: boolean[];
  /** New connections started while the set changed (both kinds). */
  handshakes: ClientRun[];
}

/**
 * Starts 12 VIP-path connections on {s1, s2}, then s3 joins and s1 leaves while 16 more
 * connections start; waits for every client.
 */
async function churn(af: AnycastFleet, serverArgs: string[]): Promise<ChurnResult> {
  const { fleet } = af;
  const [, s2, s3] = fleet.servers;
  const long = [];
  for (let i = 0; i < 12; i++) {
    long.push(startClient(af, { size: 300_000, migrating: false, delayMs: 2500 }));
    await sleep(40);
  }
  const ports = await Promise.all(long.map((c) => c.port));
  const hopsBefore = await Promise.all(ports.map((p) => (p === undefined ? '' : ecmpChoice(af, p))));
  const handshakes = [];
  let joined: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < 16; i++) {
    handshakes.push(startClient(af, { size: 100_000, migrating: i % 2 === 0, delayMs: 300 }));
    if (i === 2) {
      joined = af.startServer(s3, serverArgs); // joins: announces once ready
      joined.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
    }
    if (i === 4) process.kill(af.procs.get('s1')!.child.pid!, 'SIGUSR2'); // leaves: drains
    await sleep(120);
  }
  await joined;
  await waitNexthops(af, [s2, s3], 10_000);
  const hopsAfter = await Promise.all(ports.map((p) => (p === undefined ? '' : ecmpChoice(af, p))));
  return {
    long: await Promise.all(long.map((c) => c.done)),
    moved: hopsBefore.map((h, i) => h !== hopsAfter[i]),
    handshakes: await Promise.all(handshakes.map((c) => c.done)),
  };
}

function failures(r: ChurnResult): number {
  return [...r.long, ...r.handshakes].filter((c) => !c.ok).length;
}

describe.runIf(RUN_ANYCAST)('anycast: ECMP churn with co-located forwarding (root)', () => {
  const ctx = useAnycastFleet({ start: [1, 2] });

  it('a server joins and another leaves mid-flight: 0 failed connections', async () => {
    const { af } = ctx;
    const s1 = af.fleet.servers[0];
    const s3 = af.fleet.servers[2];
    const r = await churn(af, []);
    const moved = r.moved.filter(Boolean).length;
    expect(moved).toBeGreaterThan(0); // s1's flows at least: it left the ECMP set
    expect(r.long.filter((c) => !c.ok).map((c) => c.out.slice(-1500))).toEqual([]);
    expect(r.handshakes.filter((c) => !c.ok).map((c) => c.out.slice(-1500))).toEqual([]);
    // the moved flows were carried by forwarding: s3 forwarded VIP datagrams of connections it
    // never owned, s1 (out of the route) received its connections' datagrams from peers
    const [peerS3] = await sampleEach(af, 'quic_lb_anycast_datagrams_total{path="peer"}', [s3]);
    const [receivedS1] = await sampleEach(af, 'quic_lb_anycast_peer_received_total', [s1]);
    expect(peerS3).toBeGreaterThan(0);
    expect(receivedS1).toBeGreaterThan(0);
    recordFigure(
      'churn.forward.failures',
      failures(r),
      'connections',
      `${r.long.length} VIP-path downloads (${moved} flows moved) + ${r.handshakes.length} new connections`,
    );
  }, 90_000);
});

describe.runIf(RUN_ANYCAST)('anycast: the same churn without co-located forwarding (root)', () => {
  const ctx = useAnycastFleet({ start: [1, 2], extra: { s1: ['--no-forward'], s2: ['--no-forward'] } });

  it('counts the connections that break when nothing forwards', async () => {
    const { af } = ctx;
    const r = await churn(af, ['--no-forward']);
    const moved = r.moved.filter(Boolean).length;
    expect(moved).toBeGreaterThan(0);
    const brokenLong = r.long.filter((c) => !c.ok).length;
    // a VIP-path connection whose flow moved lands on a server that does not know it
    expect(brokenLong).toBeGreaterThan(0);
    // …and only those: a flow that stayed on its server completes
    r.long.forEach((c, i) => {
      if (!r.moved[i]) expect(c.ok, c.out.slice(-1500)).toBe(true);
    });
    recordFigure(
      'churn.noForward.failures',
      failures(r),
      'connections',
      `${r.long.length} VIP-path downloads (${moved} flows moved, ${brokenLong} broke) + ${r.handshakes.length} new connections (${r.handshakes.filter((c) => !c.ok).length} broke)`,
    );
  }, 90_000);
});
