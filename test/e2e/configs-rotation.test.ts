// End to end over the three QUIC-LB algorithms, and a config rotation in the middle of a
// download that stays on the LB path. Real LB, backend and gtlsclient processes.
// Addresses 127.0.2.50-59, ports 25500-25599.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createConfig, decodeServerId } from '../../src/cid/index.js';
import { downloadedSha256, expectedSha256, explainDownload, has, runClient, serverCidsSeen } from './gtlsclient.js';
import {
  configYaml,
  readEvents,
  scrape,
  startStack,
  total,
  type Stack,
  type StackSpec,
  type QuicLbSpec,
} from './stack.js';
import { waitFor } from '../helpers/wait.js';

const stacks: Stack[] = [];
afterAll(async () => {
  await Promise.all(stacks.map((f) => f.stop()));
});

const hexKey = (): string => randomBytes(16).toString('hex');

describe('QUIC-LB algorithms end to end', () => {
  const cases: Array<{ name: string; q: QuicLbSpec; sid: string; n: number }> = [
    { name: 'plaintext', q: { configId: 2, serverIdLength: 3, nonceLength: 5 }, sid: 'a1b2c3', n: 0 },
    {
      name: 'single-pass (16-octet block)',
      q: { configId: 3, serverIdLength: 4, nonceLength: 12, key: hexKey() },
      sid: 'd1d2d3d4',
      n: 1,
    },
    { name: 'four-pass', q: { configId: 4, serverIdLength: 3, nonceLength: 7, key: hexKey() }, sid: 'e1e2e3', n: 2 },
  ];
  for (const c of cases) {
    it(`${c.name}: handshake via the LB, CIDs decode to the backend, download intact`, async () => {
      const base = 25500 + c.n * 10;
      const spec: StackSpec = {
        vip: { address: '127.0.2.50', port: base },
        metricsPort: base + 2,
        quicLb: [c.q],
        backends: [
          { name: 'only', address: `127.0.2.${51 + c.n}`, port: base + 5, serverIds: { [c.q.configId]: c.sid } },
        ],
      };
      const stack = await startStack(spec);
      stacks.push(stack);
      const config = createConfig({
        configId: c.q.configId,
        serverIdLength: c.q.serverIdLength,
        nonceLength: c.q.nonceLength,
        key: c.q.key ? Buffer.from(c.q.key, 'hex') : undefined,
      });
      expect(config.algorithm).toBe(c.name.split(' ')[0]);
      const run = await runClient({
        host: spec.vip.address,
        port: spec.vip.port,
        paths: ['/bytes/50000'],
        extraArgs: ['--delay-stream=300ms'],
      });
      expect(has(run.output, 'QUIC handshake has been confirmed')).toBe(true);
      expect(downloadedSha256(run, '50000'), explainDownload(run, '50000', 50000)).toBe(expectedSha256(50000));
      const seen = serverCidsSeen(run.output);
      const all = [seen.scid, seen.preferred, ...seen.newConnectionIds].filter((x): x is string => x !== undefined);
      expect(all.length).toBeGreaterThanOrEqual(1);
      for (const cid of all)
        expect(Buffer.from(decodeServerId(config, Buffer.from(cid, 'hex')) ?? []).toString('hex')).toBe(c.sid);
      const metrics = await scrape(spec);
      expect(
        total(metrics, 'quic_lb_cid_packets_total', `config_id="${c.q.configId}",result="routed"`),
      ).toBeGreaterThanOrEqual(1);
      if (config.algorithm === 'plaintext') {
        // draft-21 §9.2: one CID per connection, no preferred_address; the whole download stays on the VIP.
        expect(seen.preferred).toBeUndefined();
        expect(seen.newConnectionIds).toEqual([]);
        expect(run.output).toContain('cry remote transport_parameters disable_active_migration=1');
      } else {
        // A CID of this config's length, other than the handshake's (its server ID is checked above).
        expect(seen.preferred).toMatch(new RegExp(`^[0-9a-f]{${2 * config.cidLength}}$`));
        expect(seen.preferred).not.toBe(seen.scid);
        expect(has(run.output, `selected server preferred_address is [127.0.2.${51 + c.n}]:${base + 5}`)).toBe(true);
      }
    });
  }
});

describe('config rotation in the middle of a download', () => {
  it('the backend re-issues CIDs under the new config (Retire Prior To), the LB routes them, the download completes', async () => {
    const k0 = hexKey();
    const k1 = hexKey();
    const spec: StackSpec = {
      vip: { address: '127.0.2.56', port: 25550 },
      metricsPort: 25552,
      quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: k0 }],
      backends: [
        { name: 'r1', address: '127.0.2.57', port: 25555, serverIds: { 0: '0101' } },
        { name: 'r2', address: '127.0.2.58', port: 25555, serverIds: { 0: '0102' } },
      ],
    };
    const stack = await startStack(spec);
    stacks.push(stack);
    // Step 1 (draft-21 §3.1): the LBs learn the new config first.
    const next: StackSpec = {
      ...spec,
      quicLb: [...spec.quicLb, { configId: 1, serverIdLength: 3, nonceLength: 6, key: k1 }],
      backends: spec.backends.map((b, i) => ({ ...b, serverIds: { ...b.serverIds, 1: `02020${i + 1}` } })),
    };
    const fallbackKey = randomBytes(16).toString('hex');
    writeFileSync(stack.configFile, configYaml(next, fallbackKey));
    process.kill(stack.lb.pid, 'SIGHUP');
    await waitFor(
      'LB reload',
      async () => total(await scrape(spec), 'quic_lb_config_reloads_total', 'outcome="success"') >= 1,
      5000,
    );

    // Step 2: a download on the LB path; when the request arrives, the backends get the new config.
    const requestSeen = waitFor(
      'request',
      () => spec.backends.some((b) => readEvents(stack.eventLog(b.name)).some((e) => e.event === 'request')),
      10_000,
    ).then(() => {
      for (const p of stack.backends.values()) process.kill(p.pid, 'SIGHUP');
    });
    const size = 6_000_000;
    const clientRun = runClient({
      host: spec.vip.address,
      port: spec.vip.port,
      paths: [`/bytes/${size}`],
      extraArgs: ['--no-preferred-addr'],
      timeoutMs: 40_000,
    });
    await requestSeen;
    const run = await clientRun;
    expect(downloadedSha256(run, String(size)), explainDownload(run, String(size), size)).toBe(expectedSha256(size));

    const served = spec.backends.find((b) => readEvents(stack.eventLog(b.name)).some((e) => e.event === 'request'))!;
    const events = readEvents(stack.eventLog(served.name));
    const order = events.map((e) => e.event);
    // The rotation happened while the response was still being sent.
    expect(order.indexOf('cids-reissued')).toBeGreaterThan(order.indexOf('request'));
    expect(order.indexOf('cids-reissued')).toBeLessThan(order.indexOf('stream-sent'));
    expect(events.find((e) => e.event === 'cids-reissued')?.connections).toBe(1);
    // The client received the new CIDs with Retire Prior To, retired the old ones and used the new ones.
    const config1 = createConfig({ configId: 1, serverIdLength: 3, nonceLength: 6, key: Buffer.from(k1, 'hex') });
    const rotated = [
      ...run.output.matchAll(
        /frm rx \d+ 1RTT NEW_CONNECTION_ID\(0x18\) seq=\d+ cid=0x([0-9a-f]+) retire_prior_to=([1-9]\d*)/g,
      ),
    ];
    expect(rotated.length).toBeGreaterThanOrEqual(1);
    for (const m of rotated)
      expect(Buffer.from(decodeServerId(config1, Buffer.from(m[1], 'hex')) ?? []).toString('hex')).toBe(
        next.backends.find((b) => b.name === served.name)!.serverIds[1],
      );
    expect(run.output).toMatch(/frm tx \d+ 1RTT RETIRE_CONNECTION_ID\(0x19\) seq=0/);
    expect(events.filter((e) => e.event === 'cid-retired').length).toBeGreaterThanOrEqual(1);
    const metrics = await scrape(spec);
    expect(total(metrics, 'quic_lb_cid_packets_total', 'config_id="1",result="routed"')).toBeGreaterThan(0);
    expect(total(metrics, 'quic_lb_cid_packets_total', 'config_id="0",result="routed"')).toBeGreaterThan(0);
    console.log(
      `[e2e] rotation: ${total(metrics, 'quic_lb_cid_packets_total', 'config_id="0",result="routed"')} datagrams routed on config 0, ${total(metrics, 'quic_lb_cid_packets_total', 'config_id="1",result="routed"')} on config 1`,
    );
  });
});
