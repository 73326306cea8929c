// `quic-lb demo backend --anycast` as processes (build first: npm run build), on loopback:
// - one server: the real gtlsclient handshakes on the VIP, moves to preferred_address (the
//   server's own address) and downloads; with --no-preferred-addr the whole download stays on
//   the VIP path (local delivery, no network hop);
// - two servers, each on its own VIP literal of the same `listen` (one host: test/anycast/server.test.ts
//   says why): a datagram whose CID names s2, sent to s1's VIP, reaches s2 (its stateless reset
//   comes back from a VIP); SIGUSR2 withdraws (/healthz 503 naming the reason, s1 sees s2
//   draining); SIGHUP reloads; --no-forward keeps everything local;
// - one server with `retry.mode: always` (docs/retry.md): the server mode's embedded forwarder
//   answers the client's first Initial with a Retry, and the local stack opens the token.
// Addresses 127.0.12.50-79, ports 24633-24699.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createConfig, encodeConnectionId } from '../../src/cid/index.js';
import { formatRetryTokenKey, generateRetryTokenKey } from '../../src/wire/index.js';
import { runClient, downloadedSha256, expectedSha256, explainDownload, has, retryStory } from '../e2e/gtlsclient.js';
import { readEvents } from '../e2e/stack.js';
import { runCli } from '../helpers/cli.js';
import { parseMetrics } from '../helpers/metrics.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

const KEY = '00112233445566778899aabbccddeeff';
const qlb = createConfig({ configId: 0, serverIdLength: 2, nonceLength: 6, key: Buffer.from(KEY, 'hex') });
const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-anycast-cli-'));

function yaml(listen: string[], servers: [string, string, string][], extra = ''): string {
  return [
    `listen: [${listen.map((l) => `"${l}"`).join(', ')}]`,
    'quicLb:',
    `  - { configId: 0, serverIdLength: 2, nonceLength: 6, key: "${KEY}" }`,
    'backends:',
    ...servers.map(
      ([name, address, sid]) => `  - { name: ${name}, address: "${address}", serverIds: { 0: "${sid}" } }`,
    ),
    `fallback: { key: "${randomBytes(16).toString('hex')}" }`,
    'health: { type: udp, intervalMs: 100, timeoutMs: 200, rise: 1, fall: 2 }',
    'returnPath: { mode: direct }',
    'log: { level: warn }',
    extra || 'anycast: { announce: { intervalMs: 100 } }',
  ].join('\n');
}

const procs: Proc[] = [];
afterAll(async () => {
  for (const p of procs) await stop(p);
});

async function server(args: string[]): Promise<Proc> {
  const p = await startCli(['demo', 'backend', '--anycast', ...args]);
  procs.push(p);
  return p;
}

async function metrics(port: number, host: string): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`http://${host}:${port}/metrics`)).text());
}

async function healthz(port: number, host: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://${host}:${port}/healthz`);
  return { status: r.status, body: await r.text() };
}

describe('quic-lb demo backend --anycast, one server, real client', () => {
  const file = path.join(dir, 'one.yaml');
  writeFileSync(file, yaml(['127.0.12.51:24633'], [['s1', '127.0.12.61:24634', '0001']]));
  const eventLog = path.join(dir, 'one.jsonl');
  let s1: Proc;

  it('handshake on the VIP, migration to preferred_address, download completes', async () => {
    s1 = await server(['--config', file, '--name', 's1', '--metrics', '127.0.12.51:24690', '--event-log', eventLog]);
    expect(s1.ready).toMatchObject({
      anycast: true,
      addresses: [{ address: '127.0.12.61', port: 24634 }],
      vips: [{ address: '127.0.12.51', port: 24633 }],
    });
    await waitFor('announced', async () => (await healthz(24690, '127.0.12.51')).status === 200);
    const size = 300_000;
    // The request waits for the move (the client migrates once the handshake is confirmed).
    const run = await runClient({
      host: '127.0.12.51',
      port: 24633,
      paths: [`/bytes/${size}`],
      extraArgs: ['--delay-stream=300ms'],
    });
    expect(downloadedSha256(run, String(size)), explainDownload(run, String(size), size)).toBe(expectedSha256(size));
    expect(has(run.output, 'preferred_address.ipv4_addr=127.0.12.61')).toBe(true);
    expect(run.output).toMatch(/Path validation against path \{[^}]*remote:\[127\.0\.12\.61\]:24634\} succeeded/);
    const sent = (to: string): number =>
      run.output.split('\n').filter((l) => l.startsWith('Sent packet:') && l.includes(`remote=${to} `)).length;
    const toVip = sent('[127.0.12.51]:24633');
    const toUnicast = sent('[127.0.12.61]:24634');
    expect(toUnicast).toBeGreaterThan(toVip);
    // The server saw the move: the connection migrated to its own address and the body left from there.
    const events = readEvents(eventLog);
    expect(events.find((e) => e.event === 'migrated')?.via).toBe('direct:127.0.12.61:24634');
    expect(events.find((e) => e.event === 'stream-sent')?.via).toBe('direct:127.0.12.61:24634');
    const m = await metrics(24690, '127.0.12.51');
    // The client's VIP datagrams (the handshake) were all handed to the local stack, none forwarded.
    const local = m.get('quic_lb_anycast_datagrams_total{path="local"}')!;
    expect(local).toBeGreaterThanOrEqual(toVip);
    expect(local).toBeLessThan(toUnicast);
    console.log(
      `[anycast] migrating client, ${size} octets: ${toVip} datagrams sent to the VIP (${local} delivered locally, 0 forwarded), ${toUnicast} to the server's own address`,
    );
    expect(m.get('quic_lb_anycast_datagrams_total{path="peer"}')).toBe(0);
    expect(m.get('quic_lb_anycast_announced')).toBe(1);
  });

  it('--no-preferred-addr: the whole download on the VIP path, replies from the VIP', async () => {
    const before = (await metrics(24690, '127.0.12.51')).get('quic_lb_return_packets_total')!;
    const size = 200_000;
    const run = await runClient({
      host: '127.0.12.51',
      port: 24633,
      paths: [`/bytes/${size}`],
      extraArgs: ['--no-preferred-addr'],
    });
    expect(downloadedSha256(run, String(size)), explainDownload(run, String(size), size)).toBe(expectedSha256(size));
    expect(run.output).not.toContain('remote=[127.0.12.61]');
    // 200 kB of replies left from the VIP socket (return_packets_total counts them in server mode).
    const after = (await metrics(24690, '127.0.12.51')).get('quic_lb_return_packets_total')!;
    expect(after - before).toBeGreaterThan(size / 1500);
    await stop(s1);
  });
});

describe('quic-lb demo backend --anycast with the Retry offload, real client', () => {
  it('the first Initial gets a Retry from the VIP; the local stack opens the token; the download completes', async () => {
    const keyFile = path.join(dir, 'retry-3.key');
    writeFileSync(keyFile, formatRetryTokenKey(generateRetryTokenKey(3)), { mode: 0o600 });
    const file = path.join(dir, 'retry.yaml');
    writeFileSync(
      file,
      yaml(
        ['127.0.12.55:24640'],
        [['s1', '127.0.12.65:24641', '0001']],
        `anycast: { announce: { intervalMs: 100 } }\nretry: { mode: always, keyFiles: ["${keyFile}"] }`,
      ),
    );
    const eventLog = path.join(dir, 'retry.jsonl');
    // The server takes the config's retry.keyFiles for its own token checks (no --retry-key-file).
    const s = await server([
      '--config',
      file,
      '--name',
      's1',
      '--metrics',
      '127.0.12.55:24692',
      '--event-log',
      eventLog,
    ]);
    await waitFor('announced', async () => (await healthz(24692, '127.0.12.55')).status === 200);
    const size = 100_000;
    const run = await runClient({ host: '127.0.12.55', port: 24640, paths: [`/bytes/${size}`] });
    expect(downloadedSha256(run, String(size)), explainDownload(run, String(size), size)).toBe(expectedSha256(size));
    const story = retryStory(run.output);
    expect(story.retries, run.output.slice(0, 3000)).toHaveLength(1);
    // ngtcp2 aborts unless both transport parameters match (RFC 9000 §7.3); they did.
    expect([story.odcid, story.rscid]).toEqual([story.firstDcid, story.retries[0]]);
    const accepted = readEvents(eventLog).filter((e) => e.event === 'connection-accepted');
    expect(accepted.map((e) => [e.odcid, e.rscid, e.retryKeySequence])).toEqual([
      [story.firstDcid, story.retries[0], 3],
    ]);
    const m = await metrics(24692, '127.0.12.55');
    expect(m.get('quic_lb_retry_sent_total')).toBe(1);
    expect(m.get('quic_lb_retry_tokens_total{result="valid"}')).toBe(1);
    expect(m.get('quic_lb_anycast_datagrams_total{path="peer"}')).toBe(0);
    await stop(s);
  });
});

describe('quic-lb demo backend --anycast, two servers', () => {
  const file = path.join(dir, 'two.yaml');
  const servers: [string, string, string][] = [
    ['s1', '127.0.12.71:24644', '0001'],
    ['s2', '127.0.12.72:24644', '0002'],
  ];
  writeFileSync(file, yaml(['127.0.12.53:24643', '127.0.12.54:24643'], servers));
  const VIP1 = { address: '127.0.12.53', port: 24643 };
  let s1: Proc;
  let s2: Proc;

  async function sendAndWait(
    to: { address: string; port: number },
    pkt: Buffer,
  ): Promise<dgram.RemoteInfo | undefined> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.12.99', () => r()));
    const got = new Promise<dgram.RemoteInfo | undefined>((resolve) => {
      s.once('message', (_m, r) => resolve(r));
      setTimeout(() => resolve(undefined), 2000);
    });
    s.send(pkt, to.port, to.address);
    const r = await got;
    s.close();
    return r;
  }

  const cidPacket = (sid: number): Buffer =>
    Buffer.concat([Buffer.of(0x40), encodeConnectionId(qlb, Uint8Array.of(0, sid), randomBytes(6)), randomBytes(60)]);

  it("a CID of s2 sent to s1's VIP reaches s2, which answers (stateless reset) from a VIP", async () => {
    s1 = await server([
      '--config',
      file,
      '--name',
      's1',
      '--vip',
      '127.0.12.53:24643',
      '--metrics',
      '127.0.12.53:24691',
    ]);
    s2 = await server([
      '--config',
      file,
      '--name',
      's2',
      '--vip',
      '127.0.12.54:24643',
      '--metrics',
      '127.0.12.54:24691',
    ]);
    await waitFor('both announced', async () =>
      (await Promise.all([healthz(24691, '127.0.12.53'), healthz(24691, '127.0.12.54')])).every(
        (h) => h.status === 200,
      ),
    );
    const from = await sendAndWait(VIP1, cidPacket(2));
    // s2 knows no such connection: a stateless reset, from its VIP socket (one host: its own VIP literal).
    expect(from && { address: from.address, port: from.port }).toEqual({ address: '127.0.12.54', port: 24643 });
    const m1 = await metrics(24691, '127.0.12.53');
    const m2 = await metrics(24691, '127.0.12.54');
    expect(m1.get('quic_lb_anycast_datagrams_total{path="peer"}')).toBe(1);
    expect(m1.get('quic_lb_anycast_datagrams_total{path="local"}')).toBe(0);
    expect(m2.get('quic_lb_anycast_peer_received_total')).toBe(1);
    expect(m2.get('quic_lb_anycast_datagrams_total{path="local"}')).toBe(0);
  });

  it('SIGUSR2 withdraws s2: /healthz 503 with the reason, s1 sees it draining, its CIDs still reach it', async () => {
    process.kill(s2.pid, 'SIGUSR2');
    await waitFor('s2 withdrawn', async () => (await healthz(24691, '127.0.12.54')).status === 503);
    expect((await healthz(24691, '127.0.12.54')).body).toBe('withdrawn: draining\n');
    await waitFor(
      's1 sees s2 draining',
      async () =>
        (await metrics(24691, '127.0.12.53')).get('quic_lb_backend_state{backend="s2",state="draining"}') === 1,
    );
    const m2 = await metrics(24691, '127.0.12.54');
    expect(m2.get('quic_lb_anycast_withdrawn{reason="draining"}')).toBe(1);
    expect(m2.get('quic_lb_anycast_withdrawals_total{reason="draining"}')).toBe(1);
    const from = await sendAndWait(VIP1, cidPacket(2));
    expect(from?.address).toBe('127.0.12.54');
    expect((await metrics(24691, '127.0.12.54')).get('quic_lb_anycast_peer_received_total')).toBe(2);
  });

  it('SIGHUP reloads: anycast.forward false makes s1 keep s2 CIDs (a plain anycast server)', async () => {
    writeFileSync(
      file,
      yaml(
        ['127.0.12.53:24643', '127.0.12.54:24643'],
        servers,
        'anycast: { forward: false, announce: { intervalMs: 100 } }',
      ),
    );
    process.kill(s1.pid, 'SIGHUP');
    await waitFor('reloaded', () => s1.output().includes('config reloaded'));
    const before = await metrics(24691, '127.0.12.53');
    const from = await sendAndWait(VIP1, cidPacket(2));
    // s1 does not own that CID: it answers a stateless reset itself, from its VIP.
    expect(from?.address).toBe('127.0.12.53');
    const after = await metrics(24691, '127.0.12.53');
    const k = (p: string): string => `quic_lb_anycast_datagrams_total{path="${p}"}`;
    expect(after.get(k('local'))! - before.get(k('local'))!).toBe(1);
    expect(after.get(k('peer'))).toBe(before.get(k('peer')));
  });

  it('a bad config on SIGHUP keeps the running one', async () => {
    writeFileSync(
      file,
      yaml(['127.0.12.53:24643'], servers, 'anycast: { announce: { intervalMs: 100, maxCpu: 1, resumeCpu: 2 } }'),
    );
    process.kill(s1.pid, 'SIGHUP');
    await waitFor('refused', () => s1.output().includes('reload failed'));
    expect(s1.output()).toContain('ERR_CONFIG_VALUE at /anycast/announce/resumeCpu');
    expect((await healthz(24691, '127.0.12.53')).status).toBe(200);
  });
});

describe('quic-lb demo backend --anycast: refusals', () => {
  it('a config without returnPath.mode direct', () => {
    const file = path.join(dir, 'vialb.yaml');
    writeFileSync(
      file,
      // Without an anycast section (with one, the config itself is refused: ERR_CONFIG_VALUE).
      yaml(['127.0.12.55:24653'], [['s1', '127.0.12.65:24654', '0001']], '# no anycast section').replace(
        'returnPath: { mode: direct }',
        'returnPath: { mode: via-lb, listen: "127.0.12.55:24655" }',
      ),
    );
    const r = runCli(['demo', 'backend', '--anycast', '--config', file, '--name', 's1']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('ERR_ANYCAST_RETURN_MODE at /returnPath/mode');
  });
  it('a --vip that is not in listen', () => {
    const file = path.join(dir, 'one-more.yaml');
    writeFileSync(file, yaml(['127.0.12.56:24663'], [['s1', '127.0.12.66:24664', '0001']]));
    const r = runCli(['demo', 'backend', '--anycast', '--config', file, '--name', 's1', '--vip', '127.0.12.57:24663']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('ERR_ANYCAST_VIP');
  });
});
