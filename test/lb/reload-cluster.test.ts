// Pool changes under traffic with two cluster workers: `quic-lb serve` (workers: 2, four-pass)
// receives a steady stream of CID-routed short-header packets from a few thousand connections
// while SIGHUP reloads swap the pool back and forth between {a, b, c} and {a, c, d} (b removed,
// d added: backend c's index moves from 2 to 1 and d takes index 2). Every packet of a
// connection owned by a backend present in both pools must reach that backend: none at a wrong
// one (a worker using a new table with old upstreams would send c's packets to d), none lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, installYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-reload-cluster-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('pool change under traffic, two workers', () => {
  it('delivers every packet of a kept backend\u2019s connections to that backend across repeated SIGHUP pool changes', async () => {
    const sinks = await Promise.all(['127.0.1.80', '127.0.1.81', '127.0.1.82', '127.0.1.83'].map((x) => Sink.start(x)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const [a, b, c, d] = sinks;
    // Server IDs of config 2 (four-pass, 3 octets): a, b, c from the fixtures, d its own.
    const sid = { a: SIDS.a[2], b: SIDS.b[2], c: SIDS.c[2], d: 'dd793a' };
    const be = (name: keyof typeof sid, s: Sink): object => ({
      name,
      address: s.endpoint,
      serverIds: { 2: sid[name] },
      health: { type: 'none' },
    });
    const file = path.join(dir, 'lb.yaml');
    const write = (pool: object[]): void => {
      installYaml(file, {
        listen: ['127.0.1.80:0'],
        quicLb: [QUIC_LB_SPECS[2]],
        backends: pool,
        fallback: { key: FALLBACK_KEY },
        returnPath: { mode: 'direct' },
        metrics: { listen: '127.0.1.80:0' },
        workers: 2,
        drainMs: 0,
        log: { level: 'warn' },
      });
    };
    const P1 = [be('a', a), be('b', b), be('c', c)];
    const P2 = [be('a', a), be('c', c), be('d', d)];
    write(P1);
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    expect(lb.info.workers).toBe(2);
    const clients = await Promise.all(
      ['127.0.1.84', '127.0.1.85', '127.0.1.86', '127.0.1.87'].map((x) => Client.start(x)),
    );
    cleanup.push(() => clients.forEach((x) => x.close()));

    // 3000 connections: owners cycle a, c, b (b's connections lose their backend at each change;
    // their packets go by fallback and are not checked). Each has its own CID (own nonce).
    const CONNS = 3000;
    const owners = ['a', 'c', 'b'] as const;
    const owner = (conn: number): (typeof owners)[number] => owners[conn % 3];
    const dgrams = Array.from({ length: CONNS }, (_, i) => {
      const dg = shortHeader(cid(2, sid[owner(i)], i + 1), 32);
      dg.writeUInt32BE(i, dg.length - 8);
      return dg;
    });
    const sinkOf = new Map<Sink, string>([
      [a, 'a'],
      [b, 'b'],
      [c, 'c'],
      [d, 'd'],
    ]);

    // ~4000 packets/s for 3 s; a pool change (file rename + SIGHUP) every 200 ms.
    const TOTAL = 12_000;
    let sent = 0;
    let changes = 0;
    const start = Date.now();
    while (sent < TOTAL) {
      for (let i = 0; i < 40 && sent < TOTAL; i++, sent++) {
        const conn = sent % CONNS;
        const dg = dgrams[conn];
        dg.writeUInt32BE(sent, dg.length - 4);
        clients[conn % clients.length].send(dg, lb.vip);
      }
      const t = Date.now() - start;
      if (t >= (changes + 1) * 200) {
        changes++;
        write(changes % 2 === 1 ? P2 : P1);
        lb.proc.kill('SIGHUP');
      }
      await sleep(10);
    }
    const keptSent = Math.floor(TOTAL / 3) * 2; // owners a and c: 2 of every 3 packets
    const keptAt = (): number => a.received.length + c.received.length;
    await waitFor(`${keptSent} packets of a's and c's connections delivered`, () => keptAt() >= keptSent, 10_000);
    await sleep(300);

    let wrong = 0;
    let kept = 0;
    const seen = new Set<number>();
    for (const s of sinks) {
      for (const r of s.received) {
        const conn = r.payload.readUInt32BE(r.payload.length - 8);
        const o = owner(conn);
        if (o === 'b') continue; // its backend left and came back: fallback, or b when present
        kept++;
        seen.add(r.payload.readUInt32BE(r.payload.length - 4));
        if (sinkOf.get(s) !== o) wrong++;
      }
    }
    expect(wrong).toBe(0);
    expect(kept).toBe(keptSent);
    expect(seen.size).toBe(keptSent);
    expect(changes).toBeGreaterThanOrEqual(8);
    const m = await lb.metrics();
    expect(m.get('quic_lb_config_reloads_total{outcome="failure"}')).toBe(0);
    expect(m.get('quic_lb_config_reloads_total{outcome="success"}')).toBeGreaterThanOrEqual(4);
    expect(m.get('quic_lb_workers')).toBe(2);
    expect(await lb.stop()).toBe(0);
  });
});
