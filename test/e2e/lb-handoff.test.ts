// End to end: real `quic-lb serve`, real `quic-lb demo backend` processes, the real ngtcp2
// gtlsclient. Assertions on the client's lines, the downloaded bytes, the backends' event logs
// and the LB's /metrics (never the client's exit code). Addresses 127.0.2.40-49, ports 25300-25399.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfig, decodeServerId, encodeConnectionId, type QuicLbConfig } from '../../src/cid/index.js';
import { downloadedSha256, expectedSha256, explainDownload, has, runClient, serverCidsSeen } from './gtlsclient.js';
import { readEvents, scrape, startStack, total, type Stack, type StackSpec } from './stack.js';

const VIP = { address: '127.0.2.40', port: 25300 };
const key = randomBytes(16).toString('hex');
const spec: StackSpec = {
  vip: VIP,
  metricsPort: 25302,
  quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key }],
  backends: [
    { name: 'b1', address: '127.0.2.41', port: 25310, serverIds: { 0: '0a01' } },
    { name: 'b2', address: '127.0.2.42', port: 25310, serverIds: { 0: '0a02' } },
  ],
};
const config: QuicLbConfig = createConfig({
  configId: 0,
  serverIdLength: 2,
  nonceLength: 6,
  key: Buffer.from(key, 'hex'),
});
const sidOf = (cidHex: string): string =>
  Buffer.from(decodeServerId(config, Buffer.from(cidHex, 'hex')) ?? []).toString('hex');
const backendBySid = new Map(spec.backends.map((b) => [b.serverIds[0], b]));

let stack: Stack;
beforeAll(async () => {
  stack = await startStack(spec);
});
afterAll(async () => {
  await stack?.stop();
});

/** The backend whose event log has the connection whose SCID is `scid`. */
function servingBackend(scid: string): { name: string; events: ReturnType<typeof readEvents> } {
  for (const b of spec.backends) {
    const events = readEvents(stack.eventLog(b.name));
    const accepted = events.find((e) => e.event === 'connection-accepted' && e.scid === scid);
    if (accepted) return { name: b.name, events: events.filter((e) => e.conn === accepted.conn) };
  }
  throw new Error(`no backend logged a connection with SCID ${scid}`);
}

const sentTo = (out: string, ep: { address: string; port: number }): number =>
  out.split('\n').filter((l) => l.startsWith('Sent packet:') && l.includes(`remote=[${ep.address}]:${ep.port} `))
    .length;

describe('LB handoff with gtlsclient', () => {
  it('1+2: handshake via the VIP, move to the preferred address, 200 KB intact, the LB carries only the handshake; every CID names the serving backend', async () => {
    const before = await scrape(spec);
    const run = await runClient({
      host: VIP.address,
      port: VIP.port,
      paths: ['/bytes/200000'],
      extraArgs: ['--delay-stream=300ms'],
    });
    const after = await scrape(spec);
    const out = run.output;
    expect(has(out, 'QUIC handshake has been confirmed')).toBe(true);
    expect(downloadedSha256(run, '200000'), explainDownload(run, '200000', 200000)).toBe(expectedSha256(200000));

    const seen = serverCidsSeen(out);
    // A CID of the config's length (first octet + server ID + nonce), hex.
    const cidHex = new RegExp(`^[0-9a-f]{${2 * config.cidLength}}$`);
    expect(seen.scid).toMatch(cidHex);
    const sid = sidOf(seen.scid as string);
    // Its server ID names the backend whose event log has the connection.
    const backend = backendBySid.get(sid);
    const served = servingBackend(seen.scid as string);
    expect(backend?.name).toBe(served.name);
    const b = backend!;
    expect(has(out, `selected server preferred_address is [${b.address}]:${b.port}`)).toBe(true);
    expect(out).toContain(`remote:[${b.address}]:${b.port}} succeeded`);

    // 2: SCID, preferred_address CID and every NEW_CONNECTION_ID CID decode to that backend.
    const all = [seen.scid, seen.preferred, ...seen.newConnectionIds] as string[];
    expect(seen.preferred).toMatch(cidHex);
    expect(seen.preferred).not.toBe(seen.scid);
    expect(seen.newConnectionIds.length).toBeGreaterThanOrEqual(1);
    for (const cid of all) expect(sidOf(cid)).toBe(sid);
    const issued = served.events.filter((e) => e.event === 'cid-issued').map((e) => e.cid);
    for (const cid of all) expect(issued).toContain(cid);

    // 1: the LB forwarded exactly what the client sent to the VIP, all of it before the move.
    const viaLb = total(after, 'quic_lb_received_packets_total') - total(before, 'quic_lb_received_packets_total');
    const toBackend =
      total(after, 'quic_lb_backend_packets_total', `backend="${b.name}",direction="to_backend"`) -
      total(before, 'quic_lb_backend_packets_total', `backend="${b.name}",direction="to_backend"`);
    const clientToVip = sentTo(out, VIP);
    const clientToBackend = sentTo(out, b);
    const deltas = [...after]
      .filter(([k, v]) => k.startsWith('quic_lb_') && v !== (before.get(k) ?? 0))
      .map(([k, v]) => `${k} +${v - (before.get(k) ?? 0)}`);
    expect(viaLb, deltas.join('\n')).toBe(clientToVip);
    expect(toBackend, deltas.join('\n')).toBe(viaLb);
    expect(clientToBackend).toBeGreaterThan(clientToVip);
    expect(viaLb).toBeLessThanOrEqual(8); // 4 on an idle machine; Initial retransmissions add some under load
    const migrated = served.events.find((e) => e.event === 'migrated');
    expect(migrated?.via).toBe(`direct:${b.address}:${b.port}`);
    expect(served.events.find((e) => e.event === 'stream-sent')?.via).toBe(`direct:${b.address}:${b.port}`);
    console.log(
      `[e2e] handshake via LB: ${viaLb} client datagrams forwarded, ${clientToBackend} sent straight to ${b.name} after the move`,
    );
  });

  it('3: --no-preferred-addr --change-local-addr: the new path reaches the LB with a NEW_CONNECTION_ID CID and is routed to the same backend', async () => {
    const before = await scrape(spec);
    const run = await runClient({
      host: VIP.address,
      port: VIP.port,
      paths: ['/bytes/100000'],
      extraArgs: ['--no-preferred-addr', '--change-local-addr=150ms', '--delay-stream=500ms'],
    });
    const after = await scrape(spec);
    expect(has(run.output, 'Changing local address')).toBe(true);
    expect(downloadedSha256(run, '100000'), explainDownload(run, '100000', 100000)).toBe(expectedSha256(100000));
    const scid = serverCidsSeen(run.output).scid as string;
    const served = servingBackend(scid);
    const migrated = served.events.filter((e) => e.event === 'migrated');
    expect(migrated.length).toBeGreaterThanOrEqual(1);
    expect(migrated[0].via).toBe(`lb:${VIP.address}:${VIP.port}`);
    expect(migrated[0].cidSeq as number).toBeGreaterThanOrEqual(1);
    // Datagrams of the new path were routed by their CID (not by the 4-tuple fallback) to that backend.
    const routed =
      total(after, 'quic_lb_backend_routed_packets_total', `backend="${served.name}"`) -
      total(before, 'quic_lb_backend_routed_packets_total', `backend="${served.name}"`);
    expect(routed).toBeGreaterThan(10);
    const otherName = spec.backends.find((b) => b.name !== served.name)!.name;
    expect(total(after, 'quic_lb_backend_packets_total', `backend="${otherName}",direction="to_backend"`)).toBe(
      total(before, 'quic_lb_backend_packets_total', `backend="${otherName}",direction="to_backend"`),
    );
  });

  it('4: --nat-rebinding: the rebound flow is still routed to the serving backend', async () => {
    const run = await runClient({
      host: VIP.address,
      port: VIP.port,
      paths: ['/bytes/100000'],
      extraArgs: ['--no-preferred-addr', '--change-local-addr=150ms', '--nat-rebinding', '--delay-stream=500ms'],
    });
    expect(downloadedSha256(run, '100000'), explainDownload(run, '100000', 100000)).toBe(expectedSha256(100000));
    const served = servingBackend(serverCidsSeen(run.output).scid as string);
    const migrated = served.events.filter((e) => e.event === 'migrated');
    expect(migrated.length).toBeGreaterThanOrEqual(1);
    expect(migrated[0].from).not.toBe(migrated[0].to);
    expect(served.events.some((e) => e.event === 'path-validated' && e.via === `lb:${VIP.address}:${VIP.port}`)).toBe(
      true,
    );
  });

  it('6: a client-chosen Initial DCID that decodes to a real server ID (b2) still completes the handshake there', async () => {
    const dcid = Buffer.from(encodeConnectionId(config, Buffer.from('0a02', 'hex'), randomBytes(6))).toString('hex');
    const run = await runClient({
      host: VIP.address,
      port: VIP.port,
      paths: ['/bytes/10000'],
      extraArgs: [`--dcid=${dcid}`, '--delay-stream=300ms'],
    });
    expect(has(run.output, 'QUIC handshake has been confirmed')).toBe(true);
    expect(downloadedSha256(run, '10000'), explainDownload(run, '10000', 10000)).toBe(expectedSha256(10000));
    const accepted = readEvents(stack.eventLog('b2')).filter(
      (e) => e.event === 'connection-accepted' && e.odcid === dcid,
    );
    expect(accepted.length).toBe(1);
    expect(readEvents(stack.eventLog('b1')).some((e) => e.event === 'connection-accepted' && e.odcid === dcid)).toBe(
      false,
    );
  });

  it('8: 5 % simulated loss each way: the download completes intact', async () => {
    const run = await runClient({
      host: VIP.address,
      port: VIP.port,
      paths: ['/bytes/200000'],
      extraArgs: ['-t', '0.05', '-r', '0.05'],
      timeoutMs: 40_000,
    });
    expect(run.timedOut).toBe(false);
    expect(downloadedSha256(run, '200000'), explainDownload(run, '200000', 200000)).toBe(expectedSha256(200000));
  });

  it('9: twenty clients at once are spread over both backends and all downloads arrive intact', async () => {
    const acceptedBefore = spec.backends.map(
      (b) => readEvents(stack.eventLog(b.name)).filter((e) => e.event === 'connection-accepted').length,
    );
    const runs = await Promise.all(
      Array.from({ length: 20 }, () =>
        runClient({ host: VIP.address, port: VIP.port, paths: ['/bytes/30000'], timeoutMs: 40_000 }),
      ),
    );
    for (const run of runs)
      expect(downloadedSha256(run, '30000'), explainDownload(run, '30000', 30000)).toBe(expectedSha256(30000));
    const acceptedAfter = spec.backends.map(
      (b) => readEvents(stack.eventLog(b.name)).filter((e) => e.event === 'connection-accepted').length,
    );
    const perBackend = acceptedAfter.map((n, i) => n - acceptedBefore[i]);
    expect(perBackend.reduce((a, b) => a + b, 0)).toBe(20);
    for (const n of perBackend) expect(n).toBeGreaterThanOrEqual(1);
    console.log(`[e2e] 20 clients: ${perBackend.join(' / ')} connections on b1 / b2`);
  });

  it('no backend flapped during the run (a flap would send CID-routed packets to the fallback)', async () => {
    const m = await scrape(spec);
    expect(total(m, 'quic_lb_health_transitions_total')).toBe(0);
    expect(total(m, 'quic_lb_received_packets_total', 'reason="fallback_backend_down"')).toBe(0);
    expect(total(m, 'quic_lb_return_rejected_total')).toBe(0);
  });
});
