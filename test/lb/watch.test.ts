// Hot reload on file change, the Kubernetes way: a ConfigMap and a Secret mounted as the kubelet
// lays them out (`..<timestamp>/file`, `..data -> ..<timestamp>`, `file -> ..data/file`) and
// updated by an atomic rename of a new `..data` symlink. A real `quic-lb serve` must reload on
// the config swap and on a key-file-only swap, keep its watch across renames, and ignore writes
// that do not change the resolved content (unrelated files, an identical swap).
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createConfig, encodeConnectionId } from '../../src/cid/index.js';
import { Client, ServeProcess, Sink } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-watch-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

const KEY1 = '00112233445566778899aabbccddeeff';
const KEY2 = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';

/** A kubelet-style volume: every update writes a new timestamped dir and swaps `..data` by rename. */
class KubeVolume {
  private gen = 0;
  private current = '';
  constructor(readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  /** Publishes `files` (name -> content) atomically; the first call also creates the user-visible links. */
  publish(files: Record<string, string>): void {
    const ts = `..2026_11_21_04_00_${String(++this.gen).padStart(2, '0')}.${process.pid}`;
    mkdirSync(path.join(this.root, ts));
    for (const [name, content] of Object.entries(files)) writeFileSync(path.join(this.root, ts, name), content);
    const tmp = path.join(this.root, '..data_tmp');
    symlinkSync(ts, tmp);
    renameSync(tmp, path.join(this.root, '..data')); // the atomic swap
    if (this.current === '') {
      for (const name of Object.keys(files)) symlinkSync(path.join('..data', name), path.join(this.root, name));
    } else {
      rmSync(path.join(this.root, this.current), { recursive: true, force: true });
    }
    this.current = ts;
  }
}

describe('config watch (Kubernetes ConfigMap/Secret swaps, renames)', () => {
  it('reloads on a ..data swap of the config or of a key file only, and not on unrelated writes', async () => {
    const [a, b] = await Promise.all(['127.0.1.70', '127.0.1.71'].map((x) => Sink.start(x)));
    cleanup.push(() => [a, b].forEach((s) => s.close()));
    const client = await Client.start('127.0.1.72');
    cleanup.push(() => client.close());

    const cm = new KubeVolume(path.join(dir, 'config'));
    const secret = new KubeVolume(path.join(dir, 'secret'));
    // Config 1 (single-pass, 8-octet server IDs) takes its key from the Secret.
    const keyed = { configId: 1, serverIdLength: 8, nonceLength: 8, keyFile: '../secret/quic-lb.key' };
    const doc = (sidA0: string, sidB0: string, extraConfigs: object[] = []): string =>
      stringify({
        listen: ['127.0.1.70:0'],
        quicLb: [QUIC_LB_SPECS[0], keyed, ...extraConfigs],
        backends: [
          { name: 'a', address: a.endpoint, serverIds: { 0: sidA0, 1: SIDS.a[1] } },
          { name: 'b', address: b.endpoint, serverIds: { 0: sidB0, 1: SIDS.b[1] } },
        ],
        health: { type: 'none' },
        fallback: { key: FALLBACK_KEY },
        returnPath: { mode: 'direct' },
        metrics: { listen: '127.0.1.70:0' },
        drainMs: 0,
        log: { level: 'warn' },
      });
    const v1 = doc(SIDS.a[0], SIDS.b[0]);
    cm.publish({ 'config.yaml': v1 });
    secret.publish({ 'quic-lb.key': `${KEY1}\n` });

    const lb = await ServeProcess.start(path.join(cm.root, 'config.yaml'));
    cleanup.push(() => lb.stop('SIGKILL'));
    const reloads = async (): Promise<number> =>
      (await lb.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') ?? -1;
    /** Sends one datagram and returns the sink that got it. */
    const deliver = async (dg: Buffer): Promise<Sink> => {
      const before = [a.count, b.count];
      client.send(dg, lb.vip);
      await waitFor('delivery', () => a.count + b.count > before[0] + before[1], 3000);
      return a.count > before[0] ? a : b;
    };
    const sid0001 = shortHeader(cid(0, '0001'));
    expect(await deliver(sid0001)).toBe(a);
    let m = await lb.metrics();
    expect(m.get('quic_lb_config_info{config_id="0",algorithm="plaintext"}')).toBe(1);
    expect(m.get('quic_lb_config_info{config_id="1",algorithm="single-pass"}')).toBe(1);
    expect([...m.keys()].filter((k) => k.startsWith('quic_lb_config_info{'))).toHaveLength(2);
    const loaded0 = m.get('quic_lb_config_loaded_timestamp_seconds')!;
    expect(loaded0).toBeGreaterThan(0);

    // Unrelated writes in both volumes, and a swap to identical content: no reload.
    writeFileSync(path.join(cm.root, 'unrelated.txt'), 'x');
    writeFileSync(path.join(secret.root, 'other-secret'), 'y');
    cm.publish({ 'config.yaml': v1 });
    await sleep(1000);
    expect(await reloads()).toBe(0);

    // The ConfigMap swap: server ID 0001 moves to b, and config 2 (four-pass) appears.
    cm.publish({ 'config.yaml': doc(SIDS.b[0], SIDS.a[0], [QUIC_LB_SPECS[2]]) });
    await waitFor('reload after the ..data swap of the ConfigMap', async () => (await reloads()) === 1, 5000);
    expect(await deliver(sid0001)).toBe(b);
    m = await lb.metrics();
    expect(m.get('quic_lb_config_info{config_id="2",algorithm="four-pass"}')).toBe(1);
    expect(m.get('quic_lb_config_loaded_timestamp_seconds')!).toBeGreaterThanOrEqual(loaded0);

    // A Secret-only swap: a CID minted with the new key routes only after the reload.
    const cfg2 = createConfig({ configId: 1, serverIdLength: 8, nonceLength: 8, key: Buffer.from(KEY2, 'hex') });
    const newKeyCid = shortHeader(
      Buffer.from(encodeConnectionId(cfg2, Buffer.from(SIDS.a[1], 'hex'), Buffer.alloc(8, 9))),
    );
    await deliver(newKeyCid);
    m = await lb.metrics();
    expect(m.get('quic_lb_cid_packets_total{config_id="1",result="routed"}') ?? 0).toBe(0);
    secret.publish({ 'quic-lb.key': `${KEY2}\n` });
    await waitFor('reload after the ..data swap of the Secret', async () => (await reloads()) === 2, 5000);
    expect(await deliver(newKeyCid)).toBe(a);
    m = await lb.metrics();
    expect(m.get('quic_lb_cid_packets_total{config_id="1",result="routed"}')).toBe(1);

    // An editor-style replace by rename (`mv tmp config.yaml`) still reloads; config 2 goes away.
    const tmp = path.join(cm.root, '.config.yaml.swp');
    writeFileSync(tmp, v1);
    renameSync(tmp, path.join(cm.root, 'config.yaml'));
    await waitFor('reload after mv over the config file', async () => (await reloads()) === 3, 5000);
    expect(await deliver(sid0001)).toBe(a);
    m = await lb.metrics();
    expect(m.has('quic_lb_config_info{config_id="2",algorithm="four-pass"}')).toBe(false);
    // ... and the watch survived it.
    writeFileSync(tmp, doc(SIDS.b[0], SIDS.a[0]));
    renameSync(tmp, path.join(cm.root, 'config.yaml'));
    await waitFor('reload after a second mv', async () => (await reloads()) === 4, 5000);
    expect((await lb.metrics()).get('quic_lb_config_reloads_total{outcome="failure"}')).toBe(0);
    expect(await lb.stop()).toBe(0);
  });
});
