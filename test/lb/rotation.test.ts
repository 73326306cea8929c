// Return-path key rotation and serialised config changes, in one process on loopback (the key
// list codec itself: test/wire/proxy-v2.test.ts):
// - [old] -> [old, new] -> [new, old] -> [new] while a backend replies under traffic, switching
//   from the old key to the new one in the middle: no reply refused (return_rejected{hmac} 0),
//   quic_lb_return_auth_total{key} shows which list position verified;
// - 20 applyConfig() / Forwarder.apply() calls fired without awaiting, alternating two backend
//   lists, while datagrams flow: no crash, the last call's config runs, traffic is delivered.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { type LoadBalancer, type LbConfig, startLoadBalancer, validateConfig } from '../../src/lb/index.js';
import type { LocalPlane } from '../../src/lb/plane.js';
import { Client, Sink, installYaml } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';
import { parseMetrics } from '../helpers/metrics.js';

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});
const silent = pino({ level: 'silent' });

async function metricsOf(lb: LoadBalancer): Promise<Map<string, number>> {
  return parseMetrics(await lb.metricsText());
}

describe('return key rotation under traffic', () => {
  it('[old] -> [old,new] -> [new,old] -> [new] with the backend switching keys: no reply refused', async () => {
    const OLD = '0a'.repeat(32);
    const NEW = '0b'.repeat(32);
    const sink = await Sink.start('127.0.9.30');
    cleanup.push(() => sink.close());
    const doc = (hmacKeys: string[]): Record<string, unknown> => ({
      listen: ['127.0.9.3:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 1),
      backends: [{ name: 'a', address: sink.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
      fallback: { key: FALLBACK_KEY },
      returnPath: { listen: '127.0.9.3:0', hmacKeys },
    });
    const lb = await startLoadBalancer(validateConfig(doc([OLD])), { logger: silent });
    cleanup.push(() => lb.close());
    const vip = lb.addresses().vips[0];
    const ret = lb.addresses().returnPort!;
    const client = await Client.start('127.0.9.55');
    cleanup.push(() => client.close());
    const to = { address: '127.0.9.55', port: client.port };

    let signWith = Buffer.from(OLD, 'hex');
    let sent = 0;
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        for (let i = 0; i < 20; i++) {
          const p = Buffer.alloc(8);
          p.writeUInt32BE(sent++);
          sink.reply(ret, vip, to, p, signWith);
        }
        await sleep(5);
      }
    })();
    const step = async (keys: string[]): Promise<void> => {
      const r = await lb.applyConfig(validateConfig(doc(keys)));
      expect(r.ok).toBe(true);
      await sleep(60);
    };
    await sleep(60);
    await step([OLD, NEW]);
    signWith = Buffer.from(NEW, 'hex'); // the backends move to the new key
    await sleep(60);
    await step([NEW, OLD]);
    await step([NEW]);
    stop = true;
    await traffic;
    await waitFor(`${sent} replies delivered`, () => client.received.length === sent, 5000);
    const m = await metricsOf(lb);
    expect(m.get('quic_lb_return_rejected_total{reason="hmac"}')).toBe(0);
    expect(m.get('quic_lb_return_packets_total')).toBe(sent);
    // Old-key replies verified at position 0 (under [old] and [old,new]) or 1 (under [new,old]);
    // new-key replies at 1 (under [old,new]) or 0. Both positions were used, and all add up.
    expect(m.get('quic_lb_return_auth_total{key="0"}')).toBeGreaterThan(0);
    expect(m.get('quic_lb_return_auth_total{key="1"}')).toBeGreaterThan(0);
    expect(
      (m.get('quic_lb_return_auth_total{key="0"}') ?? 0) + (m.get('quic_lb_return_auth_total{key="1"}') ?? 0),
    ).toBe(sent);
    // After [new] the old key is refused.
    sink.reply(ret, vip, to, Buffer.from('late-old'), Buffer.from(OLD, 'hex'));
    await waitFor(
      'old key refused',
      async () => (await metricsOf(lb)).get('quic_lb_return_rejected_total{reason="hmac"}') === 1,
      3000,
    );
  });
});

describe('overlapping config changes', () => {
  it('20 applyConfig() and 20 Forwarder.apply() calls without awaiting: no crash, the last one runs, traffic delivered', async () => {
    const sinks = await Promise.all(['127.0.9.40', '127.0.9.41', '127.0.9.42'].map((a) => Sink.start(a)));
    cleanup.push(() => sinks.forEach((s) => s.close()));
    const [a, b, c] = sinks;
    const be = (name: 'a' | 'b' | 'c', s: Sink): object => ({
      name,
      address: s.endpoint,
      serverIds: { 0: SIDS[name][0] },
      health: { type: 'none' },
    });
    const doc = (pool: object[]): LbConfig =>
      validateConfig({
        listen: ['127.0.9.4:0'],
        quicLb: QUIC_LB_SPECS.slice(0, 1),
        backends: pool,
        fallback: { key: FALLBACK_KEY },
        returnPath: { mode: 'direct' },
      });
    // b and c swap places: each list change closes one upstream socket and opens another.
    const A = doc([be('a', a), be('b', b)]);
    const B = doc([be('a', a), be('c', c)]);
    const lb = await startLoadBalancer(A, { logger: silent });
    cleanup.push(() => lb.close());
    const vip = lb.addresses().vips[0];
    const client = await Client.start('127.0.9.56');
    cleanup.push(() => client.close());
    const toA = shortHeader(cid(0, SIDS.a[0]));
    let stop = false;
    let sentA = 0;
    const traffic = (async () => {
      while (!stop) {
        for (let i = 0; i < 10; i++, sentA++) client.send(toA, vip);
        await sleep(1);
      }
    })();
    const forwarder = (lb.plane as LocalPlane).forwarder;
    const results = Array.from({ length: 20 }, (_, i) => lb.applyConfig(i % 2 === 0 ? B : A));
    expect((await Promise.all(results)).every((r) => r.ok)).toBe(true);
    // The last call was A: the control plane and the forwarder both run it.
    expect(lb.currentConfig().backends.map((x) => x.name)).toEqual(['a', 'b']);
    expect(forwarder.runningConfig().backends.map((x) => x.name)).toEqual(['a', 'b']);
    const direct = Array.from({ length: 20 }, (_, i) => forwarder.apply(i % 2 === 0 ? A : B));
    await Promise.all(direct);
    stop = true;
    await traffic;
    expect(forwarder.runningConfig()).toBe(B);
    await waitFor(`${sentA} datagrams of a's connection delivered`, () => a.received.length === sentA, 5000);
    const before = c.received.length;
    client.send(shortHeader(cid(0, SIDS.c[0])), vip);
    await waitFor('c (only in B) reachable', () => c.received.length === before + 1, 3000);
    const m = await metricsOf(lb);
    expect(m.get('quic_lb_send_errors_total{reason="thrown"}')).toBe(0);
    expect(m.get('quic_lb_config_reloads_total{outcome="success"}')).toBe(20);
    expect(m.get('quic_lb_config_reloads_total{outcome="failure"}')).toBe(0);
  });

  it('20 reload() calls without awaiting, the file rewritten before each: the last content runs', async () => {
    const [a, b, c] = await Promise.all(['127.0.9.43', '127.0.9.44', '127.0.9.45'].map((x) => Sink.start(x)));
    cleanup.push(() => [a, b, c].forEach((s) => s.close()));
    const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-reloads-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'lb.yaml');
    const write = (second: Sink, name: string): void => {
      installYaml(file, {
        listen: ['127.0.9.4:0'],
        quicLb: QUIC_LB_SPECS.slice(0, 1),
        backends: [
          { name: 'a', address: a.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } },
          { name, address: second.endpoint, serverIds: { 0: SIDS.b[0] }, health: { type: 'none' } },
        ],
        fallback: { key: FALLBACK_KEY },
        returnPath: { mode: 'direct' },
      });
    };
    write(b, 'b');
    const lb = await startLoadBalancer(file, { logger: silent, watch: false });
    cleanup.push(() => lb.close());
    const vip = lb.addresses().vips[0];
    const client = await Client.start('127.0.9.57');
    cleanup.push(() => client.close());
    const reloads: Promise<{ ok: boolean }>[] = [];
    for (let i = 0; i < 20; i++) {
      if (i % 2 === 0) write(c, 'c');
      else write(b, 'b');
      reloads.push(lb.reload());
      client.send(shortHeader(cid(0, SIDS.a[0], i + 1)), vip);
      await sleep(i % 3);
    }
    expect((await Promise.all(reloads)).every((r) => r.ok)).toBe(true);
    // The last write named b.
    expect(lb.currentConfig().backends.map((x) => x.name)).toEqual(['a', 'b']);
    const before = b.received.length;
    client.send(shortHeader(cid(0, SIDS.b[0])), vip);
    await waitFor('server ID B at b', () => b.received.length === before + 1, 3000);
    await waitFor("a's datagrams delivered across the reloads", () => a.received.length === 20, 3000);
  });
});
