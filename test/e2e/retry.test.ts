// Retry offload end to end (issue 14): `quic-lb serve` with a `retry` section in front of
// `quic-lb demo backend` processes holding the same key files, and real clients. In mode
// `always` gtlsclient and headless Chromium complete their handshakes through the LB's Retry
// (the Retry in the client's log, the server's original_destination_connection_id and
// retry_source_connection_id accepted by the client, the LB's counters, the backend's accepted
// event naming the RSCID the LB minted for it); tokens tampered with, replayed from another address
// or port, or expired are refused at the LB or at the backend and nothing answers; in mode `load`
// the offload turns on under a burst of token-less Initials; in mode `off` nothing changes; and a
// key rotation across a SIGHUP of the LB and the backends (new key first, old second) keeps
// downloads working before and after, the backends logging which key opened each token.
// Chromium goes through the Retry in modes always and load and after the rotation.
// Addresses 127.0.7.20-49, ports 27200-27299 (no other test uses them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFromSpec, decodeServerId } from '../../src/cid/index.js';
import { certificatesPem, generateSelfSigned, privateKeyPem, spkiPin } from '../../src/demo/index.js';
import { formatRetryTokenKey, generateRetryTokenKey, parseRetry, RETRY_OK, RetryPacket } from '../../src/wire/index.js';
import { captureInitial } from '../hostile/payloads.js';
import { initialWithToken } from '../helpers/retry-initial.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { startChromium } from './chromium.js';
import {
  downloadedSha256,
  expectedSha256,
  explainDownload,
  retryStory,
  runClient,
  type ClientRun,
} from './gtlsclient.js';
import { readEvents, scrape, startStack, total, type Event, type Stack, type StackSpec } from './stack.js';

const KEY = '3b1f8e0c6a2d4f5e7a9b0c1d2e3f4a5b';
const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-e2e-retry-'));
const identity = generateSelfSigned();
const certFile = path.join(dir, 'cert.pem');
const keyFile = path.join(dir, 'key.pem');
writeFileSync(certFile, certificatesPem(identity));
writeFileSync(keyFile, privateKeyPem(identity), { mode: 0o600 });
const stacks: Stack[] = [];
let captured: Buffer;

beforeAll(async () => {
  captured = await captureInitial();
});
afterAll(async () => {
  for (const s of stacks) {
    await s.stop();
    rmSync(s.dir, { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A Retry token key file of `sequence` in the test's temp dir (mode 0600). */
function retryKeyFile(name: string, sequence: number): string {
  const f = path.join(dir, name);
  writeFileSync(f, formatRetryTokenKey(generateRetryTokenKey(sequence)), { mode: 0o600 });
  return f;
}

/** Stack `n` (0..7): VIP 127.0.7.(20+4n):(27200+10n), backends b1/b2 on the next two addresses, a `retry` section. */
function stackSpec(n: number, retryYaml: string): StackSpec {
  const a = (i: number): string => `127.0.7.${20 + 4 * n + i}`;
  const port = 27200 + 10 * n;
  return {
    vip: { address: a(0), port },
    metricsPort: port + 2,
    quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: KEY }],
    backends: [
      { name: 'b1', address: a(1), port: port + 3, serverIds: { 0: '0c01' } },
      { name: 'b2', address: a(2), port: port + 3, serverIds: { 0: '0c02' } },
    ],
    extraYaml: [retryYaml],
  };
}

/** Starts a stack whose backends share one TLS identity (one SPKI pin for Chromium). */
async function start(spec: StackSpec, backendArgs: string[] = []): Promise<Stack> {
  const s = await startStack(spec, () => ['--cert', certFile, '--key', keyFile, ...backendArgs]);
  stacks.push(s);
  return s;
}

/** Every backend's events, with the backend's name. */
function allEvents(s: Stack): Array<Event & { backend: string }> {
  return s.spec.backends.flatMap((b) => readEvents(s.eventLog(b.name)).map((e) => ({ ...e, backend: b.name })));
}

/** The backends' connection-accepted events, oldest first. */
const accepted = (s: Stack): Array<Event & { backend: string }> =>
  allEvents(s)
    .filter((e) => e.event === 'connection-accepted')
    .sort((x, y) => String(x.ts).localeCompare(String(y.ts)));

/** The backend whose server ID the stack's QUIC-LB config decodes from `cidHex`. */
function ownerOf(s: Stack, cidHex: string): string | undefined {
  const sid = decodeServerId(configFromSpec(s.spec.quicLb[0]), Buffer.from(cidHex, 'hex'));
  const hex = sid ? Buffer.from(sid).toString('hex') : '';
  return s.spec.backends.find((b) => b.serverIds[0] === hex)?.name;
}

/** A gtlsclient download of /bytes/`size` through the stack's VIP, checked intact. */
async function download(s: Stack, size = 100_000): Promise<ClientRun> {
  const run = await runClient({ host: s.spec.vip.address, port: s.spec.vip.port, paths: [`/bytes/${size}`] });
  expect(downloadedSha256(run, String(size)), explainDownload(run, String(size), size)).toBe(expectedSha256(size));
  return run;
}

const metric = async (s: Stack, name: string, filter = ''): Promise<number> =>
  total(await scrape(s.spec), name, filter);
const tokens = (s: Stack, result: string): Promise<number> =>
  metric(s, 'quic_lb_retry_tokens_total', `result="${result}"`);

/** A UDP socket on `address` that records what it receives. */
async function udp(address: string): Promise<{ sock: dgram.Socket; port: number; got: Buffer[] }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, address, () => r()));
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  return { sock, port: sock.address().port, got };
}

/**
 * Headless Chromium loads the page of stack `s` through the LB's Retry: its net-log shows the
 * Retry (see below) and the server's transport parameters with an RSCID and the token's ODCID,
 * which the backend that owns the RSCID accepted. Returns that backend's accepted event.
 */
async function chromiumThroughRetry(s: Stack): Promise<Event> {
  const sentBefore = await metric(s, 'quic_lb_retry_sent_total');
  const origin = `${s.spec.vip.address}:${s.spec.vip.port}`;
  const browser = await startChromium({ quicOrigin: origin, spkiPin: spkiPin(identity) });
  let log;
  try {
    const res = await browser.page.goto(`https://${origin}/`, { timeout: 20_000 });
    expect(res?.status()).toBe(200);
    expect((await browser.page.textContent('body')) ?? '').toMatch(/quic-lb demo backend (b[12])/);
  } finally {
    log = await browser.close();
  }
  const tp = log
    .named('QUIC_SESSION_TRANSPORT_PARAMETERS_RECEIVED')
    .map((e) => String(e.params?.quic_transport_parameters));
  expect(tp).toHaveLength(1);
  const rscid = / retry_source_connection_id ([0-9a-f]+)/.exec(tp[0])?.[1];
  const odcid = / original_destination_connection_id ([0-9a-f]+)/.exec(tp[0])?.[1];
  expect(rscid, tp[0]).toBeDefined();
  expect(odcid).not.toBe(rscid);
  // The backend accepted Chromium's connection under that RSCID, with the ODCID from the token.
  const acc = accepted(s).filter((e) => e.rscid === rscid);
  expect(acc.map((e) => [e.odcid, e.backend])).toEqual([[odcid, ownerOf(s, rscid!)]]);
  // Chromium's first flight is one or two datagrams: a Retry for each, the first one followed.
  expect((await metric(s, 'quic_lb_retry_sent_total')) - sentBefore).toBeGreaterThanOrEqual(1);
  expect(log.named('QUIC_SESSION_CRYPTO_HANDSHAKE_COMPLETE').length).toBe(1);
  // This Chromium names no Retry event: its first datagram from the VIP is the Retry, small
  // (no 1200-octet padding like the server's Initials) and without a packet header logged for
  // it (a Retry has no packet number); the next datagram's header is the server's Initial.
  const types = log.eventTypes;
  const seq = log.events.filter(
    (e) =>
      e.type === types.QUIC_SESSION_PACKET_RECEIVED ||
      e.type === types.QUIC_SESSION_UNAUTHENTICATED_PACKET_HEADER_RECEIVED,
  );
  expect(seq[0].type).toBe(types.QUIC_SESSION_PACKET_RECEIVED);
  expect(seq[0].params?.peer_address).toBe(origin);
  expect(Number(seq[0].params?.size)).toBeLessThan(200);
  expect(seq[1].type).toBe(types.QUIC_SESSION_PACKET_RECEIVED);
  const firstHeader = seq.find((e) => e.type === types.QUIC_SESSION_UNAUTHENTICATED_PACKET_HEADER_RECEIVED);
  expect([firstHeader?.params?.long_header_type, firstHeader?.params?.source_connection_id]).toEqual([
    'INITIAL',
    acc[0].scid,
  ]);
  return acc[0];
}

describe('Retry offload, mode always', () => {
  let s: Stack;
  beforeAll(async () => {
    const k = retryKeyFile('always.key', 1);
    s = await start(stackSpec(0, `retry: { mode: always, keyFiles: ['${k}'], tokenLifetimeSeconds: 1 }`));
  });

  it('gtlsclient downloads through the LB Retry; the backend the Retry SCID names serves it with ODCID and RSCID', async () => {
    const run = await download(s);
    const story = retryStory(run.output);
    expect(story.retries, run.output.slice(0, 3000)).toHaveLength(1);
    const rscid = story.retries[0];
    // ngtcp2 aborts unless both match what it sent and the Retry it followed (RFC 9000 §7.3).
    expect([story.odcid, story.rscid]).toEqual([story.firstDcid, rscid]);
    const acc = accepted(s);
    expect(acc).toHaveLength(1);
    expect([acc[0].odcid, acc[0].rscid, acc[0].retryKeySequence]).toEqual([story.firstDcid, rscid, 1]);
    // The LB minted the Retry SCID for the backend it chose, so the token-bearing Initial went there by CID.
    expect(ownerOf(s, rscid)).toBe(acc[0].backend);
    expect(acc[0].via).toBe(`lb:${s.spec.vip.address}:${s.spec.vip.port}`);
    expect(await metric(s, 'quic_lb_retry_sent_total')).toBe(1);
    expect(await tokens(s, 'valid')).toBeGreaterThanOrEqual(1);
    expect(await metric(s, 'quic_lb_retry_active', `vip="${s.spec.vip.address}:${s.spec.vip.port}"`)).toBe(1);
  });

  it('Chromium loads the page through the Retry (net-log: the server RSCID, the backend event)', async () => {
    await chromiumThroughRetry(s);
  });

  it('tampered, other-address, other-port, expired and missing tokens are refused (LB or backend), no answer', async () => {
    const a = await udp('127.0.7.40');
    const b = await udp('127.0.7.41');
    try {
      // A real Retry from the LB to socket a.
      const odcid = randomBytes(8);
      a.sock.send(initialWithToken(captured, odcid, Buffer.alloc(0)), s.spec.vip.port, s.spec.vip.address);
      await waitFor('the Retry', () => a.got.length > 0, 5000);
      const r = new RetryPacket();
      expect(parseRetry(a.got[0], odcid, r)).toBe(RETRY_OK);
      const token = Buffer.from(a.got[0].subarray(r.tokenOffset, r.tokenOffset + r.tokenLength));
      const rscid = Buffer.from(a.got[0].subarray(r.scidOffset, r.scidOffset + r.scidLength));
      a.got.length = 0;
      const before = {
        port: await tokens(s, 'port'),
        expired: await tokens(s, 'expired'),
        unverified: await tokens(s, 'unverified'),
        accepted: accepted(s).length,
      };
      const vip = (sock: dgram.Socket, d: Buffer): void => sock.send(d, s.spec.vip.port, s.spec.vip.address);
      const tampered = Buffer.from(token);
      tampered[20] ^= 0x40;
      vip(a.sock, initialWithToken(captured, rscid, tampered)); // ICV fails: the backend refuses it
      vip(b.sock, initialWithToken(captured, rscid, token)); // another address: ICV fails (IP in the AD)
      const c = await udp('127.0.7.40'); // the same address, another port: the LB refuses it
      vip(c.sock, initialWithToken(captured, rscid, token));
      // The learnt Retry SCID without a token (a spoofed flood aimed at one backend): the LB
      // forwards a routed DCID, the backend drops an Initial for its own CID without a token.
      vip(b.sock, initialWithToken(captured, rscid, Buffer.alloc(0)));
      const owner = ownerOf(s, rscid.toString('hex'))!;
      const refusedAtBackend = (): Event[] =>
        readEvents(s.eventLog(owner)).filter((e) => e.event === 'error' && e.code === 'retry-token');
      await waitFor('the backend refused three Initials', () => refusedAtBackend().length >= 3, 5000);
      expect(
        refusedAtBackend()
          .map((e) => `${String(e.reason)} ${String(e.client)}`)
          .sort(),
      ).toEqual([`invalid 127.0.7.40:${a.port}`, `invalid 127.0.7.41:${b.port}`, `missing 127.0.7.41:${b.port}`]);
      // The ICV failed under the routed DCID: the LB forwarded them unopened to the backend that checks.
      expect((await tokens(s, 'unverified')) - before.unverified).toBe(2);
      await waitFor('the LB refused the other port', async () => (await tokens(s, 'port')) - before.port === 1, 5000);
      // The genuine token, once expired (lifetime 1 s + the 2 s allowance), from the right address and port.
      await sleep(4200);
      vip(a.sock, initialWithToken(captured, rscid, token));
      await waitFor('expired', async () => (await tokens(s, 'expired')) - before.expired === 1, 5000);
      await sleep(300);
      expect([a.got.length, b.got.length, c.got.length]).toEqual([0, 0, 0]);
      expect(accepted(s).length).toBe(before.accepted);
      c.sock.close();
    } finally {
      a.sock.close();
      b.sock.close();
    }
  });
});

describe('Retry offload, mode load', () => {
  it('forwards as usual until token-less Initials pass the threshold, then gtlsclient and Chromium go through a Retry', async () => {
    const k = retryKeyFile('load.key', 7);
    const s = await start(
      stackSpec(
        1,
        `retry: { mode: load, keyFiles: ['${k}'], load: { onPerSecond: 3, offPerSecond: 1, offAfterMs: 60000 } }`,
      ),
    );
    const vipLabel = `vip="${s.spec.vip.address}:${s.spec.vip.port}"`;
    expect(await metric(s, 'quic_lb_retry_active', vipLabel)).toBe(0);
    const quiet = await download(s);
    expect(retryStory(quiet.output).retries).toEqual([]);
    expect(accepted(s).map((e) => e.rscid)).toEqual([null]);
    // A burst of token-less Initials (real ClientHellos, fresh DCIDs) passes 3 per second.
    const burst = await udp('127.0.7.42');
    try {
      for (let i = 0; i < 8; i++)
        burst.sock.send(
          initialWithToken(captured, randomBytes(8), Buffer.alloc(0)),
          s.spec.vip.port,
          s.spec.vip.address,
        );
      await waitFor('the offload on', async () => (await metric(s, 'quic_lb_retry_active', vipLabel)) === 1, 5000);
    } finally {
      burst.sock.close();
    }
    expect(await metric(s, 'quic_lb_retry_mode_changes_total')).toBe(1);
    const health = await (await fetch(`http://${s.spec.vip.address}:${s.spec.metricsPort}/healthz`)).text();
    expect(health).toMatch(/retry: \{"mode":"load","active":true,"since":"[^"]+"\}/);
    const sentBefore = await metric(s, 'quic_lb_retry_sent_total');
    const run = await download(s);
    const story = retryStory(run.output);
    expect(story.retries).toHaveLength(1);
    expect(story.rscid).toBe(story.retries[0]);
    expect(accepted(s).some((e) => e.rscid === story.rscid && e.odcid === story.firstDcid)).toBe(true);
    expect((await metric(s, 'quic_lb_retry_sent_total')) - sentBefore).toBe(1);
    // Chromium too, while the load-triggered offload is on.
    expect(await metric(s, 'quic_lb_retry_active', vipLabel)).toBe(1);
    await chromiumThroughRetry(s);
  });
});

describe('Retry offload, mode off', () => {
  it('no Retry: the backends (holding the keys) accept the client Initial as before', async () => {
    const k = retryKeyFile('off.key', 2);
    const s = await start(stackSpec(2, `retry: { mode: off, keyFiles: ['${k}'] }`));
    // The backends took the key files from the config.
    expect(
      allEvents(s)
        .filter((e) => e.event === 'backend-started')
        .map((e) => e.retryKeys),
    ).toEqual([1, 1]);
    const run = await download(s);
    const story = retryStory(run.output);
    expect(story.retries).toEqual([]);
    expect(story.rscid).toBeUndefined();
    expect(accepted(s).map((e) => [e.odcid, e.rscid])).toEqual([[story.firstDcid, null]]);
    expect(await metric(s, 'quic_lb_retry_sent_total')).toBe(0);
  });
});

describe('Retry token key rotation across SIGHUP', () => {
  it('new key first, old second on the LB and the backends: downloads before and after, gtlsclient and Chromium on the new sequence', async () => {
    const k1 = retryKeyFile('rot-1.key', 1);
    const k2 = retryKeyFile('rot-2.key', 2);
    const s = await start(stackSpec(3, `retry: { mode: always, keyFiles: ['${k1}'] }`));
    const before = retryStory((await download(s)).output);
    expect(accepted(s).map((e) => [e.rscid, e.retryKeySequence])).toEqual([[before.retries[0], 1]]);

    // The backends first (they must open sequence 2 before any LB seals with it), then the LB.
    writeFileSync(s.configFile, readFileSync(s.configFile, 'utf8').replace(`['${k1}']`, `['${k2}', '${k1}']`));
    for (const p of s.backends.values()) process.kill(p.pid, 'SIGHUP');
    await waitFor(
      'the backends reloaded two keys',
      () => [...s.backends.values()].every((p) => p.output().includes('2 Retry token keys')),
      10_000,
    );
    process.kill(s.lb.pid, 'SIGHUP');
    await waitFor(
      'the LB reloaded',
      async () => (await metric(s, 'quic_lb_config_reloads_total', 'outcome="success"')) === 1,
      10_000,
    );
    const after = retryStory((await download(s)).output);
    const acc = accepted(s);
    expect(acc.map((e) => [e.rscid, e.retryKeySequence])).toEqual([
      [before.retries[0], 1],
      [after.retries[0], 2],
    ]);
    expect(await metric(s, 'quic_lb_retry_sent_total')).toBe(2);
    // Chromium after the rotation: its token is of the new sequence too.
    expect((await chromiumThroughRetry(s)).retryKeySequence).toBe(2);
    expect(await tokens(s, 'key_sequence')).toBe(0);
  });
});
