// Chromium (Debian's, driven by playwright-core over CDP) as a real client through the stateless
// edge (issue 13 §1, docs/clients.md): an LB and two demo backends with one fixed identity on
// loopback (127.0.5.10-12 / 257xx, used by no other test), the page through the VIP, the move to
// the backend's preferred_address seen in the net-log and in the backend's events, the content
// from the backend whose server ID is in the CID, and further requests on the same connection
// while the LB is down and after it is restarted.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configFromSpec, decodeServerId } from '../../src/cid/index.js';
import { certificateHash, certificatesPem, generateSelfSigned, privateKeyPem, spkiPin } from '../../src/demo/index.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';
import { parseNetLog, startChromium, type NetLog, type RunningChromium } from './chromium.js';
import { readEvents, scrape, startStack, total, type Event, type Stack, type StackSpec } from './stack.js';

const KEY = '8f95f09245765f80256934e50c66207f';
const spec: StackSpec = {
  vip: { address: '127.0.5.10', port: 25710 },
  metricsPort: 25712,
  quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: KEY }],
  backends: [
    { name: 'b1', address: '127.0.5.11', port: 25711, serverIds: { 0: '0b01' } },
    { name: 'b2', address: '127.0.5.12', port: 25711, serverIds: { 0: '0b02' } },
  ],
};
const origin = `${spec.vip.address}:${spec.vip.port}`;

let stack: Stack | undefined;
let restartedLb: Proc | undefined;
let browser: RunningChromium | undefined;
const certDir = mkdtempSync(path.join(tmpdir(), 'quic-lb-chromium-cert-'));
afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await stop(restartedLb);
  await stack?.stop();
  rmSync(certDir, { recursive: true, force: true });
  if (stack) rmSync(stack.dir, { recursive: true, force: true });
});

/** Every event of every backend, with the backend's name. */
function allEvents(s: Stack): Array<Event & { backend: string }> {
  return spec.backends.flatMap((b) => readEvents(s.eventLog(b.name)).map((e) => ({ ...e, backend: b.name })));
}

/** `fetch(path)` from the page (same origin, never from the cache): the body text. */
function fetchText(page: RunningChromium['page'], p: string): Promise<string> {
  return page.evaluate(async (u) => {
    const init = { cache: 'no-store' }; // RequestInit of the DOM (this file is typed with Node's)
    return (await fetch(u, init as RequestInit)).text();
  }, p);
}

/** The backend whose server ID the QUIC-LB config decodes from `cidHex`. */
function ownerOf(cidHex: string): string | undefined {
  const sid = decodeServerId(configFromSpec(spec.quicLb[0]), Buffer.from(cidHex, 'hex'));
  const hex = sid ? Buffer.from(sid).toString('hex') : '';
  return spec.backends.find((b) => b.serverIds[0] === hex)?.name;
}

/** QUIC sessions in the net-log, and the preferred_address hand-off events. */
function quicStory(log: NetLog): { sessions: number; available: number; validating: number; migrated: number } {
  return {
    sessions: log.sources('QUIC_SESSION').length,
    available: log.named('QUIC_ON_SERVER_PREFERRED_ADDRESS_AVAILABLE').length,
    validating: log.named('QUIC_START_VALIDATING_SERVER_PREFERRED_ADDRESS').length,
    migrated: log.named('QUIC_SUCCESSFULLY_MIGRATED_TO_SERVER_PREFERRED_ADDRESS').length,
  };
}

describe('Chromium through the stateless edge', () => {
  it('loads a page via the VIP, moves to the preferred address, and keeps its connection across an LB restart', async () => {
    // One fixed identity for both backends, so one SPKI pin opens either.
    const identity = generateSelfSigned();
    const cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    writeFileSync(cert, certificatesPem(identity));
    writeFileSync(key, privateKeyPem(identity), { mode: 0o600 });
    stack = await startStack(spec, () => ['--cert', cert, '--key', key]);
    const pin = spkiPin(identity);
    // Each backend announces the pin of the identity it serves (src/cli/demo.ts ready line).
    for (const p of stack.backends.values()) {
      expect(p.ready.spki).toBe(pin);
      expect(p.ready.certSha256).toBe(certificateHash(identity));
    }

    browser = await startChromium({ quicOrigin: origin, spkiPin: pin });
    const res = await browser.page.goto(`https://${origin}/`, { timeout: 20_000 });
    expect(res?.status()).toBe(200);
    const first = (await browser.page.textContent('body')) ?? '';
    const served = /quic-lb demo backend (b[12]) server ID (0b0[12])/.exec(first);
    expect(served, first).not.toBeNull();
    const owner = served![1];

    // The backend that answered is the one whose server ID the connection's CIDs carry.
    const s = stack;
    const accepted = allEvents(s).filter((e) => e.event === 'connection-accepted');
    expect(accepted).toHaveLength(1);
    expect(accepted[0].backend).toBe(owner);
    expect(accepted[0].via).toBe(`lb:${origin}`);
    expect(ownerOf(String(accepted[0].scid))).toBe(owner);
    const ownerSpec = spec.backends.find((b) => b.name === owner)!;
    expect(served![2]).toBe(ownerSpec.serverIds[0]);

    // Chromium takes the preferred_address: the backend sees the client on its own address.
    const direct = `direct:${ownerSpec.address}:${ownerSpec.port}`;
    await waitFor(
      'the backend saw the move to its own address',
      () => allEvents(s).some((e) => e.event === 'migrated' && e.backend === owner && e.via === direct),
      10_000,
    );

    // The LB goes away: the page's next request still reaches the same backend.
    await stop(s.lb);
    expect(await fetchText(browser.page, '/')).toBe(first.trim() + '\n');
    // ... and a fresh LB (no state of the old one) changes nothing either; it sees none of it.
    restartedLb = await startCli(['serve', '--config', s.configFile, '--no-watch']);
    for (let i = 0; i < 3; i++) expect(await fetchText(browser.page, '/')).toBe(first.trim() + '\n');
    const lbSaw = total(await scrape(spec), 'quic_lb_received_packets_total');
    expect(lbSaw).toBe(0);

    const events = allEvents(s);
    // One connection in all, to one backend, which answered every request.
    expect(events.filter((e) => e.event === 'connection-accepted')).toHaveLength(1);
    // Every request (the page, its favicon, four fetches) on that connection, the page's five on '/'.
    const requests = events.filter((e) => e.event === 'request');
    expect(new Set(requests.map((e) => `${e.backend} ${e.conn}`))).toEqual(new Set([`${owner} ${accepted[0].conn}`]));
    expect(requests.filter((e) => e.path === '/')).toHaveLength(5);
    expect(events.some((e) => e.event === 'closed')).toBe(false);

    const running = browser;
    browser = undefined;
    const log = await running.close();
    expect(log.named('QUIC_SESSION_CERTIFICATE_VERIFIED').length).toBeGreaterThanOrEqual(1);
    // One QUIC session (no new one after the LB restart), which took the preferred address.
    expect(quicStory(log)).toEqual({ sessions: 1, available: 1, validating: 1, migrated: 1 });
    // Chromium moved onto the CID the owner gave with its preferred_address, which carries its server ID.
    const movedOn = String(
      log.named('QUIC_SUCCESSFULLY_MIGRATED_TO_SERVER_PREFERRED_ADDRESS')[0].params?.connection_id,
    );
    expect(ownerOf(movedOn)).toBe(owner);
    const issued = events.find((e) => e.event === 'cid-issued' && e.purpose === 'preferred_address');
    expect([issued?.backend, issued?.cid]).toEqual([owner, movedOn]);
  });
});

describe('net-log reader', () => {
  const text = [
    '{"constants":{"logEventTypes":{"A":1,"B":2},"logSourceType":{"S":7}},',
    '"events": [',
    '{"phase":0,"source":{"id":1,"type":7},"time":"1","type":1},',
    '{"phase":0,"source":{"id":2,"type":7},"time":"2","type":2},',
    '{"phase":0,"source":{"id":2,"type":7},"time":"3","type":2}',
    ']}',
  ];

  it('reads a complete file', () => {
    const log = parseNetLog(text.join('\n'));
    expect(log.complete).toBe(true);
    expect(log.named('B')).toHaveLength(2);
    expect(log.named('C')).toEqual([]);
    expect(log.sources('S')).toEqual([1, 2]);
  });

  it('keeps the complete events of a file cut short, inside a line or at its end', () => {
    const cutMidLine = `${text.slice(0, 4).join('\n')}\n{"phase":0,"sour`;
    const log = parseNetLog(cutMidLine);
    expect(log.complete).toBe(false);
    expect(log.events.map((e) => e.time)).toEqual(['1', '2']);
    expect(parseNetLog(`${text.slice(0, 3).join('\n')}\n`).events).toHaveLength(1);
    expect(parseNetLog(text.slice(0, 2).join('\n')).events).toEqual([]);
    expect(() => parseNetLog('{"constants":')).toThrow(/net-log/);
  });
});
