// Retry offload (docs/retry.md) when the Retry SCID cannot be a routable CID (the config's CIDs are
// under 8 octets): a random 0b111 SCID, the next Initial hashed by 4-tuple, and the token of a real
// Retry refused when replayed from another address or port or used after its expiry. Also mode
// off, and two workers (the metrics add up). `quic-lb serve` on 127.0.6.x, UDP sinks as backends.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  QUIC_V1,
  RETRY_OK,
  RetryPacket,
  formatRetryTokenKey,
  generateRetryTokenKey,
  parseRetry,
} from '../../src/wire/index.js';
import { captureInitial } from '../hostile/payloads.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, KEY } from './fixtures.js';
import { startClient, startSinkFleet, type Client, type SinkFleet } from './net.js';
import { initialWithToken, syntheticInitial } from '../helpers/retry-initial.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-retry-fb-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

const keyFile = path.join(dir, 'retry-3.key');
writeFileSync(keyFile, formatRetryTokenKey(generateRetryTokenKey(3)));
chmodSync(keyFile, 0o600);

function serve(name: string, sinkAddresses: string[], extra: Record<string, unknown>): Promise<SinkFleet> {
  return startSinkFleet(
    path.join(dir, `${name}.yaml`),
    sinkAddresses,
    (sinks) => ({
      listen: ['127.0.6.2:0'],
      // 1 + 1 + 4 = 6-octet CIDs: too short for a Retry SCID (RFC 9000 §7.2).
      quicLb: [{ configId: 2, serverIdLength: 1, nonceLength: 4, key: KEY }],
      backends: sinks.map((s, i) => ({
        name: `s${i}`,
        address: s.endpoint,
        serverIds: { 2: `0${i + 1}` },
        health: { type: 'none' },
      })),
      fallback: { key: FALLBACK_KEY },
      returnPath: { mode: 'direct' },
      metrics: { listen: '127.0.6.2:0' },
      drainMs: 0,
      log: { level: 'warn' },
      ...extra,
    }),
    cleanup,
  );
}

const newClient = (address: string): Promise<Client> => startClient(address, cleanup);

let captured: Buffer;
beforeAll(async () => {
  captured = await captureInitial();
});

describe('Retry offload with an unroutable Retry SCID', () => {
  it('random 0b111 SCID; the token opens from the client, is refused from another IP or port and after expiry', async () => {
    const f = await serve('fallback', ['127.0.6.40', '127.0.6.41'], {
      retry: { mode: 'always', keyFiles: [keyFile], tokenLifetimeSeconds: 1 },
    });
    const total = (): number => f.sinks.reduce((n, s) => n + s.count, 0);
    const c = await newClient('127.0.6.50');
    const dcid = randomBytes(8);
    c.send(initialWithToken(captured, dcid, Buffer.alloc(0)), f.lb.vip);
    await waitFor('the Retry', () => c.received.length === 1, 5000);
    // The LB sealed the token at or before this second: its expiry is at most this + 1 (lifetime).
    const sealedBy = Math.floor(Date.now() / 1000);
    const retry = c.received[0].payload;
    const r = new RetryPacket();
    expect(parseRetry(retry, dcid, r)).toBe(RETRY_OK);
    const scid = Buffer.from(retry.subarray(r.scidOffset, r.scidOffset + r.scidLength));
    const token = Buffer.from(retry.subarray(r.tokenOffset, r.tokenOffset + r.tokenLength));
    expect(scid.length).toBe(8); // max(8, the config's 6)
    expect(scid[0] >> 5).toBe(7); // codepoint 0b111 (draft-21 §3.2)
    expect(scid[0] & 0x1f).toBe(7); // self-encoded length - 1
    const answer = initialWithToken(captured, scid, token);

    // Replayed from another IP, and from another port of the same IP: dropped, never answered.
    const otherIp = await newClient('127.0.6.51');
    const otherPort = await newClient('127.0.6.50');
    otherIp.send(answer, f.lb.vip);
    otherPort.send(answer, f.lb.vip);
    await waitFor('two refusals', async () => {
      const m = await f.metrics();
      return (m.get('quic_lb_retry_initials_dropped_total{reason="invalid_token"}') ?? 0) === 2;
    });
    let m = await f.metrics();
    expect(m.get('quic_lb_retry_tokens_total{result="invalid"}')).toBe(1);
    expect(m.get('quic_lb_retry_tokens_total{result="port"}')).toBe(1);
    expect(total()).toBe(0);

    // From the client itself: forwarded (4-tuple hash), client address in the PROXY header.
    c.send(answer, f.lb.vip);
    await waitFor('forwarded', () => total() === 1, 5000);
    const got = f.sinks.flatMap((s) => s.received)[0];
    expect(got.payload).toEqual(answer);
    expect(got.client).toBe('127.0.6.50');
    expect(got.clientPort).toBe(c.port);
    m = await f.metrics();
    expect(m.get('quic_lb_retry_tokens_total{result="valid"}')).toBe(1);

    // The lifetime is 1 s, plus the 2 s skew allowance, in whole seconds: expired once the LB's
    // clock reads more than expiry + 2, that is from second sealedBy + 4 on.
    await waitFor('the token to expire', () => Math.floor(Date.now() / 1000) >= sealedBy + 4, 6000);
    c.send(answer, f.lb.vip);
    await waitFor('expired', async () => (await f.metrics()).get('quic_lb_retry_tokens_total{result="expired"}') === 1);
    await sleep(100);
    expect(total()).toBe(1);
    expect(c.received.length + otherIp.received.length + otherPort.received.length).toBe(1);
  });
});

describe('Retry offload: mode off, and two workers', () => {
  it('mode off forwards Initials untouched and counts nothing', async () => {
    const f = await serve('off', ['127.0.6.42'], { retry: { mode: 'off' } });
    const c = await newClient('127.0.6.52');
    const initial = syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8));
    c.send(initial, f.lb.vip);
    await waitFor('forwarded', () => f.sinks[0].count === 1, 5000);
    expect(f.sinks[0].received[0].payload).toEqual(initial);
    const m = await f.metrics();
    expect(m.get('quic_lb_retry_sent_total')).toBe(0);
    expect(m.get(`quic_lb_retry_active{vip="127.0.6.2:${f.lb.vip.port}"}`)).toBe(0);
    expect(await f.healthz()).not.toContain('retry:');
    expect(c.received.length).toBe(0);
  });

  it('with workers: 2, every worker answers and the metrics add up', async () => {
    const f = await serve('workers', ['127.0.6.43'], {
      workers: 2,
      retry: { mode: 'always', keyFiles: [keyFile] },
    });
    expect(f.lb.info.workers).toBe(2);
    const clients = await Promise.all(Array.from({ length: 16 }, (_, i) => newClient(`127.0.6.${60 + i}`)));
    for (const c of clients) c.send(syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8)), f.lb.vip);
    await waitFor('16 Retries', () => clients.every((c) => c.received.length === 1), 5000);
    let m = await f.metrics();
    await waitFor('counted', async () => {
      m = await f.metrics();
      return m.get('quic_lb_retry_sent_total') === 16;
    });
    expect(m.get(`quic_lb_retry_active{vip="127.0.6.2:${f.lb.vip.port}"}`)).toBe(2);
    expect(m.get('quic_lb_retry_mode_changes_total')).toBe(2);
    expect(f.sinks[0].count).toBe(0);
    expect(JSON.parse(/retry: (\{.*\})/.exec(await f.healthz())![1])).toMatchObject({ mode: 'always', active: true });
  });
});

describe('Retry key files are watched', () => {
  it('replacing a key file (rename) reloads the ring: new Retries carry the new sequence', async () => {
    const file = path.join(dir, 'watched.key');
    const write = (sequence: number): void => {
      writeFileSync(`${file}.tmp`, formatRetryTokenKey(generateRetryTokenKey(sequence)), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    };
    write(10);
    const f = await serve('watched', ['127.0.6.44'], { retry: { mode: 'always', keyFiles: [file] } });
    const c = await newClient('127.0.6.53');
    /** The key sequence of the token of a fresh Retry (its first octet, after the DCID and SCID). */
    const sequence = async (): Promise<number> => {
      const n = c.received.length;
      c.send(syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8)), f.lb.vip);
      await waitFor('a Retry', () => c.received.length === n + 1, 5000);
      const retry = c.received[n].payload;
      return retry[7 + retry[5] + retry[6 + retry[5]]];
    };
    expect(await sequence()).toBe(10);
    write(11);
    await waitFor(
      'the reload',
      async () => (await f.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') === 1,
      10_000,
    );
    expect(await sequence()).toBe(11);
  });
});
