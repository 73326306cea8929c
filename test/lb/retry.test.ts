// Retry offload at the LB (docs/retry.md): a real `quic-lb serve` on 127.0.6.x with plain UDP sinks
// as backends, real gtlsclient Initials re-sealed with tokens. Every test asserts the bytes the
// client gets back (or that it gets nothing), what reaches a backend, and the counters.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromSpec, decodeServerId, encodeConnectionId } from '../../src/cid/index.js';
import {
  OpenedRetryToken,
  QUIC_V1,
  QUIC_V2,
  RETRY_OK,
  RETRY_TOKEN_OK,
  RetryPacket,
  RetryTokenKeys,
  formatRetryTokenKey,
  generateRetryTokenKey,
  openRetryToken,
  parseRetry,
  sealRetryToken,
  type RetryTokenKey,
} from '../../src/wire/index.js';
import { captureInitial, parseInitial } from '../hostile/payloads.js';
import { runCli } from '../helpers/cli.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, KEY } from './fixtures.js';
import { installYaml, startClient, startSinkFleet, writeYaml, type Client, type Sink, type SinkFleet } from './net.js';
import { initialWithToken, syntheticInitial } from '../helpers/retry-initial.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-retry-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

/** QUIC-LB config of the test fleet: 9-octet CIDs, so the Retry SCID is a routable CID. */
const QUIC_LB = { configId: 1, serverIdLength: 2, nonceLength: 6, key: KEY };
const LB_CONFIG = configFromSpec(QUIC_LB);
const SID = { a: '0a01', b: '0b02' } as const;
/** Retry offload transition of the load-mode test: long enough for a loaded machine to act inside it. */
const TRANSITION_MS = 8000;

/** Writes a key file (mode 0600) and returns its path and key. */
function keyFile(name: string, sequence: number): { file: string; key: RetryTokenKey } {
  const key = generateRetryTokenKey(sequence);
  const file = path.join(dir, name);
  writeFileSync(file, formatRetryTokenKey(key));
  chmodSync(file, 0o600);
  return { file, key };
}

function fleetDoc(sinks: Sink[], retry: Record<string, unknown>): Record<string, unknown> {
  return {
    listen: ['127.0.6.1:0'],
    quicLb: [QUIC_LB],
    backends: [
      { name: 'a', address: sinks[0].endpoint, serverIds: { 1: SID.a }, health: { type: 'none' } },
      { name: 'b', address: sinks[1].endpoint, serverIds: { 1: SID.b }, health: { type: 'none' } },
    ],
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    metrics: { listen: '127.0.6.1:0' },
    drainMs: 0,
    log: { level: 'info' },
    retry,
  };
}

type Fleet = SinkFleet;

function startFleet(name: string, sinkAddresses: string[], retry: Record<string, unknown>): Promise<Fleet> {
  return startSinkFleet(path.join(dir, `${name}.yaml`), sinkAddresses, (sinks) => fleetDoc(sinks, retry), cleanup);
}

const newClient = (address: string): Promise<Client> => startClient(address, cleanup);

/** Waits for the next datagram to `c` (the `n`th) and returns it. */
async function nextReply(c: Client, n: number): Promise<Buffer> {
  await waitFor(`datagram ${n} to the client`, () => c.received.length >= n, 5000);
  return c.received[n - 1].payload;
}

/** The 4-octet address of a dotted IPv4 literal. */
const ip4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

const now = (): number => Math.floor(Date.now() / 1000);

/** The sink index owning a CID of the test config. */
function ownerOf(cid: Uint8Array): number {
  const sid = decodeServerId(LB_CONFIG, cid);
  return sid === undefined ? -1 : ([SID.a, SID.b] as string[]).indexOf(Buffer.from(sid).toString('hex'));
}

const sinkTotal = (f: Fleet): number => f.sinks.reduce((n, s) => n + s.count, 0);

let captured: Buffer;
beforeAll(async () => {
  captured = await captureInitial();
});

describe('Retry offload, mode always', () => {
  let f: Fleet;
  let key1: { file: string; key: RetryTokenKey };
  let client: Client;
  beforeAll(async () => {
    key1 = keyFile('always-1.key', 1);
    f = await startFleet('always', ['127.0.6.10', '127.0.6.11'], {
      mode: 'always',
      keyFiles: [key1.file],
      tokenLifetimeSeconds: 10,
    });
    client = await newClient('127.0.6.20');
  });

  it('answers a token-less Initial with a Retry (tag, token, SCID); the Initial with its token reaches the SCID owner', async () => {
    const dcid = randomBytes(12);
    const initial = initialWithToken(captured, dcid, Buffer.alloc(0));
    const clientScid = parseInitial(initial).scid;
    client.send(initial, f.lb.vip);
    const retry = await nextReply(client, 1);
    const r = new RetryPacket();
    // RFC 9001 §5.8: the tag verifies with the ODCID = the Initial's DCID.
    expect(parseRetry(retry, dcid, r)).toBe(RETRY_OK);
    expect(parseRetry(retry, randomBytes(12), new RetryPacket())).not.toBe(RETRY_OK);
    expect(r.version).toBe(QUIC_V1);
    expect(retry.subarray(r.dcidOffset, r.dcidOffset + r.dcidLength)).toEqual(clientScid);
    expect(retry.length).toBeLessThan(initial.length); // no amplification
    const scid = Buffer.from(retry.subarray(r.scidOffset, r.scidOffset + r.scidLength));
    expect(scid.length).toBe(LB_CONFIG.cidLength);
    const owner = ownerOf(scid);
    expect(owner).toBeGreaterThanOrEqual(0);
    const token = Buffer.from(retry.subarray(r.tokenOffset, r.tokenOffset + r.tokenLength));
    expect(token[0]).toBe(1); // type 0, key sequence 1
    const out = new OpenedRetryToken();
    const ring = new RetryTokenKeys([key1.key]);
    expect(openRetryToken(ring, token, 0, token.length, ip4('127.0.6.20'), client.port, scid, now(), out)).toBe(
      RETRY_TOKEN_OK,
    );
    expect(out.odcid()).toEqual(dcid);
    expect(out.expiresAt).toBeGreaterThanOrEqual(now() + 9);
    expect(out.expiresAt).toBeLessThanOrEqual(now() + 10);
    expect(sinkTotal(f)).toBe(0);
    // Header, both CIDs, token (type/sequence, UTN, timestamp, ODCIL, ODCID, port, ICV), tag.
    expect(retry.length).toBe(7 + clientScid.length + scid.length + (1 + 12 + 8 + 1 + dcid.length + 2 + 16) + 16);

    // The client's next Initial: DCID = Retry SCID, token from the Retry, re-sealed under the new DCID.
    const second = initialWithToken(captured, scid, token);
    client.send(second, f.lb.vip);
    const sink = f.sinks[owner];
    await waitFor('the Initial with the token at the SCID owner', () => sink.received.length === 1, 5000);
    expect(sink.received[0].payload).toEqual(second);
    expect(sink.received[0].client).toBe('127.0.6.20');
    expect(sink.received[0].clientPort).toBe(client.port);
    expect(f.sinks[1 - owner].count).toBe(0);
    const m = await f.metrics();
    expect(m.get('quic_lb_retry_sent_total')).toBe(1);
    expect(m.get('quic_lb_retry_tokens_total{result="valid"}')).toBe(1);
    expect(m.get('quic_lb_retry_sent_bytes_total{direction="sent"}')).toBe(retry.length);
    expect(m.get('quic_lb_retry_sent_bytes_total{direction="received"}')).toBe(initial.length);
    expect(m.get(`quic_lb_retry_active{vip="127.0.6.1:${f.lb.vip.port}"}`)).toBe(1);
    expect(client.received.length).toBe(1);
  });

  it('answers a QUIC v2 Initial with a v2 Retry (RFC 9369 §3.3.3 tag)', async () => {
    const c = await newClient('127.0.6.21');
    const dcid = randomBytes(8);
    const scid = randomBytes(5);
    c.send(syntheticInitial(QUIC_V2, dcid, scid), f.lb.vip);
    const retry = await nextReply(c, 1);
    const r = new RetryPacket();
    expect(parseRetry(retry, dcid, r)).toBe(RETRY_OK);
    expect(r.version).toBe(QUIC_V2);
    expect(retry[0] & 0x30).toBe(0); // v2 Retry type bits 0b00
    expect(retry.subarray(r.dcidOffset, r.dcidOffset + r.dcidLength)).toEqual(scid);
  });

  /** Sends `initial` from `c`, waits, and returns the counter deltas; asserts nothing came back and nothing was forwarded. */
  async function refused(c: Client, initial: Buffer): Promise<Map<string, number>> {
    const before = await f.metrics();
    const forwarded = sinkTotal(f);
    const replies = c.received.length;
    c.send(initial, f.lb.vip);
    let after = await f.metrics();
    await waitFor(
      'the drop counted',
      async () => {
        after = await f.metrics();
        return (
          (after.get('quic_lb_received_packets_total{reason="fallback_initial"}') ?? 0) >
          (before.get('quic_lb_received_packets_total{reason="fallback_initial"}') ?? 0)
        );
      },
      5000,
    );
    await sleep(100);
    expect(c.received.length).toBe(replies);
    expect(sinkTotal(f)).toBe(forwarded);
    const delta = new Map<string, number>();
    for (const [k, v] of after) if (k.startsWith('quic_lb_retry_')) delta.set(k, v - (before.get(k) ?? 0));
    return delta;
  }

  it('drops, without an answer, a tampered token, one from another IP or port, an expired one, an unknown key sequence', async () => {
    const c = await newClient('127.0.6.22');
    const other = await newClient('127.0.6.23');
    // Tokens as the LB seals them, for a random (unroutable) DCID the test then uses.
    const seal = (o: { port?: number; ip?: string; expiresAt?: number; key?: RetryTokenKey; dcid: Buffer }): Buffer =>
      sealRetryToken(new RetryTokenKeys([o.key ?? key1.key]), {
        clientIp: ip4(o.ip ?? '127.0.6.22'),
        clientPort: o.port ?? c.port,
        odcid: randomBytes(10),
        rscid: o.dcid,
        expiresAt: o.expiresAt ?? now() + 10,
      });
    const cases: [string, (dcid: Buffer) => Buffer, Client, string][] = [
      [
        'tampered',
        (dcid) => {
          const t = seal({ dcid });
          t[20] ^= 0x01;
          return t;
        },
        c,
        'invalid',
      ],
      ['another IP', (dcid) => seal({ dcid }), other, 'invalid'],
      ['another port', (dcid) => seal({ dcid, port: c.port === 40000 ? 40001 : 40000 }), c, 'port'],
      ['expired', (dcid) => seal({ dcid, expiresAt: now() - 10 }), c, 'expired'],
      ['unknown key sequence', (dcid) => seal({ dcid, key: generateRetryTokenKey(9) }), c, 'key_sequence'],
    ];
    for (const [what, token, from, result] of cases) {
      const dcid = randomBytes(10);
      const d = await refused(from, initialWithToken(captured, dcid, token(dcid)));
      expect(d.get(`quic_lb_retry_tokens_total{result="${result}"}`), what).toBe(1);
      expect(d.get('quic_lb_retry_initials_dropped_total{reason="invalid_token"}'), what).toBe(1);
      expect(d.get('quic_lb_retry_sent_total'), what).toBe(0);
    }
    // The same token, untouched, from the right address: forwarded (the control of the cases above).
    const dcid = randomBytes(10);
    const good = initialWithToken(captured, dcid, seal({ dcid }));
    const forwarded = sinkTotal(f);
    c.send(good, f.lb.vip);
    await waitFor('the valid Initial forwarded', () => sinkTotal(f) === forwarded + 1, 5000);
  });

  it('drops an Initial in a datagram under 1200 octets, never answering it (RFC 9000 §14.1)', async () => {
    const c = await newClient('127.0.6.24');
    const d = await refused(c, syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8), Buffer.alloc(0), 1000));
    expect(d.get('quic_lb_retry_initials_dropped_total{reason="small_datagram"}')).toBe(1);
    expect(d.get('quic_lb_retry_sent_total')).toBe(0);
  });

  it('forwards a NEW_TOKEN token untouched, and a token-less Initial whose DCID is routed', async () => {
    const c = await newClient('127.0.6.25');
    const before = await f.metrics();
    const newToken = Buffer.concat([Buffer.of(0x80 | 0x05), randomBytes(40)]);
    const withNewToken = initialWithToken(captured, randomBytes(8), newToken);
    const routedDcid = encodeConnectionId(LB_CONFIG, Buffer.from(SID.b, 'hex'), randomBytes(6));
    const routed = initialWithToken(captured, routedDcid, Buffer.alloc(0));
    const [sa, sb] = f.sinks;
    const nb = sb.received.length;
    const total = sinkTotal(f);
    c.send(withNewToken, f.lb.vip);
    c.send(routed, f.lb.vip);
    await waitFor('both forwarded', () => sinkTotal(f) === total + 2, 5000);
    const got = [...sa.received, ...sb.received].map((x) => x.payload);
    expect(got.some((p) => p.equals(withNewToken))).toBe(true);
    expect(sb.received.slice(nb).some((x) => x.payload.equals(routed))).toBe(true);
    await sleep(100);
    expect(c.received.length).toBe(0);
    const m = await f.metrics();
    const delta = (k: string): number => (m.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta('quic_lb_retry_tokens_total{result="new_token"}')).toBe(1);
    expect(delta('quic_lb_retry_sent_total')).toBe(0);
  });

  it('healthz names the mode and state', async () => {
    const text = await f.healthz();
    const m = /retry: (\{.*\})/.exec(text);
    expect(m).not.toBeNull();
    const r = JSON.parse(m![1]) as { mode: string; active: boolean; since: string };
    expect(r.mode).toBe('always');
    expect(r.active).toBe(true);
    expect(Date.parse(r.since)).toBeGreaterThan(Date.now() - 120_000);
  });

  it('key rotation by SIGHUP: [new, old] seals with new and opens both; [new] refuses the old sequence', async () => {
    const key2 = keyFile('always-2.key', 2);
    const c = await newClient('127.0.6.26');
    const sealFor = (k: RetryTokenKey, dcid: Buffer): Buffer =>
      sealRetryToken(new RetryTokenKeys([k]), {
        clientIp: ip4('127.0.6.26'),
        clientPort: c.port,
        odcid: randomBytes(8),
        rscid: dcid,
        expiresAt: now() + 10,
      });
    const forwardedWith = async (k: RetryTokenKey): Promise<boolean> => {
      const dcid = randomBytes(9);
      const total = sinkTotal(f);
      c.send(initialWithToken(captured, dcid, sealFor(k, dcid)), f.lb.vip);
      try {
        await waitFor('forwarded', () => sinkTotal(f) === total + 1, 1500);
        return true;
      } catch {
        return false;
      }
    };
    const reloads = async (): Promise<number> =>
      (await f.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') ?? 0;
    const r0 = await reloads();
    installYaml(f.file, fleetDoc(f.sinks, { mode: 'always', keyFiles: [key2.file, key1.file] }));
    f.lb.proc.kill('SIGHUP');
    await waitFor('reload 1', async () => (await reloads()) >= r0 + 1, 5000);
    expect(await forwardedWith(key1.key)).toBe(true);
    expect(await forwardedWith(key2.key)).toBe(true);
    // New Retries carry sequence 2.
    const n = c.received.length;
    c.send(initialWithToken(captured, randomBytes(8), Buffer.alloc(0)), f.lb.vip);
    const retry = await nextReply(c, n + 1);
    // The token's first octet (type 0, sequence 2) follows the DCID and SCID.
    expect(retry[7 + retry[5] + retry[6 + retry[5]]]).toBe(2);

    const r1 = await reloads();
    installYaml(f.file, fleetDoc(f.sinks, { mode: 'always', keyFiles: [key2.file] }));
    f.lb.proc.kill('SIGHUP');
    await waitFor('reload 2', async () => (await reloads()) >= r1 + 1, 5000);
    const before = (await f.metrics()).get('quic_lb_retry_tokens_total{result="key_sequence"}') ?? 0;
    expect(await forwardedWith(key1.key)).toBe(false);
    expect(await forwardedWith(key2.key)).toBe(true);
    expect((await f.metrics()).get('quic_lb_retry_tokens_total{result="key_sequence"}')).toBe(before + 1);
  });

  it('a reload with a bad key file is refused: the running keys stay', async () => {
    const fails = async (): Promise<number> =>
      (await f.metrics()).get('quic_lb_config_reloads_total{outcome="failure"}') ?? 0;
    const f0 = await fails();
    const bad = path.join(dir, 'bad.key');
    writeFileSync(bad, '2 00112233 445566\n');
    chmodSync(bad, 0o600);
    installYaml(f.file, fleetDoc(f.sinks, { mode: 'always', keyFiles: [bad] }));
    f.lb.proc.kill('SIGHUP');
    await waitFor('the failed reload', async () => (await fails()) >= f0 + 1, 5000);
    expect(f.lb.stderr).toContain('/retry/keyFiles/0');
    // Still answering with sequence-2 Retries.
    const c = await newClient('127.0.6.27');
    c.send(initialWithToken(captured, randomBytes(8), Buffer.alloc(0)), f.lb.vip);
    const retry = await nextReply(c, 1);
    expect(retry[7 + retry[5] + retry[6 + retry[5]]]).toBe(2);
  });
});

describe('Retry offload, mode load', () => {
  it('turns on above onPerSecond, off after offAfterMs of quiet, then validates tokens for transitionMs', async () => {
    const key = keyFile('load.key', 5);
    const f = await startFleet('load', ['127.0.6.12', '127.0.6.13'], {
      mode: 'load',
      keyFiles: [key.file],
      load: { onPerSecond: 30, offPerSecond: 10, offAfterMs: 1500, transitionMs: TRANSITION_MS },
    });
    const c = await newClient('127.0.6.30');
    const vipLabel = `quic_lb_retry_active{vip="127.0.6.1:${f.lb.vip.port}"}`;
    const tokenless = (): Buffer => syntheticInitial(QUIC_V1, randomBytes(8), randomBytes(8));
    // Below the threshold: forwarded, no Retry.
    for (let i = 0; i < 5; i++) c.send(tokenless(), f.lb.vip);
    await waitFor('5 forwarded', () => sinkTotal(f) === 5, 5000);
    let m = await f.metrics();
    expect(m.get(vipLabel)).toBe(0);
    expect(m.get('quic_lb_retry_mode_changes_total')).toBe(0);
    expect(JSON.parse(/retry: (\{.*\})/.exec(await f.healthz())![1])).toMatchObject({ mode: 'load', active: false });
    // A burst over 30/s: on; the rest of the burst gets Retries.
    for (let i = 0; i < 60; i++) c.send(tokenless(), f.lb.vip);
    await waitFor('Retries', () => c.received.length > 0, 5000);
    // Every datagram of the burst either forwarded (before the switch) or answered.
    await waitFor('the burst accounted for', async () => {
      m = await f.metrics();
      return sinkTotal(f) + (m.get('quic_lb_retry_sent_total') ?? 0) === 65;
    });
    expect(m.get(vipLabel)).toBe(1);
    expect(m.get('quic_lb_retry_mode_changes_total')).toBe(1);
    const sent = m.get('quic_lb_retry_sent_total') ?? 0;
    expect(sent).toBeGreaterThan(0);
    expect(sinkTotal(f)).toBeGreaterThanOrEqual(5 + 25); // on only past 30 in the last second
    await waitFor('every Retry at the client', () => c.received.length === sent, 5000);
    expect(JSON.parse(/retry: (\{.*\})/.exec(await f.healthz())![1])).toMatchObject({ mode: 'load', active: true });
    expect(f.lb.stderr.match(/retry offload on/g)?.length).toBe(1);

    // Quiet: off after offAfterMs (checked every 250 ms).
    await waitFor('offload off', async () => (await f.metrics()).get(vipLabel) === 0, 10_000);
    m = await f.metrics();
    expect(m.get('quic_lb_retry_mode_changes_total')).toBe(2);
    expect(f.lb.stderr.match(/retry offload off/g)?.length).toBe(1);
    // Transition: a token-less Initial is forwarded, a bad Retry token is still refused, a good one forwarded.
    // The three datagrams must reach the LB inside the transition; on a loaded machine noticing the
    // switch can take seconds, hence the long transition, and the elapsed time in the messages.
    const retryState = async (): Promise<{ since: string }> =>
      JSON.parse(/retry: (\{.*\})/.exec(await f.healthz())![1]) as { since: string };
    const offSince = Date.parse((await retryState()).since);
    const sealFor = (dcid: Buffer): Buffer =>
      sealRetryToken(new RetryTokenKeys([key.key]), {
        clientIp: ip4('127.0.6.30'),
        clientPort: c.port,
        odcid: randomBytes(8),
        rscid: dcid,
        expiresAt: now() + 10,
      });
    const d1 = randomBytes(8);
    const bad = sealFor(d1);
    bad[30] ^= 0x40;
    const total = sinkTotal(f);
    const replies = c.received.length;
    c.send(tokenless(), f.lb.vip);
    c.send(initialWithToken(captured, d1, bad), f.lb.vip);
    const d2 = randomBytes(8);
    c.send(initialWithToken(captured, d2, sealFor(d2)), f.lb.vip);
    const sentAfter = Date.now() - offSince;
    await waitFor('two forwarded', () => sinkTotal(f) === total + 2, 5000);
    m = await f.metrics();
    const during = `sent ${sentAfter} ms after the switch, transition ${TRANSITION_MS} ms`;
    expect(m.get('quic_lb_retry_tokens_total{result="invalid"}'), during).toBe(1);
    expect(m.get('quic_lb_retry_tokens_total{result="valid"}'), during).toBe(1);
    // After the transition (from the switch /healthz reports): Retry tokens go to the backend unopened.
    await sleep(Math.max(0, offSince + TRANSITION_MS + 100 - Date.now()));
    const d3 = randomBytes(8);
    const bad3 = sealFor(d3);
    bad3[30] ^= 0x40;
    c.send(initialWithToken(captured, d3, bad3), f.lb.vip);
    await waitFor('forwarded unopened', () => sinkTotal(f) === total + 3, 5000);
    m = await f.metrics();
    expect(m.get('quic_lb_retry_tokens_total{result="unverified"}')).toBe(1);
    expect(m.get('quic_lb_retry_tokens_total{result="invalid"}')).toBe(1);
    expect(c.received.length).toBe(replies);
  });
});

describe('retry config', () => {
  const base = (retry: unknown): Record<string, unknown> => ({
    listen: ['127.0.6.1:0'],
    quicLb: [QUIC_LB],
    backends: [{ name: 'a', address: '127.0.6.10:4000', serverIds: { 1: SID.a } }],
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    retry,
  });
  it('check-config reports CODE at /retry/field for each bad field', () => {
    const k1 = keyFile('cfg-1.key', 1);
    const k1b = keyFile('cfg-1b.key', 1);
    const garbage = path.join(dir, 'garbage.key');
    writeFileSync(garbage, 'not a key\n');
    const cases: [unknown, string][] = [
      [{ mode: 'sometimes', keyFiles: [k1.file] }, 'ERR_CONFIG_ENUM at /retry/mode'],
      [{ mode: 'always' }, 'ERR_CONFIG_REQUIRED at /retry/keyFiles'],
      [{ mode: 'always', keyFiles: [] }, 'ERR_CONFIG_REQUIRED at /retry/keyFiles'],
      [{ mode: 'always', keyFiles: [path.join(dir, 'missing.key')] }, 'ERR_CONFIG_READ at /retry/keyFiles/0'],
      [{ mode: 'always', keyFiles: [k1.file, garbage] }, 'ERR_CONFIG_VALUE at /retry/keyFiles/1'],
      [{ mode: 'always', keyFiles: [k1.file, k1b.file] }, 'ERR_CONFIG_DUPLICATE at /retry/keyFiles/1'],
      [{ mode: 'always', keyFiles: Array(5).fill(k1.file) }, 'ERR_CONFIG_RANGE at /retry/keyFiles'],
      [
        { mode: 'always', keyFiles: [k1.file], tokenLifetimeSeconds: 0 },
        'ERR_CONFIG_RANGE at /retry/tokenLifetimeSeconds',
      ],
      [
        { mode: 'always', keyFiles: [k1.file], tokenLifetimeSeconds: 301 },
        'ERR_CONFIG_RANGE at /retry/tokenLifetimeSeconds',
      ],
      [{ mode: 'always', keyFiles: [k1.file], versions: [1, 2] }, 'ERR_CONFIG_ENUM at /retry/versions/1'],
      [{ mode: 'always', keyFiles: [k1.file], versions: [] }, 'ERR_CONFIG_REQUIRED at /retry/versions'],
      [
        { mode: 'load', keyFiles: [k1.file], load: { onPerSecond: 10, offPerSecond: 10 } },
        'ERR_CONFIG_VALUE at /retry/load/offPerSecond',
      ],
      [{ mode: 'load', keyFiles: [k1.file], load: { onPerSecond: 0 } }, 'ERR_CONFIG_RANGE at /retry/load/onPerSecond'],
      [
        { mode: 'load', keyFiles: [k1.file], load: { offAfter: 1 } },
        'ERR_CONFIG_UNKNOWN_FIELD at /retry/load/offAfter',
      ],
    ];
    for (const [retry, expected] of cases) {
      const file = path.join(dir, 'check.yaml');
      writeYaml(file, base(retry));
      const r = runCli(['check-config', file]);
      expect(r.status, expected).toBe(1);
      expect(r.stderr, expected).toContain(expected);
    }
    writeYaml(path.join(dir, 'ok.yaml'), base({ mode: 'load', keyFiles: [k1.file], versions: ['v2', 1] }));
    expect(runCli(['check-config', path.join(dir, 'ok.yaml')]).status).toBe(0);
  });
});
