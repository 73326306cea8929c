// Hot reload under traffic: file change and SIGHUP reloads lose no datagram; an invalid file
// keeps the running config and is counted as a failed reload.
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-reload-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes the config atomically (temp file + rename), as config management does. */
function install(file: string, doc: unknown): void {
  const tmp = `${file}.tmp`;
  writeYaml(tmp, doc);
  renameSync(tmp, file);
}

describe('hot reload', () => {
  it('loses nothing under traffic; an invalid file keeps the old config', async () => {
    const [a, b, c] = await Promise.all(['127.0.1.20', '127.0.1.21', '127.0.1.22'].map((x) => Sink.start(x)));
    cleanup.push(() => [a, b, c].forEach((s) => s.close()));
    const file = path.join(dir, 'lb.yaml');
    const base = {
      listen: ['127.0.1.2:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 3),
      health: { type: 'none' },
      fallback: { key: FALLBACK_KEY },
      returnPath: { mode: 'direct' },
      metrics: { listen: '127.0.1.2:0' },
      drainMs: 0,
      log: { level: 'warn' },
    };
    const v1 = {
      ...base,
      backends: [
        { name: 'a', address: a.endpoint, serverIds: { 0: SIDS.a[0] } },
        { name: 'b', address: b.endpoint, serverIds: { 0: SIDS.b[0] } },
      ],
    };
    const v2 = {
      ...base,
      backends: [
        ...v1.backends,
        { name: 'c', address: c.endpoint, serverIds: { 0: SIDS.c[0], 2: SIDS.c[2] }, weight: 2 },
      ],
    };
    install(file, v1);
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    // 32 client flows: the unroutable datagrams take the fallback, and each flow lands on c (half
    // of the table after the reload) with probability 1/2; with 4 flows, 1 run in 16 sent c nothing.
    const clients = await Promise.all(Array.from({ length: 32 }, (_, i) => Client.start(`127.0.1.${200 + i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));

    const N = 3000;
    const datagrams = [
      shortHeader(cid(0, SIDS.a[0])),
      shortHeader(cid(0, SIDS.b[0])),
      shortHeader(Buffer.from('e7000102030405060708', 'hex')),
    ];
    let sent = 0;
    const events: Promise<unknown>[] = [];
    // Steady ~2000 datagrams/s for 1.5 s; config changes at 300 ms (file), 700 ms (SIGHUP), 1000 ms (invalid file).
    const start = Date.now();
    while (sent < N) {
      for (let i = 0; i < 20 && sent < N; i++, sent++) {
        const dg = Buffer.from(datagrams[sent % 3]);
        dg.writeUInt32BE(sent, dg.length - 4);
        clients[sent % clients.length].send(dg, lb.vip);
      }
      const t = Date.now() - start;
      if (t >= 300 && events.length === 0) events.push(Promise.resolve(install(file, v2)));
      if (t >= 700 && events.length === 1) events.push(Promise.resolve(lb.proc.kill('SIGHUP')));
      if (t >= 1000 && events.length === 2) {
        const bad = structuredClone(v2);
        (bad.backends[1] as { weight?: number }).weight = -1;
        events.push(Promise.resolve(install(file, bad)));
      }
      await sleep(10);
    }
    await waitFor(
      `all ${N} datagrams delivered`,
      () => a.received.length + b.received.length + c.received.length === N,
      10_000,
    );
    await sleep(400);
    // Exactly N, each exactly once.
    const tags = new Set<number>();
    for (const s of [a, b, c]) for (const r of s.received) tags.add(r.payload.readUInt32BE(r.payload.length - 4));
    expect(tags.size).toBe(N);
    expect(a.received.length + b.received.length + c.received.length).toBe(N);
    expect(c.received.length).toBeGreaterThan(0); // the reload added c to the fallback table

    const m = await lb.metrics();
    expect(m.get('quic_lb_received_packets_total{reason="dropped_malformed"}')).toBe(0);
    expect(m.get('quic_lb_received_packets_total{reason="dropped_no_backend"}')).toBe(0);
    expect(m.get('quic_lb_config_reloads_total{outcome="success"}')).toBeGreaterThanOrEqual(2);
    expect(m.get('quic_lb_config_reloads_total{outcome="failure"}')).toBe(1);
    expect(m.get('quic_lb_config_last_reload_success')).toBe(0);
    expect(lb.stderr).toContain('ERR_CONFIG_RANGE');
    expect(lb.stderr).toContain('/backends/1/weight');

    // The running config is still v2: config 2's CID for c routes to c.
    const before = c.received.length;
    clients[0].send(shortHeader(cid(2, SIDS.c[2])), lb.vip);
    await waitFor('config 2 still routed after the failed reload', () => c.received.length === before + 1, 2000);

    // A valid file again: success, and removing c from the config takes it out.
    install(file, v1);
    await waitFor(
      'successful reload',
      async () => (await lb.metrics()).get('quic_lb_config_last_reload_success') === 1,
      5000,
    );
    const cBefore = c.received.length;
    clients[0].send(shortHeader(cid(0, SIDS.c[0])), lb.vip);
    await waitFor(
      'c unknown after reload',
      async () => (await lb.metrics()).get('quic_lb_received_packets_total{reason="fallback_unknown_server_id"}') === 1,
      3000,
    );
    expect(c.received.length).toBe(cBefore);
    expect(await lb.stop()).toBe(0);
  });
});
