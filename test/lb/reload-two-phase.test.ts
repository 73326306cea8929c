// A reload is all or nothing across cluster workers (issue 10, finding 7). `quic-lb serve`
// with two workers; the new config moves server ID B from backend b to a new backend c, so
// every worker must open a new upstream socket. One worker is made unable to (its open-files
// soft limit lowered to its lowest free descriptor with prlimit: a real EMFILE on bind): the
// reload fails, no worker switches (every datagram of B still reaches b, none c, from both
// workers), the failure is logged and counted. With the limit back, the same reload succeeds.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, installYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { childPids } from '../helpers/process.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-two-phase-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

/** The lowest descriptor number `pid` has free: a soft limit there makes the next open fail. */
function lowestFreeFd(pid: number): number {
  const used = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
  let n = 0;
  while (used.has(n)) n++;
  return n;
}

function nofile(pid: number): [string, string] {
  const out = execFileSync(
    'prlimit',
    ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '--output=SOFT,HARD'],
    { encoding: 'utf8' },
  ).trim();
  const [soft, hard] = out.split(/\s+/);
  return [soft, hard];
}

function setNofile(pid: number, soft: string, hard: string): void {
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:${hard}`]);
}

describe('two-phase reload with two workers', () => {
  it('one worker failing to prepare leaves every worker on the running config', async () => {
    const [a, b, c] = await Promise.all(['127.0.9.61', '127.0.9.62', '127.0.9.63'].map((x) => Sink.start(x)));
    cleanup.push(() => [a, b, c].forEach((s) => s.close()));
    const file = path.join(dir, 'lb.yaml');
    const write = (bOwner: Sink): void => {
      installYaml(file, {
        listen: ['127.0.9.6:0'],
        quicLb: QUIC_LB_SPECS.slice(0, 1),
        backends: [
          { name: 'a', address: a.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } },
          {
            name: bOwner === b ? 'b' : 'c',
            address: bOwner.endpoint,
            serverIds: { 0: SIDS.b[0] },
            health: { type: 'none' },
          },
        ],
        fallback: { key: FALLBACK_KEY },
        returnPath: { mode: 'direct' },
        metrics: { listen: '127.0.9.6:0' },
        workers: 2,
        drainMs: 0,
        log: { level: 'info' },
      });
    };
    write(b);
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    expect(lb.info.workers).toBe(2);
    const workers = childPids(lb.proc.pid!);
    expect(workers).toHaveLength(2);
    const clients = await Promise.all([64, 65, 66, 67].map((i) => Client.start(`127.0.9.${i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));
    const perWorker = async (): Promise<number[]> => {
      const m = await lb.metrics();
      return [...m].filter(([k]) => k.startsWith('quic_lb_worker_received_packets_total{')).map(([, v]) => v);
    };
    /** Sends `n` datagrams of B's connections (spread over the workers by the kernel). */
    const sendB = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        clients[i % 4].send(shortHeader(cid(0, SIDS.b[0], i + 1)), lb.vip);
        if (i % 20 === 19) await sleep(2);
      }
    };

    // The victim: the lowest free descriptor becomes its soft limit, so its next socket fails.
    const victim = workers[0];
    const [soft, hard] = nofile(victim);
    setNofile(victim, String(lowestFreeFd(victim)), hard);
    cleanup.push(() => {
      try {
        setNofile(victim, soft, hard);
      } catch {
        // the worker has exited
      }
    });
    write(c);
    lb.proc.kill('SIGHUP');
    await waitFor(
      'the reload counted as failed',
      async () => (await lb.metrics()).get('quic_lb_config_reloads_total{outcome="failure"}') === 1,
      10_000,
    );
    expect((await lb.metrics()).get('quic_lb_config_reloads_total{outcome="success"}')).toBe(0);
    expect(lb.stderr).toContain('config reload failed; keeping the running config');
    expect(lb.stderr).toContain('1 of 2 could not prepare it');
    expect(lb.stderr).toContain('EMFILE');

    const before = await perWorker();
    await sendB(400);
    await waitFor('B still at b', () => b.received.length === 400, 5000);
    await sleep(100);
    expect(c.received.length).toBe(0);
    const after = await perWorker();
    // Both workers forwarded some of them, so neither switched.
    expect(after).toHaveLength(2);
    expect(after[0] - before[0]).toBeGreaterThan(0);
    expect(after[1] - before[1]).toBeGreaterThan(0);
    expect(after[0] - before[0] + (after[1] - before[1])).toBe(400);

    // The limit back: the same file now applies everywhere.
    setNofile(victim, soft, hard);
    lb.proc.kill('SIGHUP');
    await waitFor(
      'the reload succeeded',
      async () => (await lb.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') === 1,
      10_000,
    );
    await sendB(200);
    await waitFor('B at c after the successful reload', () => c.received.length === 200, 5000);
    expect(b.received.length).toBe(400);
    const m = await lb.metrics();
    expect(m.get('quic_lb_worker_restarts_total')).toBe(0);
    expect(m.get('quic_lb_workers')).toBe(2);
    expect(await lb.stop()).toBe(0);
  });
});
