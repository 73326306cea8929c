// Issue 6 item 2: an LB killed in the middle of downloads by clients that stay on the VIP path
// (--no-preferred-addr). The backends send their replies to the anycast return port
// (`returnPath.listen` on the VIP, `quic-lb demo backend --reply-to auto`), so the router hands
// them to whichever LB is alive; the surviving LB, which never saw these connections' handshakes,
// routes the clients' packets by CID to the same backends.
import { describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { waitFor } from '../helpers/wait.js';

import { RETURN_PORT, RUN, client, isDemoBody, outputOf, received, useQuicFleet } from './quic-fleet.js';

describe.runIf(RUN)('QUIC fleet: LB failure (root)', () => {
  const ctx = useQuicFleet();

  it('every backend sends its LB-path replies to the anycast return port, not to the forwarding LB', () => {
    const { qf, fleet } = ctx;
    for (const be of fleet.backends) {
      const out = outputOf.get(qf.backendProcs.get(be.name) as ChildProcess)?.() ?? '';
      expect(out).toContain(`"replyTo":"${fleet.vip}:${RETURN_PORT}"`);
    }
  });

  it('an LB killed in the middle of downloads: the router sends its flows to the other LB, which routes them to the same backends', async () => {
    const { qf, fleet, dir } = ctx;
    const [lb1, lb2] = fleet.lbs;
    await fleet.setVipNexthops([lb1]); // every connection starts on lb1
    const lb1Before = await received(fleet, lb1);
    const lb2Before = await received(fleet, lb2);
    const size = 12_000_000;
    const downloads = Array.from({ length: 3 }, () => client(fleet, dir, `/bytes/${size}`, ['--no-preferred-addr']));
    // Every client's first Initial (its own DCID: fallback_initial, one datagram each) has reached
    // lb1 and downloads are under way. Killing lb1 earlier would send a slow-starting client's
    // Initial to lb2, a legitimate fallback that is not what this test is about.
    await waitFor(
      'all three handshakes and their downloads under way on lb1',
      async () => {
        const now = await received(fleet, lb1);
        const initials = (now.fallback_initial ?? 0) - (lb1Before.fallback_initial ?? 0);
        return initials >= 3 && (now.routed ?? 0) - (lb1Before.routed ?? 0) > 300;
      },
      20_000,
    );
    // lb1 dies; its route is withdrawn (what BGP does, see bird.test.ts)
    const p = qf.lbProcs.get(lb1.name) as ChildProcess;
    process.kill(-(p.pid as number), 'SIGKILL');
    await fleet.setVipNexthops([lb2]);
    const results = await Promise.all(downloads);
    for (const r of results) {
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, size)).toBe(true);
      expect(r.out).not.toContain('selected server preferred_address');
    }
    const lb2After = await received(fleet, lb2);
    expect((lb2After.routed ?? 0) - (lb2Before.routed ?? 0)).toBeGreaterThan(0);
    // lb2 never saw these connections' handshakes, yet every packet was CID-routed: nothing fell back
    for (const [reason, n] of Object.entries(lb2After))
      if (reason !== 'routed') expect(n - (lb2Before[reason] ?? 0), `lb2 ${reason}`).toBe(0);
    await qf.startLb(lb1);
    await fleet.setVipNexthops(fleet.lbs);
  }, 120_000);
});
