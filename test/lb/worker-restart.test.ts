// Cluster workers that exit are replaced with an exponential backoff (1 s, then 2 s for a second
// exit in a row, ... up to 60 s), counted in quic_lb_worker_restarts_total: a datagram that
// kills workers cannot make them spin. Workers are killed by PID (SIGKILL).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, writeYaml } from './net.js';
import { waitFor } from '../helpers/wait.js';
import { childPids } from '../helpers/process.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-restart-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('worker restarts', () => {
  it('back off: 1 s after the first exit, 2 s after a second one in a row; counted', async () => {
    const sink = await Sink.start('127.0.9.70');
    cleanup.push(() => sink.close());
    const file = path.join(dir, 'lb.yaml');
    writeYaml(file, {
      listen: ['127.0.9.7:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 1),
      backends: [{ name: 'a', address: sink.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
      fallback: { key: FALLBACK_KEY },
      returnPath: { mode: 'direct' },
      metrics: { listen: '127.0.9.7:0' },
      workers: 2,
      drainMs: 0,
      log: { level: 'fatal' },
    });
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    const restarts = async (): Promise<number> => (await lb.metrics()).get('quic_lb_worker_restarts_total') ?? -1;
    const workers = async (): Promise<number> => (await lb.metrics()).get('quic_lb_workers') ?? -1;
    expect(await restarts()).toBe(0);

    const killOne = (): number => {
      const pid = childPids(lb.proc.pid!)[0];
      process.kill(pid, 'SIGKILL');
      return Date.now();
    };
    let t0 = killOne();
    await waitFor('first restart', async () => (await restarts()) === 1 && (await workers()) === 2, 5000);
    const first = Date.now() - t0;
    t0 = killOne();
    await waitFor('second restart', async () => (await restarts()) === 2 && (await workers()) === 2, 8000);
    const second = Date.now() - t0;
    expect(first).toBeGreaterThanOrEqual(950);
    expect(second).toBeGreaterThanOrEqual(1950);

    const client = await Client.start('127.0.9.71');
    cleanup.push(() => client.close());
    for (let i = 0; i < 20; i++) client.send(shortHeader(cid(0, SIDS.a[0], i + 1)), lb.vip);
    await waitFor('forwarding after the restarts', () => sink.received.length === 20, 3000);
    expect(await lb.stop()).toBe(0);
  });
});
