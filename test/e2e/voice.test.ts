// A voice session from headless Chromium (Debian's /usr/bin/chromium driven by playwright-core,
// nothing downloaded) through an LB and two demo backends on loopback: the `/voice` page loads
// over HTTP/3 through the VIP and opens WebTransport (draft-02) to the same origin, pinning the
// certificate with serverCertificateHashes; 160-octet frames flow both ways every 20 ms for 30 s.
// Asserts the page's own counters (window.voice), the serving backend's events and Chromium's
// net-log: where the page's connection and the WebTransport connection went, that an LB replaced
// mid-session with no gap (socket.reusePort: the new one binds the VIP before the old one stops)
// leaves the session untouched, and what killing the only LB does to a WebTransport session on
// the VIP path.
// Addresses 127.0.5.10-19, ports 26500-26599.
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { generateSelfSigned } from '../../src/demo/index.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { readEvents, scrape, startStack, total, type Event, type Stack, type StackSpec } from './stack.js';

const VIP = { address: '127.0.5.10', port: 26500 };
const spec: StackSpec = {
  vip: VIP,
  metricsPort: 26599,
  quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: '00112233445566778899aabbccddeeff' }],
  backends: [
    { name: 'v1', address: '127.0.5.11', port: 26510, serverIds: { 0: '0b01' } },
    { name: 'v2', address: '127.0.5.12', port: 26510, serverIds: { 0: '0b02' } },
  ],
  reusePort: true,
};
const SESSION_MS = 30_000;
/** When, into the session, the second LB starts and the first one is stopped. */
const RESTART_AT_MS = 10_000;
/** The replacement LB's metrics port (the first one's is still bound when it starts). */
const METRICS_2 = 26598;

interface VoiceStats {
  state: string;
  path: { via: string; client: string } | null;
  paths: string[];
  sent: number;
  received: number;
  late: number;
  lost: number;
  bad: number;
  rttMs: number | null;
  error: string | null;
  datagramsSent: number;
  datagramsEchoed: number;
}

const pem = (label: string, der: Buffer): string =>
  `-----BEGIN ${label}-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd()}\n-----END ${label}-----\n`;

let dir: string;
let stack: Stack | undefined;
let lb: Proc | undefined;
let browser: Browser | undefined;
let page: Page;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-voice-'));
  // One identity for both backends: ECDSA P-256, 10 days (serverCertificateHashes allows <= 14).
  const id = generateSelfSigned('localhost', [VIP.address, ...spec.backends.map((b) => b.address)], 10);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  writeFileSync(certFile, pem('CERTIFICATE', id.certificates[0]));
  writeFileSync(keyFile, id.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const spkiDer = new X509Certificate(id.certificates[0]).publicKey.export({ type: 'spki', format: 'der' });
  const spki = createHash('sha256').update(spkiDer).digest('base64');
  stack = await startStack(spec, () => ['--cert', certFile, '--key', keyFile]);
  lb = stack.lb;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--enable-quic',
      `--origin-to-force-quic-on=${VIP.address}:${VIP.port}`,
      `--ignore-certificate-errors-spki-list=${spki}`,
      `--log-net-log=${path.join(dir, 'netlog.json')}`,
    ],
  });
  page = await browser.newPage();
}, 60_000);

afterAll(async () => {
  if (lb && lb !== stack?.lb) await stop(lb);
  await stack?.stop();
  const pid = (browser as unknown as { process?(): { pid?: number } } | undefined)?.process?.()?.pid;
  await Promise.race([browser?.close().catch(() => undefined), sleep(5000)]);
  if (pid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

const voice = (): Promise<VoiceStats> =>
  page.evaluate(() => {
    const v = (globalThis as unknown as { voice: VoiceStats }).voice;
    return JSON.parse(JSON.stringify(v)) as VoiceStats;
  });

function servingEvents(): { name: string; events: Event[] } {
  for (const b of spec.backends) {
    const events = readEvents(stack!.eventLog(b.name));
    if (events.some((e) => e.event === 'voice-session-open')) return { name: b.name, events };
  }
  return { name: '', events: [] };
}

/** Net-log event names per source type of a (possibly cut short) Chromium net-log file. */
function netLogEvents(file: string): Array<{ name: string; source: string; params?: Record<string, unknown> }> {
  const text = readFileSync(file, 'utf8');
  // A log still being written lacks its closing `]}`: cut at the last complete event.
  const cut = text.lastIndexOf('},\n');
  const json = JSON.parse(text.trimEnd().endsWith(']}') ? text : `${text.slice(0, cut + 1)}]}`) as {
    constants: { logEventTypes: Record<string, number>; logSourceType: Record<string, number> };
    events: Array<{ type: number; source: { type: number }; params?: Record<string, unknown> }>;
  };
  const names = new Map(Object.entries(json.constants.logEventTypes).map(([k, v]) => [v, k]));
  const sources = new Map(Object.entries(json.constants.logSourceType).map(([k, v]) => [v, k]));
  return json.events.map((e) => ({
    name: names.get(e.type) ?? '?',
    source: sources.get(e.source.type) ?? '?',
    params: e.params,
  }));
}

describe('voice session from Chromium through the stateless edge', () => {
  it('30 s over WebTransport through the VIP, the LB replaced with no gap mid-session: none lost, one session', async () => {
    await page.goto(`https://${VIP.address}:${VIP.port}/voice`);
    await waitFor('session open, frames back', async () => (await voice()).received > 5, 15_000);
    const started = Date.now();
    await sleep(RESTART_AT_MS);
    // The restart with no gap (docs/lb.md "Restart with no gap"): a second LB with the same config
    // (but its own metrics port) binds the VIP and the return port beside the first (SO_REUSEPORT),
    // then the first is SIGTERMed. The VIP port never answers ICMP port unreachable.
    const before = await voice();
    const config2 = path.join(dir, 'lb2.yaml');
    writeFileSync(config2, readFileSync(stack!.configFile, 'utf8').replace(`:${spec.metricsPort}'`, `:${METRICS_2}'`));
    const lb2 = await startCli(['serve', '--config', config2, '--no-watch']);
    const first = lb!;
    lb = lb2;
    expect(await stop(first, 'SIGTERM')).toBe(0);
    const afterStop = await voice();
    await sleep(Math.max(0, SESSION_MS - (Date.now() - started)));
    const end = await voice();
    await page.evaluate(() => (globalThis as unknown as { voiceStop(): Promise<void> }).voiceStop());
    await waitFor(
      'voice-session-close on the serving backend',
      () => servingEvents().events.some((e) => e.event === 'voice-session-close'),
      10_000,
    );
    const serving = servingEvents();

    // The page's counters: 50 frames/s both ways, nothing lost or malformed, an RTT measured.
    expect(end.error).toBeNull();
    expect(end.state).toBe('open');
    const expected = (SESSION_MS / 20) * 0.95;
    expect(end.sent).toBeGreaterThanOrEqual(expected);
    expect(end.received).toBeGreaterThanOrEqual(expected);
    expect(end.lost).toBe(0);
    expect(end.bad).toBe(0);
    expect(end.rttMs).toBeGreaterThan(0);
    // Datagrams (RFC 9297 over RFC 9221) beside the stream: 10/s, echoed by the server (unreliable:
    // on loopback nearly all come back).
    expect(end.datagramsSent).toBeGreaterThanOrEqual((SESSION_MS / 100) * 0.9);
    expect(end.datagramsEchoed).toBeGreaterThanOrEqual(end.datagramsSent * 0.9);
    // What the page displays is what it counts.
    const shown = await page.textContent('#t');
    expect(shown).toContain('frames received');
    expect(shown).toMatch(/lost\s*0/);
    // The server's path report: the VIP, through the LB (the next test says why it stays there).
    expect(end.paths).toEqual([`lb:${VIP.address}:${VIP.port}`]);
    // Across the restart: the same session kept its state and its frames kept coming both ways.
    expect([before.state, afterStop.state, end.state]).toEqual(['open', 'open', 'open']);
    expect(afterStop.received).toBeGreaterThan(before.received);
    expect(end.received - afterStop.received).toBeGreaterThanOrEqual(((SESSION_MS - RESTART_AT_MS) / 20) * 0.8);
    // ... carried by the second LB after the first one left: both directions of the serving backend.
    const m2 = await scrape({ ...spec, metricsPort: METRICS_2 });
    const serving1 = servingEvents().name;
    const via2 = (direction: string): number =>
      total(m2, 'quic_lb_backend_packets_total', `backend="${serving1}",direction="${direction}"`);
    expect(via2('to_backend')).toBeGreaterThanOrEqual((SESSION_MS - RESTART_AT_MS) / 20);
    expect(via2('to_client')).toBeGreaterThanOrEqual((SESSION_MS - RESTART_AT_MS) / 20);

    // The server's events: one session, closed by the page (FIN on the CONNECT stream) with nothing lost.
    const opens = spec.backends
      .flatMap((b) => readEvents(stack!.eventLog(b.name)))
      .filter((e) => e.event === 'voice-session-open');
    expect(opens).toHaveLength(1);
    expect(opens[0].via).toBe(`lb:${VIP.address}:${VIP.port}`);
    const close = serving.events.find((e) => e.event === 'voice-session-close')!;
    expect([close.conn, close.session]).toEqual([opens[0].conn, opens[0].session]);
    expect(close.reason).toBe('connect-stream-finished');
    // The server saw the LB change as one new path with the same client address and the same
    // VIP (datagrams now come from the second LB's upstream socket): it validated it and moved
    // the connection there (RFC 9000 §9.3); the client's 4-tuple never changed.
    const lbPath = `lb:${VIP.address}:${VIP.port}`;
    const moved = serving.events.filter((e) => e.event === 'migrated' && e.conn === opens[0].conn);
    expect(moved.map((e) => [e.fromVia, e.via, e.from === e.to])).toEqual([[lbPath, lbPath, true]]);
    expect(close.lost).toBe(0);
    expect(close.bad).toBe(0);
    expect(close.framesIn as number).toBeGreaterThanOrEqual(end.sent);
    expect(close.framesOut as number).toBeGreaterThanOrEqual(end.received);
    expect(close.datagramsIn as number).toBeGreaterThanOrEqual(end.datagramsEchoed);
    expect(serving.events.filter((e) => e.event === 'voice-frames').length).toBeGreaterThanOrEqual(5);
  }, 90_000);

  it("the page's HTTP/3 connection moves to the preferred address; Chromium's dedicated WebTransport connection does not", () => {
    const events = netLogEvents(path.join(dir, 'netlog.json'));
    const of = (source: string): string[] => events.filter((e) => e.source === source).map((e) => e.name);
    // The pooled HTTP/3 session that loaded /voice: RFC 9000 §9.6 migration, as with any page.
    expect(of('QUIC_SESSION')).toContain('QUIC_SUCCESSFULLY_MIGRATED_TO_SERVER_PREFERRED_ADDRESS');
    // The WebTransport session runs on its own connection (net/quic/dedicated_web_transport_http3_client.cc:
    // one connected UDP socket): it receives preferred_address and never acts on it.
    const wt = events.filter((e) => e.source === 'WEB_TRANSPORT_CLIENT');
    const tp = wt.find((e) => e.name === 'QUIC_SESSION_TRANSPORT_PARAMETERS_RECEIVED');
    expect(JSON.stringify(tp?.params ?? {})).toContain('preferred_address');
    expect(wt.map((e) => e.name)).not.toContain('QUIC_ON_SERVER_PREFERRED_ADDRESS_AVAILABLE');
    // ... and the server agrees: the page's connection migrated, the voice session's never did.
    const serving = servingEvents();
    const voiceConn = serving.events.find((e) => e.event === 'voice-session-open')!.conn;
    const migrated = spec.backends
      .flatMap((b) => readEvents(stack!.eventLog(b.name)))
      .filter((e) => e.event === 'migrated');
    expect(migrated.some((e) => String(e.via).startsWith('direct:'))).toBe(true);
    // (Its one 'migrated' event is the LB replacement of the first test: from the VIP to the VIP.)
    const voiceMoves = serving.events.filter((e) => e.event === 'migrated' && e.conn === voiceConn);
    expect(voiceMoves.filter((e) => !String(e.via).startsWith('lb:'))).toHaveLength(0);
  });
  it('the only LB killed mid-session: the refused VIP ends the WebTransport session; a new one works at once after the restart', async () => {
    await page.goto(`https://${VIP.address}:${VIP.port}/voice`);
    await waitFor('second session open', async () => (await voice()).received > 50, 15_000);
    await stop(lb!);
    // On loopback the dead VIP port answers ICMP port unreachable: Chromium's connected UDP socket
    // reports ERR_CONNECTION_REFUSED and the dedicated WebTransport connection fails.
    await waitFor('session failed', async () => (await voice()).state === 'failed', 10_000);
    const failed = await voice();
    expect(failed.error).toContain('WebTransportError');
    expect(failed.lost).toBe(0);
    lb = await startCli(['serve', '--config', stack!.configFile, '--no-watch']);
    // No state to rebuild: the restarted LB routes a fresh session at once.
    await page.goto(`https://${VIP.address}:${VIP.port}/voice`);
    await waitFor('third session open', async () => (await voice()).received > 50, 15_000);
    const third = await voice();
    expect([third.state, third.lost, third.error]).toEqual(['open', 0, null]);
    await page.evaluate(() => (globalThis as unknown as { voiceStop(): Promise<void> }).voiceStop());
    const refused = netLogEvents(path.join(dir, 'netlog.json')).filter(
      (e) => e.source === 'WEB_TRANSPORT_CLIENT' && e.name === 'QUIC_READ_ERROR',
    );
    expect(refused.map((e) => e.params?.net_error)).toContain(-102); // ERR_CONNECTION_REFUSED
  }, 60_000);
});
