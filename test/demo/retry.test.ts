// The demo server behind an LB doing Retry offload (draft-ietf-quic-retry-offload-00 §4): a real
// client Initial (captured from gtlsclient) re-sealed with an LB token under the Retry's SCID
// opens a connection whose handshake CIDs come from the token; forged, expired and misdirected
// tokens draw nothing and are counted; gtlsclient itself completes a download through a Retry
// (a one-client relay sends it) and accepts the server's original_destination_connection_id and
// retry_source_connection_id (RFC 9000 §7.3: it aborts on a mismatch); startDemoBackend takes
// the keys from the config's retry.keyFiles or retryKeyFiles and swaps them on applyConfig.
// Addresses 127.0.7.1-9, ports 27100-27199 (no other test uses them).
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackendSocket, createBackendCids, RetryTokenValidator } from '../../src/backend/index.js';
import {
  createConfig,
  decodeServerId,
  encodeConnectionId,
  QuicLbEncoder,
  type QuicLbConfig,
} from '../../src/cid/index.js';
import {
  DemoServer,
  quickStartConfig,
  startDemoBackend,
  type DemoBackendConfig,
  type RunningBackend,
} from '../../src/demo/index.js';
import { parseConfig } from '../../src/lb/index.js';

import { initialKeys } from '../../src/demo/crypto.js';
import { openPacket } from '../../src/demo/packet.js';
import {
  formatRetryTokenKey,
  generateRetryTokenKey,
  readVarint,
  RetryTokenKeys,
  varintSizeAt,
  sealRetryToken,
  type RetryTokenFields,
} from '../../src/wire/index.js';
import { captureInitial, parseInitial } from '../hostile/payloads.js';
import { downloadedSha256, expectedSha256, explainDownload, has, runClient } from '../e2e/gtlsclient.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { initialWithToken } from '../helpers/retry-initial.js';
import { ipv4, startRetryRelay, type RetryRelay } from './retry-initial.js';

const SERVER = { address: '127.0.7.1', port: 27100 };
const CLIENT = '127.0.7.2';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

let captured: Buffer;
beforeAll(async () => {
  captured = await captureInitial();
});

interface Running {
  server: DemoServer;
  config: QuicLbConfig;
  validator: RetryTokenValidator;
  events: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

let running: Running | undefined;
const sockets: dgram.Socket[] = [];
let relay: RetryRelay | undefined;
afterEach(async () => {
  relay?.close();
  relay = undefined;
  for (const s of sockets.splice(0)) s.close();
  await running?.close();
  running = undefined;
});

/** A demo server on SERVER (no LB: it sees the datagram's source) that opens tokens under `keys`. */
async function startServer(keys: RetryTokenKeys): Promise<Running> {
  const config = createConfig({ configId: 1, serverIdLength: 2, nonceLength: 6, key: randomBytes(16) });
  const encoder = new QuicLbEncoder({ configs: [{ config, serverId: Uint8Array.of(7, 1) }] });
  const cids = createBackendCids(encoder, randomBytes(32));
  const socket = new BackendSocket({ listen: SERVER, insecureAnyLb: true });
  await socket.bind();
  const validator = new RetryTokenValidator({ keys });
  const ownsCid = (cid: Uint8Array): boolean => hex(decodeServerId(config, cid) ?? new Uint8Array()) === '0701';
  const server = new DemoServer({ socket, cids, retryTokens: validator, ownsCid, name: 'retry' });
  const events: Array<Record<string, unknown>> = [];
  server.on('event', (e: Record<string, unknown>) => events.push(e));
  return {
    server,
    config,
    validator,
    events,
    async close() {
      server.close();
      await socket.close();
    },
  };
}

/** A client socket on CLIENT that records what it receives. */
async function clientSocket(): Promise<{ sock: dgram.Socket; port: number; got: Buffer[] }> {
  const sock = dgram.createSocket('udp4');
  sockets.push(sock);
  await new Promise<void>((r) => sock.bind(0, CLIENT, () => r()));
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  return { sock, port: sock.address().port, got };
}

/** Token fields for a client at CLIENT:port, valid for 10 s; `over` changes any of them. */
function fields(port: number, over: Partial<RetryTokenFields> = {}): RetryTokenFields {
  return {
    clientIp: ipv4(CLIENT),
    clientPort: port,
    odcid: randomBytes(8),
    rscid: randomBytes(10),
    expiresAt: nowSeconds() + 10,
    ...over,
  };
}

/** The data of the first CRYPTO frame of an Initial payload (ACK, PADDING and PING frames skipped; RFC 9000 §19). */
function cryptoData(p: Buffer): Buffer {
  let o = 0;
  const skipVarint = (): void => {
    o += varintSizeAt(p, o);
  };
  while (o < p.length) {
    const type = p[o++];
    if (type === 0x00 || type === 0x01) continue; // PADDING, PING
    if (type === 0x02) {
      skipVarint(); // largest acknowledged
      skipVarint(); // ACK delay
      const ranges = readVarint(p, o);
      skipVarint();
      skipVarint(); // first range
      for (let i = 0; i < ranges; i++) {
        skipVarint();
        skipVarint();
      }
      continue;
    }
    if (type !== 0x06) break;
    skipVarint(); // offset
    const length = readVarint(p, o);
    skipVarint();
    return p.subarray(o, o + length);
  }
  throw new Error('no CRYPTO frame');
}

const send = (sock: dgram.Socket, d: Buffer): void => sock.send(d, SERVER.port, SERVER.address);

describe('demo server: LB Retry tokens on new connections', () => {
  it('a valid token: the connection opens under the Retry SCID with the token ODCID (Initial keys from that DCID)', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(3)]);
    running = await startServer(keys);
    const c = await clientSocket();
    const f = fields(c.port);
    send(c.sock, initialWithToken(captured, f.rscid, sealRetryToken(keys, f)));
    await waitFor('the server answers', () => c.got.length > 0, 5000);

    // Its Initial goes to the client's SCID, protected with the server Initial keys of the Retry SCID.
    const reply = c.got[0];
    const r = parseInitial(reply);
    expect(hex(r.dcid)).toBe(hex(parseInitial(captured).scid));
    const opened = openPacket(initialKeys(f.rscid).tx, reply.subarray(0, r.end), r.pnOffset, -1);
    expect(opened).toBeDefined();
    // Its CRYPTO data starts with a ServerHello (TLS handshake type 2, RFC 8446 §4).
    expect(cryptoData(opened!.payload)[0]).toBe(2);

    const accepted = running.events.filter((e) => e.event === 'connection-accepted');
    expect(accepted).toHaveLength(1);
    expect([accepted[0].odcid, accepted[0].rscid, accepted[0].retryKeySequence]).toEqual([
      hex(f.odcid),
      hex(f.rscid),
      3,
    ]);
    expect(running.validator.stats.valid).toBe(1);
    expect(running.server.stats.retryTokensRefused).toBe(0);
  });

  it('forged, tampered, expired, other-port and unknown-key tokens: no answer, no state, each counted', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(3)]);
    running = await startServer(keys);
    const c = await clientSocket();
    const other = await clientSocket();
    const cases: Array<[string, Buffer]> = [];
    {
      const f = fields(c.port);
      const t = sealRetryToken(keys, f);
      t[t.length - 20] ^= 0x01; // a bit of the encrypted body
      cases.push(['invalid', initialWithToken(captured, f.rscid, t)]);
    }
    {
      const f = fields(c.port, { expiresAt: nowSeconds() - 60 });
      cases.push(['expired', initialWithToken(captured, f.rscid, sealRetryToken(keys, f))]);
    }
    {
      const f = fields(other.port); // sealed for another port of the same address
      cases.push(['port', initialWithToken(captured, f.rscid, sealRetryToken(keys, f))]);
    }
    {
      const f = fields(c.port);
      const foreign = new RetryTokenKeys([generateRetryTokenKey(9)]);
      cases.push(['key_sequence', initialWithToken(captured, f.rscid, sealRetryToken(foreign, f))]);
    }
    {
      const f = fields(c.port);
      // A valid token under another DCID than the Retry SCID it was sealed for.
      cases.push(['invalid', initialWithToken(captured, randomBytes(10), sealRetryToken(keys, f))]);
    }
    for (const [, d] of cases) send(c.sock, d);
    await waitFor('every datagram processed', () => running!.server.stats.datagramsReceived === cases.length, 5000);
    await sleep(300);
    expect(c.got).toHaveLength(0);
    expect(running.server.stats.connectionsAccepted).toBe(0);
    expect(running.server.connectionCount).toBe(0);
    expect(running.server.stats.retryTokensRefused).toBe(cases.length);
    expect(running.server.stats.datagramsDropped).toBe(cases.length);
    const { valid, invalid, expired, port, key_sequence: keySequence } = running.validator.stats;
    expect({ valid, invalid, expired, port, keySequence }).toEqual({
      valid: 0,
      invalid: 2,
      expired: 1,
      port: 1,
      keySequence: 1,
    });
    const errors = running.events.filter((e) => e.event === 'error' && e.code === 'retry-token');
    expect(errors.map((e) => e.reason).sort()).toEqual(cases.map(([reason]) => reason).sort());
  });

  it('no token, or a NEW_TOKEN token (first bit 1): a connection as without an LB (ODCID = DCID, no RSCID)', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(3)]);
    running = await startServer(keys);
    const c = await clientSocket();
    const dcid1 = randomBytes(8);
    const dcid2 = randomBytes(8);
    const newToken = randomBytes(40);
    newToken[0] |= 0x80;
    send(c.sock, initialWithToken(captured, dcid1, Buffer.alloc(0)));
    send(c.sock, initialWithToken(captured, dcid2, newToken));
    await waitFor('two connections', () => running!.server.stats.connectionsAccepted === 2, 5000);
    const accepted = running.events.filter((e) => e.event === 'connection-accepted');
    expect(accepted.map((e) => [e.odcid, e.rscid])).toEqual([
      [hex(dcid1), null],
      [hex(dcid2), null],
    ]);
    expect(running.validator.stats.new_token).toBe(1);
    expect(running.server.stats.retryTokensRefused).toBe(0);
  });

  it('no Retry token on a DCID of its own (a learnt Retry SCID or CID replayed): dropped as `missing`', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(3)]);
    running = await startServer(keys);
    const c = await clientSocket();
    const own = (): Uint8Array => encodeConnectionId(running!.config, Uint8Array.of(7, 1), randomBytes(6));
    const newToken = randomBytes(40);
    newToken[0] |= 0x80;
    send(c.sock, initialWithToken(captured, own(), Buffer.alloc(0)));
    send(c.sock, initialWithToken(captured, own(), newToken));
    // Another server's CID under the same config is just a DCID: accepted.
    const foreign = encodeConnectionId(running.config, Uint8Array.of(7, 2), randomBytes(6));
    send(c.sock, initialWithToken(captured, foreign, Buffer.alloc(0)));
    await waitFor('three datagrams processed', () => running!.server.stats.datagramsReceived === 3, 5000);
    await waitFor('one connection', () => running!.server.stats.connectionsAccepted === 1, 5000);
    expect(running.server.stats.retryTokensRefused).toBe(2);
    const errors = running.events.filter((e) => e.event === 'error' && e.code === 'retry-token');
    expect(errors.map((e) => e.reason)).toEqual(['missing', 'missing']);
    expect(running.events.find((e) => e.event === 'connection-accepted')?.odcid).toBe(hex(foreign));
  });

  it('refusal events are capped at 10 a second; every refusal is counted', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(3)]);
    running = await startServer(keys);
    const c = await clientSocket();
    const f = fields(c.port, { expiresAt: nowSeconds() - 60 });
    const d = initialWithToken(captured, f.rscid, sealRetryToken(keys, f));
    for (let i = 0; i < 50; i++) send(c.sock, d);
    await waitFor('50 datagrams processed', () => running!.server.stats.datagramsReceived === 50, 5000);
    expect(running.server.stats.retryTokensRefused).toBe(50);
    expect(running.validator.stats.expired).toBe(50);
    expect(running.events.filter((e) => e.event === 'error').length).toBeLessThanOrEqual(20);
    expect(c.got).toHaveLength(0);
  });

  it('gtlsclient downloads through a Retry and accepts the server transport parameters (ODCID, RSCID)', async () => {
    const keys = new RetryTokenKeys([generateRetryTokenKey(5)]);
    running = await startServer(keys);
    relay = await startRetryRelay({
      listen: { address: '127.0.7.3', port: 27103 },
      upstream: { address: '127.0.7.4', port: 27104 },
      server: SERVER,
      keys,
    });
    const run = await runClient({ host: '127.0.7.3', port: 27103, paths: ['/bytes/100000'] });
    const out = run.output;
    expect(downloadedSha256(run, '100000'), explainDownload(run, '100000', 100000)).toBe(expectedSha256(100000));
    expect(relay.stats.retries).toBe(1);
    const [{ rscid, odcid }] = relay.issued;
    // ngtcp2 checks both against what it sent and the Retry it followed (RFC 9000 §7.3), and logs them.
    expect(has(out, `transport_parameters original_destination_connection_id=0x${odcid}`), out).toBe(true);
    expect(has(out, `transport_parameters retry_source_connection_id=0x${rscid}`), out).toBe(true);
    const accepted = running.events.filter((e) => e.event === 'connection-accepted');
    expect(accepted.map((e) => [e.odcid, e.rscid, e.client])).toEqual([[odcid, rscid, '127.0.7.4:27104']]);
    expect(running.validator.stats.valid).toBe(1);
  });
});

describe('startDemoBackend: Retry token keys from the config or --retry-key-file, reloaded by applyConfig', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-demo-retry-'));
  let backend: RunningBackend | undefined;
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = (name: string, sequence: number): string => {
    const f = path.join(dir, name);
    writeFileSync(f, formatRetryTokenKey(generateRetryTokenKey(sequence)), { mode: 0o600 });
    return f;
  };
  // One backend (backend-1) on 127.0.7.5:27105; no LB in front (insecureAnyLb).
  const base = parseConfig(quickStartConfig('127.0.7.6:27106', ['127.0.7.5:27105'], '127.0.7.6:27107'));
  const withRetry = (keyFiles: string[] | undefined): DemoBackendConfig =>
    keyFiles ? { ...base, retry: { keyFiles } } : { ...base, retry: undefined };
  const sequences = (b: RunningBackend): number[] =>
    [...Array(128).keys()].filter((q) => b.retryTokens?.keys.has(q) ?? false);

  it('takes retry.keyFiles of the config, swaps them on applyConfig, and stops validating without them', async () => {
    const k1 = keyFile('k1.key', 1);
    const k2 = keyFile('k2.key', 2);
    backend = await startDemoBackend(withRetry([k1]), { name: 'backend-1', insecureAnyLb: true });
    const validator = backend.retryTokens;
    expect(sequences(backend)).toEqual([1]);
    expect(backend.applyConfig(withRetry([k2, k1])).retryKeys).toBe(2);
    expect(backend.retryTokens).toBe(validator); // same counters, new keys
    expect(sequences(backend)).toEqual([1, 2]);
    // A key file that does not load: refused, the running keys stay.
    const missing = path.join(dir, 'missing.key');
    expect(() => backend!.applyConfig(withRetry([missing]))).toThrow(
      expect.objectContaining({ code: 'ERR_BACKEND_RETRY_KEY', field: 'retryKeyFiles[0]' }),
    );
    expect(sequences(backend)).toEqual([1, 2]);
    // No retry section any more: tokens are ignored, so a forged one opens a connection again.
    expect(backend.applyConfig(withRetry(undefined)).retryKeys).toBe(0);
    expect(backend.retryTokens).toBeUndefined();
    const c = await clientSocket();
    const forged = randomBytes(60);
    forged[0] = 0x01; // type 0, sequence 1
    c.sock.send(initialWithToken(captured, randomBytes(8), forged), 27105, '127.0.7.5');
    await waitFor('a connection', () => backend!.server.stats.connectionsAccepted === 1, 5000);
    expect(backend.server.stats.retryTokensRefused).toBe(0);
  });

  it('retryKeyFiles (--retry-key-file) win over the config and are re-read on applyConfig (contents rotated)', async () => {
    const current = keyFile('current.key', 4);
    const previous = keyFile('previous.key', 3);
    const other = keyFile('other.key', 9);
    backend = await startDemoBackend(withRetry([other]), {
      name: 'backend-1',
      insecureAnyLb: true,
      retryKeyFiles: [current, previous],
    });
    expect(sequences(backend)).toEqual([3, 4]);
    writeFileSync(previous, readFileSync(current));
    writeFileSync(current, formatRetryTokenKey(generateRetryTokenKey(5)));
    expect(backend.applyConfig(withRetry([other])).retryKeys).toBe(2);
    expect(sequences(backend)).toEqual([4, 5]);
  });
});
