// `datapath: xdp` for real (issue 15): the QUIC fleet (two `quic-lb serve` behind the ECMP router,
// three demo backends, Debian's gtlsclient) with the XDP program attached to each LB's link. The
// downloads must complete, and the program (not node:dgram) must have carried their packets:
// quic_lb_xdp_packets_total against quic_lb_received_packets_total; one connection whose packets
// alternate between the LBs routes identically through both programs. Then a reload and an agent
// killed under traffic lose nothing. Root only (CI); needs the build (npm run build makes
// dist/xdp when clang and libbpf-dev are installed: scripts/system-deps.sh).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { Fleet, Ns } from './netns.js';
import {
  RUN,
  client,
  fleetConfig,
  isDemoBody,
  reloadLbs,
  scrape,
  useQuicFleet,
  whileAlternatingLbs,
} from './quic-fleet.js';
import { sleep, waitFor } from '../helpers/wait.js';

/** Sum of every series of `name` whose labels contain `label` (all of them when empty). */
function sumOf(m: Map<string, number>, name: string, label = ''): number {
  let t = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && k.includes(label)) t += v;
  return t;
}

/** Datagrams the XDP programs sent and Node forwarded (by CID or fallback), over every LB. */
async function carried(fleet: Fleet): Promise<{ xdp: number; node: number; xdpBy: number[] }> {
  const ms = await Promise.all(fleet.lbs.map((lb) => scrape(fleet, lb)));
  const sentByXdp = (m: Map<string, number>): number =>
    sumOf(m, 'quic_lb_xdp_packets_total', 'reason="routed"') +
    sumOf(m, 'quic_lb_xdp_packets_total', 'reason="fallback_');
  const forwardedByNode = (m: Map<string, number>): number =>
    sumOf(m, 'quic_lb_received_packets_total', 'reason="routed"') +
    sumOf(m, 'quic_lb_received_packets_total', 'reason="fallback_');
  return {
    xdp: ms.reduce((n, m) => n + sentByXdp(m), 0),
    node: ms.reduce((n, m) => n + forwardedByNode(m), 0),
    xdpBy: ms.map(sentByXdp),
  };
}

/** The XDP agent process of the LB in `lb` (the only child of `quic-lb serve` named quic-lb-xdp). */
function agentPid(lbPid: number): number {
  const out = execFileSync('pgrep', ['-P', String(lbPid), '-f', 'quic-lb-xdp'], { encoding: 'utf8' }).trim();
  const pids = out.split('\n').filter(Boolean).map(Number);
  if (pids.length !== 1) throw new Error(`expected one quic-lb-xdp child of ${lbPid}, found ${out || 'none'}`);
  return pids[0];
}

async function healthzOf(fleet: Fleet, lb: Ns): Promise<string> {
  const r = await fleet.exec(lb, ['curl', '-s', '--max-time', '2', 'http://127.0.0.1:9433/healthz']);
  return r.stdout;
}

describe.runIf(RUN).each(['generic', 'native'] as const)(
  'QUIC fleet with datapath xdp (%s attach): the kernel forwards (root)',
  (mode) => {
    const ctx = useQuicFleet({ xdp: mode });

    it('VIP-path downloads complete and the XDP program carried them; /healthz and metrics say attached', async () => {
      const { fleet, dir } = ctx;
      for (const lb of fleet.lbs) {
        const m = await scrape(fleet, lb);
        expect(m.get(`quic_lb_xdp_state{state="attached",mode="${mode}",interface="eth0"}`), lb.name).toBe(1);
        expect(await healthzOf(fleet, lb)).toContain(`xdp: {"state":"attached","mode":"${mode}","interface":"eth0"}`);
      }
      const before = await carried(fleet);
      const size = 2_000_000;
      const runs = await Promise.all(
        Array.from({ length: 6 }, () => client(fleet, dir, `/bytes/${size}`, ['--no-preferred-addr'])),
      );
      for (const r of runs) {
        expect(r.out).toContain('QUIC handshake has been confirmed');
        expect(r.out).toContain('[:status: 200]');
        expect(isDemoBody(r.file, size)).toBe(true);
      }
      const after = await carried(fleet);
      const xdp = after.xdp - before.xdp;
      const node = after.node - before.node;
      // 6 x 2 MB of replies come back through the LBs' return path, but the client's datagrams
      // (ACKs, requests, handshakes) all cross a VIP: several hundred each, all sent by XDP.
      expect(xdp).toBeGreaterThan(600);
      expect(node).toBeLessThan(xdp / 20); // node:dgram forwarded (almost) none of them
      console.log(`xdp fleet (${mode}): XDP sent ${xdp} client datagrams, node:dgram forwarded ${node}`);
    }, 180_000);

    it('with preferred_address: the handshake crosses XDP, the client moves to its backend', async () => {
      const { fleet, dir } = ctx;
      const before = await carried(fleet);
      const r = await client(fleet, dir, '/bytes/200000');
      expect(r.out).toContain('QUIC handshake has been confirmed');
      expect(r.out).toMatch(/selected server preferred_address is \[[\d.]+\]:\d+/);
      expect(r.out).toMatch(/Path validation against path \{local:\[[\d.]+\]:\d+, remote:\[[\d.]+\]:\d+\} succeeded/);
      expect(isDemoBody(r.file, 200_000)).toBe(true);
      const after = await carried(fleet);
      expect(after.xdp - before.xdp).toBeGreaterThan(0); // the Initials and handshake went through XDP
      expect(after.node - before.node).toBe(0);
    }, 120_000);

    it('one connection alternating between the two LBs: both XDP programs route it to the same backend', async () => {
      const { fleet, dir } = ctx;
      const before = await carried(fleet);
      const size = 8_000_000;
      const { result: r, flips } = await whileAlternatingLbs(fleet, () =>
        client(fleet, dir, `/bytes/${size}`, ['--no-preferred-addr']),
      );
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, size)).toBe(true);
      expect(flips).toBeGreaterThanOrEqual(4);
      const after = await carried(fleet);
      after.xdpBy.forEach((n, i) => expect(n - before.xdpBy[i], `XDP of ${fleet.lbs[i].name}`).toBeGreaterThan(0));
      expect(after.node - before.node).toBe(0);
    }, 120_000);

    it('a drain (be1 weight 0, by reload) and an agent killed under traffic lose no download', async () => {
      const { fleet, dir, qf } = ctx;
      const size = 6_000_000;
      const downloads = Promise.all(
        Array.from({ length: 3 }, () => client(fleet, dir, `/bytes/${size}`, ['--no-preferred-addr'])),
      );
      await sleep(800);
      // be1 drained: a new generation of every map while datagrams flow (its CIDs still reach it).
      const text = fleetConfig(fleet, [{ configId: 0, key: readKey(qf.config) }], {
        weights: { be1: 0 },
        xdp: mode,
      });
      await reloadLbs(qf, text);
      // The first LB's agent dies: its program is detached, node:dgram carries on.
      const lb = fleet.lbs[0];
      const lbPid = qf.lbProcs.get(lb.name)?.pid as number;
      process.kill(agentPid(lbPid), 'SIGKILL');
      await waitFor(
        'the LB reports XDP failed',
        async () => (await scrape(fleet, lb)).get('quic_lb_xdp_state{state="failed",mode="",interface="eth0"}') === 1,
        10_000,
      );
      expect(await healthzOf(fleet, lb)).toMatch(
        /xdp: \{"state":"failed","interface":"eth0","reason":"XDP agent exited/,
      );
      for (const r of await downloads) {
        expect(r.out).toContain('[:status: 200]');
        expect(isDemoBody(r.file, size)).toBe(true);
      }
      // The LB keeps serving new connections on node:dgram alone.
      const before = await carried(fleet);
      const again = await client(fleet, dir, '/bytes/100000', ['--no-preferred-addr']);
      expect(isDemoBody(again.file, 100_000)).toBe(true);
      const after = await carried(fleet);
      expect(after.node + after.xdp).toBeGreaterThan(before.node + before.xdp);
    }, 180_000);
  },
);

/** The fleet's QUIC-LB key, read back from its config file (fleetConfig writes `key: '…'`). */
function readKey(file: string): string {
  const m = /key: '([0-9a-f]{32})'/.exec(execFileSync('cat', [file], { encoding: 'utf8' }));
  if (!m) throw new Error(`no key in ${file}`);
  return m[1];
}
