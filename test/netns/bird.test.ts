// BGP anycast with BIRD 2 in network namespaces (issue 6, item 6): each LB namespace announces
// the VIP to the router's BIRD, which installs an ECMP route (`merge paths`); a failing health
// check withdraws the route (deploy/bird/vip-health.sh) and a dead BIRD is dropped at hold-time
// expiry. Root only (CI); non-root developers skip the namespace part.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIRD_DIR, birdc, checkBirdConfig, lbBirdConfig, renderTemplate, routerBirdConfig, startBird } from './bird.js';
import { canUseNetns, commandExists, withFleet, Fleet, FleetError, pidAlive, type Ns } from './netns.js';
import { probeFrom, startEcho } from './udp-probe.js';
import type { ChildProcess } from 'node:child_process';
import { waitFor } from '../helpers/wait.js';

const has = commandExists;
const HAS_BIRD = has('bird') && has('birdc');
const ROOT = canUseNetns() && HAS_BIRD && has('curl');
const HEALTH_PORT = 8080;

// A health endpoint like the LB's: 200 on /health while the process runs.
const HEALTH = `
require('node:http').createServer((q, r) => { r.statusCode = q.url === '/health' ? 200 : 404; r.end('ok'); })
  .listen(${HEALTH_PORT}, '127.0.0.1', () => console.log('ready'));
`;

async function startHealth(fleet: Fleet, lb: Ns): Promise<ChildProcess> {
  const c = fleet.spawn(lb, [process.execPath, '-e', HEALTH]);
  let out = '';
  c.stdout?.setEncoding('utf8');
  c.stdout?.on('data', (d: string) => (out += d));
  await waitFor(`health server in ${lb.name}`, async () => out.includes('ready'), 10_000);
  return c;
}

describe.runIf(HAS_BIRD)('deploy/bird templates', () => {
  it('render with every placeholder filled and pass `bird -p`', () => {
    const fleet = fakeFleetForRendering();
    const dir = mkdtempSync(path.join(tmpdir(), 'qlbt-birdconf-'));
    try {
      for (const [name, text] of [
        ['router.conf', routerBirdConfig(fleet)],
        ...fleet.lbs.map((lb) => [`lb${lb.index}.conf`, lbBirdConfig(fleet, lb)]),
      ]) {
        expect(text).not.toMatch(/\{\{/);
        const f = path.join(dir, name);
        writeFileSync(f, text);
        expect(() => checkBirdConfig(f)).not.toThrow();
      }
      expect(routerBirdConfig(fleet)).toContain('merge paths on');
      // a broken config is reported, not ignored
      writeFileSync(path.join(dir, 'bad.conf'), 'protocol bgp { neighbor ; }');
      expect(() => checkBirdConfig(path.join(dir, 'bad.conf'))).toThrow(FleetError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('renderTemplate refuses missing and unused values', () => {
    expect(() => renderTemplate('a {{X}}', {})).toThrow(FleetError);
    expect(() => renderTemplate('a', { X: 1 })).toThrow(FleetError);
    expect(renderTemplate('a {{X}} {{X}}', { X: 1 })).toBe('a 1 1');
  });
});

// vip-health.sh against a real /healthz on loopback and a stand-in `birdc` (first on PATH) that
// records its arguments: the script runs as systemd starts it (executed directly, which needs
// its executable bit and shebang), and needs neither BIRD nor a namespace.
describe.runIf(has('curl'))('deploy/bird/vip-health.sh', () => {
  it('announces after RISE answers of 200, withdraws after FALL failures of /healthz (503), exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'qlbt-vip-health-'));
    const calls = path.join(dir, 'birdc.calls');
    writeFileSync(path.join(dir, 'birdc'), `#!/bin/sh\necho "$*" >> '${calls}'\n`, { mode: 0o755 });
    let status = 200;
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
    const script = spawn(path.join(BIRD_DIR, 'vip-health.sh'), [url, '/run/test/bird.ctl', '0.05', '2', '2'], {
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    script.stdout.on('data', (d: Buffer) => (out += d.toString()));
    script.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => script.once('exit', (code) => r(code)));
    const birdcCalls = (): string[] =>
      existsSync(calls)
        ? readFileSync(calls, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
        : [];
    try {
      await waitFor('the announcement', async () => birdcCalls().length === 1, 10_000);
      expect(birdcCalls()).toEqual(['-s /run/test/bird.ctl enable vip']);
      status = 503;
      await waitFor('the withdrawal', async () => birdcCalls().length === 2, 10_000);
      expect(birdcCalls()).toEqual(['-s /run/test/bird.ctl enable vip', '-s /run/test/bird.ctl disable vip']);
    } finally {
      if (script.exitCode === null && script.pid !== undefined) process.kill(script.pid, 'SIGTERM');
      server.close();
    }
    expect(await exited, out).toBe(0);
    expect(out).toBe(
      'vip-health: healthy, announcing (vip enabled)\nvip-health: unhealthy, withdrawing (vip disabled)\n',
    );
    // No further birdc call: each state change is announced once.
    expect(birdcCalls()).toHaveLength(2);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe.runIf(ROOT)('BGP anycast in network namespaces (root)', () => {
  it('router learns the VIP from both LBs as one ECMP route; health failure withdraws one LB; a silently hung BIRD is dropped at hold-time expiry', async () => {
    let birdPids: number[] = [];
    let names: string[] = [];
    await withFleet({ routing: 'none', backendCount: 0, timeoutMs: 100_000 }, async (fleet) => {
      names = fleet.all.map((n) => n.name);
      expect(await fleet.vipNexthops()).toEqual([]); // nothing until BGP says so
      const router = await startBird(fleet, fleet.router, routerBirdConfig(fleet));
      const lbBirds = [];
      const health: ChildProcess[] = [];
      for (const lb of fleet.lbs) {
        const b = await startBird(fleet, lb, lbBirdConfig(fleet, lb));
        lbBirds.push(b);
        health.push(await startHealth(fleet, lb));
        fleet.spawn(lb, [
          'sh',
          path.join(BIRD_DIR, 'vip-health.sh'),
          `http://127.0.0.1:${HEALTH_PORT}/health`,
          b.socket,
          '0.2',
          '2',
          '2',
        ]);
        await startEcho(fleet, lb, fleet.vip, lb.name);
      }
      birdPids = [router.pid, ...lbBirds.map((b) => b.pid)];
      const both = fleet.lbs.map((l) => l.address as string).sort();

      await waitFor(
        'ECMP route with both LBs',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify(both),
        30_000,
      );
      const route = await fleet.execOk(fleet.router, ['ip', 'route', 'show', `${fleet.vip}/32`]);
      expect(route).toContain('proto bird');
      expect(route.match(/nexthop via/g)?.length).toBe(2);
      const sessions = await birdc(fleet, router, ['show', 'protocols']);
      expect(sessions.match(/Established/g)?.length).toBe(2);
      const spread = await probeFrom(fleet, fleet.vip, 60, 1);
      expect(new Set(spread.map(([, t]) => t[0])).size).toBe(2); // flows reach both LBs

      // lb2 becomes unhealthy: vip-health.sh disables `vip`, the route is withdrawn.
      health[1].kill('SIGKILL');
      await waitFor(
        'withdrawal of lb2',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify([fleet.lbs[0].address]),
        20_000,
      );
      expect(await birdc(fleet, lbBirds[1], ['show', 'protocols', 'vip'])).toMatch(/down/);
      const moved = await probeFrom(fleet, fleet.vip, 40, 1);
      expect(moved.every(([, t]) => t[0] === fleet.lbs[0].name)).toBe(true);

      // lb2 healthy again: announced again.
      health[1] = await startHealth(fleet, fleet.lbs[1]);
      await waitFor(
        'lb2 announced again',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify(both),
        20_000,
      );

      // lb1's node hangs silently (BIRD frozen: no withdrawal, no TCP close): the router drops
      // it when the 3 s hold time expires.
      const frozenAt = Date.now();
      process.kill(lbBirds[0].pid, 'SIGSTOP');
      await waitFor(
        'hold-time expiry of lb1',
        async () => JSON.stringify(await fleet.vipNexthops()) === JSON.stringify([fleet.lbs[1].address]),
        20_000,
      );
      // the hold timer (3 s, restarted by the last keepalive up to ~1 s before the freeze), not a
      // TCP reset (which withdraws within milliseconds)
      expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(1000);
      const after = await probeFrom(fleet, fleet.vip, 40, 1);
      expect(after.every(([, t]) => t[0] === fleet.lbs[1].name)).toBe(true);
    });
    for (const pid of birdPids) expect(pidAlive(pid)).toBe(false);
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const n of names) expect(left).not.toContain(n);
  });
});

/** A fleet object for rendering only: the constructor computes names and addresses, creates nothing. */
function fakeFleetForRendering(): Fleet {
  return new Fleet('qlbtrender0-0', '198.19.0.1', 2, 0);
}
