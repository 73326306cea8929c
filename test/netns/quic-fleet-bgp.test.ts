// Issue 6 item 6 with the real LB: BIRD in each LB namespace announces the VIP while
// deploy/bird/vip-health.sh sees `quic-lb serve`'s /healthz answer 200; the router's BIRD installs
// the ECMP route; real QUIC connections (gtlsclient) use it. SIGTERM on one LB: /healthz fails
// at once (drain), the route is withdrawn while that LB is still forwarding, new connections all
// go to the other LB, then the drained LB exits cleanly. Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { BIRD_DIR, birdc, lbBirdConfig, routerBirdConfig, startBird } from './bird.js';
import { pidAlive } from './netns.js';
import { RUN, client, has, isDemoBody, received, useQuicFleet, total } from './quic-fleet.js';
import { waitFor } from '../helpers/wait.js';

const DRAIN_MS = 6000;

describe.runIf(RUN && has('bird') && has('birdc'))(
  'QUIC fleet with BGP anycast and health-gated withdrawal (root)',
  () => {
    const ctx = useQuicFleet({ routing: 'none', drainMs: DRAIN_MS });

    it('LBs announce the VIP while healthy; a draining LB is withdrawn before it stops; connections keep working', async () => {
      const { qf, fleet } = ctx;
      const router = await startBird(fleet, fleet.router, routerBirdConfig(fleet));
      for (const lb of fleet.lbs) {
        const b = await startBird(fleet, lb, lbBirdConfig(fleet, lb));
        fleet.spawn(lb, [
          'sh',
          path.join(BIRD_DIR, 'vip-health.sh'),
          'http://127.0.0.1:9433/healthz',
          b.socket,
          '0.2',
          '2',
          '2',
        ]);
      }
      const both = fleet.lbs.map((l) => l.address as string).sort();
      await waitFor(
        'ECMP route to the VIP via both LBs (BGP)',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify(both),
        30_000,
      );
      const rt = await birdc(fleet, router, ['show', 'route', `${fleet.vip}/32`]);
      expect(rt).toMatch(/unicast \[lb1 [^\]]+\].*\[AS65010i\]/);
      expect(rt).toMatch(/unicast \[lb2 [^\]]+\].*\[AS65010i\]/);

      const conns = await Promise.all(
        Array.from({ length: 6 }, () => client(fleet, qf.dir, '/bytes/50000', ['--delay-stream=300ms'])),
      );
      for (const r of conns) {
        expect(r.out).toContain('QUIC handshake has been confirmed');
        expect(isDemoBody(r.file, 50_000)).toBe(true);
      }

      // SIGTERM lb2: /healthz turns 503, vip-health.sh withdraws, the router drops lb2 — all while
      // lb2 still runs (it forwards for drainMs before exiting).
      const [lb1, lb2] = fleet.lbs;
      const lb2Proc = qf.lbProcs.get(lb2.name) as ChildProcess;
      const exited = new Promise<number | null>((resolve) => lb2Proc.once('exit', (code) => resolve(code)));
      const t0 = Date.now();
      process.kill(lb2Proc.pid as number, 'SIGTERM');
      await waitFor(
        'withdrawal of the draining LB',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify([lb1.address]),
        DRAIN_MS,
      );
      expect(Date.now() - t0).toBeLessThan(DRAIN_MS);
      expect(pidAlive(lb2Proc.pid as number)).toBe(true); // withdrawn before the process stops

      const lb1Before = total(await received(fleet, lb1));
      const later = await Promise.all(
        Array.from({ length: 4 }, () => client(fleet, qf.dir, '/bytes/50000', ['--delay-stream=300ms'])),
      );
      for (const r of later) {
        expect(r.out).toContain('QUIC handshake has been confirmed');
        expect(isDemoBody(r.file, 50_000)).toBe(true);
      }
      expect(total(await received(fleet, lb1)) - lb1Before).toBeGreaterThan(0);
      expect(await exited).toBe(0); // then the drained LB exits cleanly
    }, 120_000);
  },
);
