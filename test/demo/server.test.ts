// The demo QUIC server against the real ngtcp2 gtlsclient, directly (no load balancer):
// handshake, HTTP/3 download, preferred_address migration, client migration, NAT rebinding,
// loss, config rotation, stateless reset. Addresses 127.0.2.20-29, ports 25100-25199.
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createConfig, decodeServerId } from '../../src/cid/index.js';
import {
  downloadedSha256,
  expectedSha256,
  explainDownload,
  has,
  runClient,
  serverCidsSeen,
} from '../e2e/gtlsclient.js';
import { eventsOf, startDemoFixture, type DemoFixture } from './fixture.js';

let fixture: DemoFixture | undefined;
afterEach(async () => {
  await fixture?.close();
  fixture = undefined;
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('demo server with gtlsclient, no LB', () => {
  it('completes the handshake, moves to the preferred address and serves 200 KB intact', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'demo-ev-'));
    const eventLog = path.join(dir, 'events.jsonl');
    fixture = await startDemoFixture({
      listen: { address: '127.0.2.20', port: 25100 },
      preferred: { address: '127.0.2.21', port: 25101 },
      eventLog,
    });
    const run = await runClient({
      host: '127.0.2.20',
      port: 25100,
      paths: ['/bytes/200000'],
      extraArgs: ['--delay-stream=300ms'],
    });
    const out = run.output;
    expect(run.timedOut).toBe(false);
    expect(has(out, 'QUIC handshake has been confirmed')).toBe(true);
    expect(has(out, 'Negotiated ALPN is h3')).toBe(true);
    expect(has(out, 'selected server preferred_address is [127.0.2.21]:25101')).toBe(true);
    expect(out).toMatch(
      /Path validation against path \{local:\[[0-9.]+\]:\d+, remote:\[127\.0\.2\.21\]:25101\} succeeded/,
    );
    expect(has(out, 'http: stream 0x0 [:status: 200]')).toBe(true);
    expect(downloadedSha256(run, '200000'), explainDownload(run, '200000', 200000)).toBe(expectedSha256(200000));

    // Every CID the client saw decodes to this server's ID under the config.
    const seen = serverCidsSeen(out);
    const all = [seen.scid, seen.preferred, ...seen.newConnectionIds].filter((c): c is string => c !== undefined);
    expect(seen.scid).toBeDefined();
    expect(seen.preferred).toBeDefined();
    expect(seen.newConnectionIds.length).toBeGreaterThanOrEqual(1);
    for (const cid of all)
      expect(hex(decodeServerId(fixture.config, Buffer.from(cid, 'hex')) ?? new Uint8Array())).toBe(
        hex(fixture.serverId),
      );

    // The server saw the move and sent the body on the preferred path.
    const migrated = eventsOf(fixture, 'migrated');
    expect(migrated.length).toBe(1);
    expect(migrated[0].via).toBe('direct:127.0.2.21:25101');
    expect(migrated[0].cidSeq).toBe(1);
    expect(eventsOf(fixture, 'stream-sent')[0].via).toBe('direct:127.0.2.21:25101');
    // The JSON-lines log holds the same records.
    const logged = readFileSync(eventLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string });
    expect(logged.map((e) => e.event)).toEqual(fixture.events.map((e) => e.event));
    expect(logged.some((e) => e.event === 'connection-accepted')).toBe(true);
  });

  it('follows a client-initiated migration onto a NEW_CONNECTION_ID CID and validates the path', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.22', port: 25110 } });
    const run = await runClient({
      host: '127.0.2.22',
      port: 25110,
      paths: ['/bytes/100000'],
      extraArgs: ['--no-preferred-addr', '--change-local-addr=100ms', '--delay-stream=400ms'],
    });
    expect(has(run.output, 'Changing local address')).toBe(true);
    expect(downloadedSha256(run, '100000'), explainDownload(run, '100000', 100000)).toBe(expectedSha256(100000));
    const migrated = eventsOf(fixture, 'migrated');
    expect(migrated.length).toBeGreaterThanOrEqual(1);
    expect(migrated[0].cidSeq as number).toBeGreaterThanOrEqual(1);
    expect(eventsOf(fixture, 'path-validated').length).toBeGreaterThanOrEqual(1);
  });

  it('follows NAT rebinding (same CID, new port) and validates the new path', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.23', port: 25120 } });
    const run = await runClient({
      host: '127.0.2.23',
      port: 25120,
      paths: ['/bytes/100000'],
      extraArgs: ['--no-preferred-addr', '--change-local-addr=100ms', '--nat-rebinding', '--delay-stream=400ms'],
    });
    expect(downloadedSha256(run, '100000'), explainDownload(run, '100000', 100000)).toBe(expectedSha256(100000));
    const migrated = eventsOf(fixture, 'migrated');
    expect(migrated.length).toBeGreaterThanOrEqual(1);
    expect(migrated[0].from).not.toBe(migrated[0].to);
    expect(eventsOf(fixture, 'path-validated').length).toBeGreaterThanOrEqual(1);
  });

  it('completes a 200 KB download under 5 % simulated loss each way', async () => {
    fixture = await startDemoFixture({
      listen: { address: '127.0.2.24', port: 25130 },
      preferred: { address: '127.0.2.25', port: 25131 },
    });
    const run = await runClient({
      host: '127.0.2.24',
      port: 25130,
      paths: ['/bytes/200000'],
      extraArgs: ['-t', '0.05', '-r', '0.05'],
      timeoutMs: 30_000,
    });
    expect(run.timedOut).toBe(false);
    expect(downloadedSha256(run, '200000'), explainDownload(run, '200000', 200000)).toBe(expectedSha256(200000));
  });

  it('re-issues every CID under a new config mid-download (Retire Prior To) and the download completes', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.26', port: 25140 } });
    const f = fixture;
    const next = createConfig({ configId: 2, serverIdLength: 3, nonceLength: 5, key: randomBytes(16) });
    const nextSid = Uint8Array.of(0x0b, 0x0c, 0x0d);
    f.server.on('event', (e: { event: string }) => {
      if (e.event !== 'request') return;
      setTimeout(() => {
        f.encoder.addConfig({ config: next, serverId: nextSid }, true);
        f.server.reissueConnectionIds('test');
      }, 2);
    });
    const run = await runClient({ host: '127.0.2.26', port: 25140, paths: ['/bytes/2000000'], timeoutMs: 30_000 });
    expect(downloadedSha256(run, '2000000'), explainDownload(run, '2000000', 2000000)).toBe(expectedSha256(2000000));
    const order = f.events.map((e) => e.event);
    expect(order.indexOf('request')).toBeLessThan(order.indexOf('cids-reissued'));
    expect(order.indexOf('cids-reissued')).toBeLessThan(order.indexOf('stream-sent'));
    // The client got CIDs of the new config with Retire Prior To > 0 and retired the old ones.
    const rotated = [
      ...run.output.matchAll(
        /frm rx \d+ 1RTT NEW_CONNECTION_ID\(0x18\) seq=\d+ cid=0x([0-9a-f]+) retire_prior_to=([1-9]\d*)/g,
      ),
    ];
    expect(rotated.length).toBeGreaterThanOrEqual(1);
    for (const m of rotated)
      expect(hex(decodeServerId(next, Buffer.from(m[1], 'hex')) ?? new Uint8Array())).toBe(hex(nextSid));
    expect(run.output).toMatch(/frm tx \d+ 1RTT RETIRE_CONNECTION_ID\(0x19\) seq=0/);
    expect(eventsOf(f, 'cid-retired').length).toBeGreaterThanOrEqual(1);
  });

  it('answers a short-header packet for an unknown CID with a stateless reset carrying its token', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.27', port: 25150 } });
    const cid = fixture.cids.generate(); // a well-formed CID of this server that no connection owns
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.2.27', () => r()));
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    const pkt = Buffer.concat([Buffer.of(0x40), Buffer.from(cid), randomBytes(40)]);
    sock.send(pkt, 25150, '127.0.2.27');
    sock.send(Buffer.concat([Buffer.of(0x40), Buffer.from(cid), randomBytes(2)]), 25150, '127.0.2.27'); // too small: no reply
    await new Promise((r) => setTimeout(r, 200));
    sock.close();
    expect(replies.length).toBe(1);
    const reset = replies[0];
    expect(reset.length).toBeLessThan(pkt.length);
    expect(reset.length).toBeGreaterThanOrEqual(21);
    expect(reset[0] & 0xc0).toBe(0x40);
    expect(hex(reset.subarray(reset.length - 16))).toBe(hex(fixture.cids.resetToken(cid)));
    expect(fixture.server.stats.statelessResets).toBe(1);
  });

  it('refuses a client that offers no cipher suite it supports: CONNECTION_CLOSE with CRYPTO_ERROR handshake_failure, logged', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.28', port: 25160 } });
    const run = await runClient({
      host: '127.0.2.28',
      port: 25160,
      paths: ['/'],
      extraArgs: ['--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM'],
      timeoutMs: 15_000,
    });
    expect(has(run.output, 'QUIC handshake has completed')).toBe(false);
    expect(run.output).toMatch(/frm rx \d+ Initial CONNECTION_CLOSE\(0x1c\) error_code=\S*\(0x128\)/);
    const errors = eventsOf(fixture, 'error');
    expect(errors.length).toBe(1);
    expect(errors[0].code).toBe(0x100 + 40);
  });

  it('drops an idle connection after max_idle_timeout and logs it', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.29', port: 25170 }, idleTimeoutMs: 300 });
    const f = fixture;
    const run = runClient({
      host: '127.0.2.29',
      port: 25170,
      paths: ['/bytes/10'],
      extraArgs: ['--delay-stream=3s'],
      timeoutMs: 10_000,
    });
    const closed = new Promise<Record<string, unknown>>((resolve) =>
      f.server.on('event', (e: Record<string, unknown>) => {
        if (e.event === 'closed') resolve(e);
      }),
    );
    const e = await closed;
    expect(e.by).toBe('idle');
    expect(f.server.connectionCount).toBe(0);
    const r = await run;
    expect(has(r.output, 'QUIC handshake has been confirmed')).toBe(true);
  });

  it('serves files of a static directory, 404 for missing ones, and answers several requests on one connection', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'demo-static-'));
    const body = randomBytes(30_000);
    writeFileSync(path.join(dir, 'blob.bin'), body);
    fixture = await startDemoFixture({ listen: { address: '127.0.2.28', port: 25180 }, staticDir: dir });
    const run = await runClient({
      host: '127.0.2.28',
      port: 25180,
      paths: ['/blob.bin', '/missing.txt', '/bytes/777'],
    });
    const statuses = run.output
      .split('\n')
      .filter((l) => /^http: stream 0x[0-9a-f]+ \[:status: /.test(l) || /CONNECTION_CLOSE|closed with/.test(l));
    expect(statuses.join('\n'), JSON.stringify(fixture.events.map((e) => [e.event, e.path ?? e.reason ?? '']))).toMatch(
      /stream 0x4 \[:status: 404\]/,
    );
    expect(statuses.filter((l) => l.includes('[:status: 200]')).length).toBe(2);
    expect(readFileSync(path.join(run.downloadDir, 'blob.bin')).equals(body)).toBe(true);
    expect(downloadedSha256(run, '777'), explainDownload(run, '777', 777)).toBe(expectedSha256(777));
    expect(eventsOf(fixture, 'request').map((e) => e.path)).toEqual(['/blob.bin', '/missing.txt', '/bytes/777']);
    expect(eventsOf(fixture, 'connection-accepted').length).toBe(1);
  });

  it('works over IPv6, preferred_address included (::1)', async () => {
    fixture = await startDemoFixture({
      listen: { address: '::1', port: 25195 },
      preferred: { address: '::1', port: 25196 },
      preferredFamily: 6,
    });
    const run = await runClient({
      host: '::1',
      port: 25195,
      paths: ['/bytes/50000'],
      extraArgs: ['--delay-stream=300ms'],
    });
    expect(has(run.output, 'selected server preferred_address is [::1]:25196')).toBe(true);
    expect(downloadedSha256(run, '50000'), explainDownload(run, '50000', 50000)).toBe(expectedSha256(50000));
    expect(eventsOf(fixture, 'migrated')[0]?.via).toBe('direct:[::1]:25196');
  });

  it('raises MAX_STREAMS as requests complete: 130 requests on one connection', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.29', port: 25175 } });
    const run = await runClient({
      host: '127.0.2.29',
      port: 25175,
      paths: ['/bytes/100'],
      extraArgs: ['-n', '130'],
      timeoutMs: 30_000,
    });
    expect(run.output.split('\n').filter((l) => /^http: stream 0x[0-9a-f]+ \[:status: 200\]/.test(l)).length).toBe(130);
    expect(run.output).toMatch(/frm rx \d+ 1RTT MAX_STREAMS\(0x12\) max_streams=200/);
    expect(eventsOf(fixture, 'request').length).toBe(130);
    expect(eventsOf(fixture, 'connection-accepted').length).toBe(1);
  });

  it('follows a client-initiated key update (RFC 9001 §6) and the download stays intact', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.29', port: 25176 } });
    const run = await runClient({
      host: '127.0.2.29',
      port: 25176,
      paths: ['/bytes/300000'],
      extraArgs: ['--key-update=50ms', '--delay-stream=200ms'],
    });
    expect(downloadedSha256(run, '300000'), explainDownload(run, '300000', 300000)).toBe(expectedSha256(300000));
    const updates = eventsOf(fixture, 'key-update');
    expect(updates.length).toBeGreaterThanOrEqual(1);
    expect(updates[0].phase).toBe(1);
  });

  it('closing the server sends CONNECTION_CLOSE (H3_NO_ERROR) to established clients', async () => {
    fixture = await startDemoFixture({ listen: { address: '127.0.2.29', port: 25177 } });
    const f = fixture;
    f.server.on('event', (e: { event: string }) => {
      if (e.event === 'handshake-complete') setTimeout(() => f.server.close(), 50);
    });
    const run = await runClient({
      host: '127.0.2.29',
      port: 25177,
      paths: ['/bytes/10'],
      extraArgs: ['--delay-stream=2s'],
      timeoutMs: 10_000,
    });
    expect(run.output).toMatch(/frm rx \d+ 1RTT CONNECTION_CLOSE\(0x1d\) error_code=\S*\(0x100\)/);
    expect(f.server.connectionCount).toBe(0);
  });
});
