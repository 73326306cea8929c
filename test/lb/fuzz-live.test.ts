// 10^6 random and mutated datagrams through a live `quic-lb serve`: the process survives, every
// datagram is counted under one reason, and every forwarded one reaches a backend.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, ServeProcess, Sink, sum, writeYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { backendDocs, configDoc, fuzzSeeds, rng } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-fuzz-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('live forwarder fuzz', () => {
  it('10^6 random and mutated datagrams: no crash, all counted, all forwarded ones delivered', async () => {
    const N = 1_000_000;
    const sinks = await Promise.all(['127.0.1.60', '127.0.1.61', '127.0.1.62', '127.0.1.63'].map((x) => Sink.start(x)));
    for (const s of sinks) s.record = false;
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const file = path.join(dir, 'lb.yaml');
    writeYaml(
      file,
      configDoc({
        listen: ['127.0.1.6:0'],
        backends: backendDocs(sinks.map((s) => s.endpoint)),
        metrics: { listen: '127.0.1.6:0' },
        drainMs: 0,
        log: { level: 'warn' },
      }),
    );
    const lb = await ServeProcess.start(file);
    cleanup.push(() => lb.stop('SIGKILL'));
    const clients = await Promise.all(Array.from({ length: 8 }, (_, i) => Client.start(`127.0.1.${180 + i}`)));
    cleanup.push(() => clients.forEach((x) => x.close()));
    const seeds = fuzzSeeds();
    const next = rng(0xfeed);
    const make = (): Buffer => {
      const r = next();
      if ((r & 3) === 0) {
        const len = (r >>> 2) % 1400;
        const b = Buffer.allocUnsafe(len);
        for (let j = 0; j < len; j++) b[j] = next();
        return b;
      }
      const b = Buffer.from(seeds[(r >>> 2) % seeds.length]);
      for (let k = (r >>> 6) & 3; k > 0; k--) {
        const w = next();
        b[w % Math.min(b.length, 40)] ^= 1 << ((w >>> 16) & 7);
      }
      return (r >>> 9) & 1 ? b.subarray(0, next() % (b.length + 1)) : b;
    };
    for (let sent = 0; sent < N;) {
      for (let k = 0; k < 100 && sent < N; k++, sent++) clients[sent & 7].send(make(), lb.vip);
      await sleep(4);
    }
    let counted = 0;
    await waitFor(
      'every datagram counted',
      async () => {
        counted = sum(await lb.metrics(), 'quic_lb_received_packets_total');
        return counted === N;
      },
      20_000,
    ).catch(() => expect(counted).toBe(N));
    const m = await lb.metrics();
    const dropped =
      (m.get('quic_lb_received_packets_total{reason="dropped_malformed"}') ?? 0) +
      (m.get('quic_lb_received_packets_total{reason="dropped_no_backend"}') ?? 0);
    const forwarded = N - dropped;
    expect(sum(m, 'quic_lb_backend_packets_total') - sum(m, 'quic_lb_return_packets_total')).toBe(forwarded);
    await waitFor(
      'every forwarded datagram delivered',
      () => sinks.reduce((n, s) => n + s.count, 0) === forwarded,
      10_000,
    );
    expect(m.get('quic_lb_received_packets_total{reason="routed"}')).toBeGreaterThan(N / 10);
    expect(await lb.healthz()).toBe(200);
    expect(await lb.stop()).toBe(0);
  }, 240_000);
});
