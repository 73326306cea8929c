// Issue 6 item 4: key rotation across the fleet with zero failed connections. One shared config
// file; the procedure of draft-21 §3.1 / deploy docs: (1) LBs get the new config (0 and 1), (2)
// backends get it and switch to config 1, re-issuing CIDs of live connections (NEW_CONNECTION_ID
// with Retire Prior To), (3) once the LBs' per-config counter shows config 0 has drained, it is
// removed everywhere. Short connections run all the time and long downloads on the VIP path span
// every step. Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { type Fleet, type Ns } from './netns.js';
import { waitFor } from '../helpers/wait.js';
import {
  RUN,
  client,
  fleetConfig,
  isDemoBody,
  outputOf,
  reloadLbs,
  scrape,
  useQuicFleet,
  type ClientResult,
} from './quic-fleet.js';

const KEY_A = randomBytes(16).toString('hex');
const KEY_B = randomBytes(16).toString('hex');
const routedUnder = async (fleet: Fleet, lb: Ns, configId: number): Promise<number> =>
  (await scrape(fleet, lb)).get(`quic_lb_cid_packets_total{config_id="${configId}",result="routed"}`) ?? 0;

describe.runIf(RUN)('QUIC fleet: key rotation across LBs and backends (root)', () => {
  const ctx = useQuicFleet({ configs: [{ configId: 0, key: KEY_A }] });

  it('LBs first, then backends, then the drained old config removed: zero failed connections', async () => {
    const { qf, fleet } = ctx;
    const results: { phase: string; end: string; r: ClientResult }[] = [];
    let phase = 'config 0';
    let running = true;
    const loops = Array.from({ length: 2 }, async () => {
      while (running) {
        const p = phase;
        const r = await client(fleet, qf.dir, '/bytes/20000', ['--delay-stream=200ms']);
        results.push({ phase: p, end: phase, r });
      }
    });
    const size = 16_000_000;
    const long = Array.from({ length: 2 }, () => client(fleet, qf.dir, `/bytes/${size}`, ['--no-preferred-addr']));
    await waitFor(
      'long downloads under way',
      async () => {
        let n = 0;
        for (const lb of fleet.lbs) n += await routedUnder(fleet, lb, 0);
        return n > 200;
      },
      20_000,
    );

    // (1) the LBs learn config 1 (config 0 stays)
    await reloadLbs(
      qf,
      fleetConfig(fleet, [
        { configId: 0, key: KEY_A },
        { configId: 1, key: KEY_B },
      ]),
    );
    phase = 'LBs know 0+1';

    // (2) the backends switch to config 1 and re-issue CIDs of live connections
    for (const be of fleet.backends) process.kill(qf.backendProcs.get(be.name)?.pid as number, 'SIGHUP');
    await waitFor(
      'backends switched to config 1',
      async () =>
        fleet.backends.every((be) =>
          /active QUIC-LB config 1/.test(outputOf.get(qf.backendProcs.get(be.name) as ChildProcess)?.() ?? ''),
        ),
      20_000,
    );
    phase = 'backends on 1';

    // (3) wait until no LB routes config-0 CIDs any more, then remove config 0 everywhere
    let last = -1;
    await waitFor(
      'config 0 drained',
      async () => {
        let n = 0;
        for (const lb of fleet.lbs) n += await routedUnder(fleet, lb, 0);
        const drained = n === last;
        last = n;
        if (!drained) await new Promise((r) => setTimeout(r, 700));
        return drained;
      },
      30_000,
    );
    await reloadLbs(qf, fleetConfig(fleet, [{ configId: 1, key: KEY_B }]));
    phase = 'config 1 only';
    await new Promise((r) => setTimeout(r, 1500));
    running = false;
    await Promise.all(loops);
    const longResults = await Promise.all(long);

    // zero failed connections, in every phase
    const phases = new Set(results.map((x) => x.phase));
    expect([...phases]).toEqual(expect.arrayContaining(['config 0', 'backends on 1', 'config 1 only']));
    for (const { phase: ph, r } of results) {
      expect(r.out, `a connection in phase "${ph}" failed`).toContain('[:status: 200]');
      expect(isDemoBody(r.file, 20_000)).toBe(true);
    }
    for (const r of longResults) {
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, size)).toBe(true);
    }
    // no packet with a server-chosen CID ever needed the 4-tuple fallback: at every step each LB
    // could decode every CID in use (the fallback would hide a broken rotation while the 4-tuple
    // stays put, so assert on the counters)
    for (const lb of fleet.lbs) {
      const m = await scrape(fleet, lb);
      for (const reason of [
        'fallback_unknown_config',
        'fallback_unknown_server_id',
        'fallback_unroutable_0b111',
        'fallback_too_short',
      ]) {
        expect(m.get(`quic_lb_received_packets_total{reason="${reason}"}`), `${lb.name} ${reason}`).toBe(0);
      }
      expect(m.get('quic_lb_received_packets_total{reason="routed"}')).toBeGreaterThan(0);
    }
    // the long downloads moved to config-1 CIDs (the LBs routed config 1 for them)
    let routed1 = 0;
    for (const lb of fleet.lbs) routed1 += await routedUnder(fleet, lb, 1);
    expect(routed1).toBeGreaterThan(0);
    // connections made after the backends switched got config-1 CIDs: first octet 0b001xxxxx
    // (only connections that started and ended in one phase: the others straddle a switch)
    for (const { phase: ph, end, r } of results) {
      if (ph !== end) continue;
      const m = /initial_source_connection_id=0x([0-9a-f]{2})/.exec(r.out);
      expect(m).not.toBeNull();
      const cr = parseInt((m as RegExpExecArray)[1], 16) >> 5;
      if (ph === 'config 0') expect(cr).toBe(0);
      if (ph === 'config 1 only') expect(cr).toBe(1);
    }
  }, 180_000);
});
