// The health probe codec, HealthChecker probe types and hysteresis on real sockets, the
// programmatic startLoadBalancer() handle, `quic-lb route`, and the README's lb example.
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HEALTH_PROBE_LENGTH,
  HealthProbeKind,
  answerHealthProbe,
  encodeHealthProbe,
  isHealthProbeRequest,
  parseHealthProbe,
} from '../../src/wire/index.js';
import {
  type BackendState,
  HealthChecker,
  type HealthCheckSpec,
  type ProbeResult,
  nextState,
  startLoadBalancer,
  validateConfig,
} from '../../src/lb/index.js';
import { repoRoot, runCli } from '../helpers/cli.js';
import { Client, Sink } from './net.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, configDoc, shortHeader } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-api-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});
const silent = pino({ level: 'silent' });

describe('health probe codec (src/wire/health-probe.ts)', () => {
  const token = Buffer.from('0102030405060708', 'hex');
  it('encodes the documented 28 octets', () => {
    const p = Buffer.from(encodeHealthProbe(HealthProbeKind.REQUEST, token));
    expect(p.length).toBe(HEALTH_PROBE_LENGTH);
    expect(p.toString('hex')).toBe(
      '0d0a0d0a000d0a515549540a' + '20' + '00' + '000c' + 'ee' + '0009' + '01' + '0102030405060708',
    );
    expect(parseHealthProbe(p)).toBe(1);
    expect(isHealthProbeRequest(p)).toBe(true);
  });
  it('answers a request with the same token, kind 2 (or 3 when draining)', () => {
    const req = encodeHealthProbe(HealthProbeKind.REQUEST, token);
    const up = answerHealthProbe(req)!;
    expect(parseHealthProbe(up)).toBe(HealthProbeKind.UP);
    expect(Buffer.from(up.subarray(20)).equals(token)).toBe(true);
    expect(parseHealthProbe(answerHealthProbe(req, true)!)).toBe(HealthProbeKind.DRAINING);
    expect(answerHealthProbe(up)).toBeUndefined(); // replies are not answered
  });
  it('rejects every truncation and a QUIC datagram', () => {
    const req = encodeHealthProbe(HealthProbeKind.REQUEST, token);
    for (let n = 0; n < HEALTH_PROBE_LENGTH; n++) expect(parseHealthProbe(req.subarray(0, n))).toBe(-1);
    expect(parseHealthProbe(shortHeader(cid(0, SIDS.a[0])))).toBe(-1);
    const bad = Uint8Array.from(req);
    bad[19] = 9;
    expect(parseHealthProbe(bad)).toBe(-1);
    expect(() => encodeHealthProbe(HealthProbeKind.REQUEST, new Uint8Array(4))).toThrow(RangeError);
  });
});

describe('HealthChecker', () => {
  // Generous timeouts: a busy machine must not turn a success into a failure.
  const spec = (over: Partial<HealthCheckSpec>): HealthCheckSpec => ({
    type: 'udp',
    intervalMs: 50,
    timeoutMs: 2000,
    rise: 2,
    fall: 3,
    downGraceMs: 30_000,
    ...over,
  });

  it('udp: an "up" reply is up, a "draining" reply is draining, silence fails', async () => {
    const sink = await Sink.start('127.0.1.70');
    cleanup.push(() => sink.close());
    const hc = new HealthChecker({ logger: silent, onChange: () => undefined });
    cleanup.push(() => hc.close());
    const target = { address: '127.0.1.70', port: sink.port, family: 4 as const };
    expect(await hc.probe(spec({ address: target }))).toBe('up');
    sink.healthy = false;
    expect(await hc.probe(spec({ address: target, timeoutMs: 300 }))).toBe('failed');
    // A responder that says "draining".
    const draining = dgram.createSocket('udp4');
    draining.on('message', (m, r) => draining.send(answerHealthProbe(m, true)!, r.port, r.address));
    await new Promise<void>((r) => draining.bind(0, '127.0.1.71', () => r()));
    cleanup.push(() => draining.close());
    expect(await hc.probe(spec({ address: { address: '127.0.1.71', port: draining.address().port, family: 4 } }))).toBe(
      'draining',
    );
  });

  it('a reply that arrived while the LB event loop was stalled past the timeout still counts', async () => {
    // The responder runs in a worker thread so it answers while this thread is blocked. It tells
    // this thread when a request arrives and answers 100 ms later by setting the kind octet (19)
    // to UP, as answerHealthProbe() does.
    const responder = new Worker(
      `const dgram = require('node:dgram'); const { parentPort } = require('node:worker_threads');
       const s = dgram.createSocket('udp4');
       s.on('message', (m, r) => {
         parentPort.postMessage('received');
         setTimeout(() => { m[19] = ${HealthProbeKind.UP}; s.send(m, r.port, r.address); }, 100);
       });
       parentPort.on('message', () => s.close(() => parentPort.close()));
       s.bind(0, '127.0.1.73', () => parentPort.postMessage(s.address().port));`,
      { eval: true },
    );
    cleanup.push(() => responder.terminate());
    const port = await new Promise<number>((r) => responder.once('message', r));
    const hc = new HealthChecker({ logger: silent, onChange: () => undefined });
    cleanup.push(() => hc.close());
    const target = { address: '127.0.1.73', port, family: 4 as const };
    const timeoutMs = 800;
    // The probe leaves, then this thread's loop is blocked until well past the probe's timeout;
    // the reply arrives during the stall. On resuming, the loop runs the expired timer before it
    // polls the socket that holds the reply.
    const stalled = async (sent: () => Promise<unknown>): Promise<ProbeResult> => {
      const t0 = Date.now();
      const verdict = hc.probe(spec({ address: target, timeoutMs }));
      await sent();
      while (Date.now() < t0 + timeoutMs + 300) {
        /* busy: a stalled event loop */
      }
      return verdict;
    };
    expect(await stalled(() => new Promise((r) => responder.once('message', r)))).toBe('up');
    // Silence is still a failure after a stall: the responder is gone.
    responder.postMessage('close');
    await new Promise((r) => responder.once('exit', r));
    expect(await stalled(() => sleep(20))).toBe('failed');
  });

  it('tcp and http probes', async () => {
    const hc = new HealthChecker({ logger: silent, onChange: () => undefined });
    cleanup.push(() => hc.close());
    const tcp = net.createServer((s) => s.end());
    await new Promise<void>((r) => tcp.listen(0, '127.0.1.72', () => r()));
    const port = (tcp.address() as net.AddressInfo).port;
    expect(await hc.probe(spec({ type: 'tcp', address: { address: '127.0.1.72', port, family: 4 } }))).toBe('up');
    await new Promise<void>((r) => tcp.close(() => r()));
    expect(await hc.probe(spec({ type: 'tcp', address: { address: '127.0.1.72', port, family: 4 } }))).toBe('failed');
    let status = 200;
    const web = http.createServer((_q, s) => {
      s.writeHead(status);
      s.end();
    });
    await new Promise<void>((r) => web.listen(0, '127.0.1.72', () => r()));
    cleanup.push(() => new Promise((r) => web.close(r)));
    const url = `http://127.0.1.72:${(web.address() as net.AddressInfo).port}/health`;
    expect(await hc.probe(spec({ type: 'http', url }))).toBe('up');
    status = 503;
    expect(await hc.probe(spec({ type: 'http', url }))).toBe('failed');
  });

  it('the state machine: drain and probe loss never take CID-routed traffic away before the grace', () => {
    const rules = { rise: 2, fall: 3, downGraceMs: 1000 };
    /** Feeds `results` (u = up, d = draining, f = failed; one per 100 ms) from `start`; returns the states seen. */
    const run = (start: BackendState, results: string): BackendState[] => {
      const streaks = { answers: 0, ups: 0, failures: 0 };
      let state = start;
      let since = 0;
      const seen: BackendState[] = [];
      [...results].forEach((r, i) => {
        const now = (i + 1) * 100;
        const result: ProbeResult = r === 'u' ? 'up' : r === 'd' ? 'draining' : 'failed';
        const next = nextState(state, since, streaks, rules, result, now);
        if (next !== state) since = now;
        state = next;
        seen.push(state);
      });
      return seen;
    };
    const letter: Record<BackendState, string> = { up: 'U', draining: 'D', unreachable: 'X', down: 'N' };
    const short = (xs: BackendState[]): string => xs.map((x) => letter[x]).join('');
    // up: one draining answer drains at once; back up after `rise` up answers.
    expect(short(run('up', 'duuu'))).toBe('DDUU');
    // up: `fall` failures -> unreachable at 300 ms; down at the first failure 1000 ms after that (1300 ms).
    expect(short(run('up', 'fffffffffffffff'))).toBe('UU' + 'X'.repeat(10) + 'NNN');
    // a lost probe or two never changes anything.
    expect(short(run('up', 'uffuffuffu'))).toBe('UUUUUUUUUU');
    // draining + probe loss: unreachable (still CID-routed), then a draining answer -> draining again.
    expect(short(run('draining', 'fffd'))).toBe('DDXD');
    // unreachable answering "up" needs `rise` answers; down needs `rise` answers of either kind.
    expect(short(run('unreachable', 'uu'))).toBe('XU');
    expect(run('down', 'd')).toEqual(['down']);
    expect(run('down', 'dd')).toEqual(['down', 'draining']);
    expect(run('down', 'uu')).toEqual(['down', 'up']);
    // a zero grace is the old behaviour: down at `fall` failures.
    const streaks = { answers: 0, ups: 0, failures: 2 };
    expect(nextState('up', 0, streaks, { ...rules, downGraceMs: 0 }, 'failed', 100)).toBe('down');
  });

  it('hysteresis: unreachable after `fall` failures, up after `rise` successes, one change event each', async () => {
    const sink = await Sink.start('127.0.1.73');
    cleanup.push(() => sink.close());
    const changes: BackendState[] = [];
    const at: { ok: number; failed: number }[] = [];
    const hc: HealthChecker = new HealthChecker({
      logger: silent,
      onChange: (v) => {
        changes.push(v.get('x')!);
        const st = hc.states().get('x')!;
        at.push({ ok: st.checksOk, failed: st.checksFailed });
      },
    });
    cleanup.push(() => hc.close());
    const config = validateConfig(
      configDoc({
        backends: [
          {
            name: 'x',
            address: `127.0.1.73:${sink.port}`,
            health: { type: 'udp', intervalMs: 30, timeoutMs: 200, rise: 2, fall: 3 },
          },
        ],
        quicLb: [],
      }),
    );
    hc.configure(config);
    await waitFor('probes ok', () => hc.states().get('x')!.checksOk >= 3, 3000);
    expect(changes).toEqual([]);
    const failedBefore = hc.states().get('x')!.checksFailed;
    sink.healthy = false;
    await waitFor('unreachable', () => changes.length === 1, 3000);
    expect(changes).toEqual(['unreachable']);
    expect(at[0].failed - failedBefore).toBe(3); // exactly `fall` failures
    sink.healthy = true;
    await waitFor('up', () => changes.length === 2, 3000);
    expect(changes).toEqual(['unreachable', 'up']);
    expect(at[1].ok - at[0].ok).toBe(2); // exactly `rise` successes
    expect(hc.view().get('x')).toBe('up');
  });
});

describe('startLoadBalancer() in-process', () => {
  it('starts from a config object, forwards, reloads, and releases its ports on close()', async () => {
    const sink = await Sink.start('127.0.1.74');
    cleanup.push(() => sink.close());
    const doc = configDoc({
      listen: ['127.0.1.7:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 1),
      backends: [{ name: 'a', address: sink.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
      metrics: { listen: '127.0.1.7:0' },
    });
    const lb = await startLoadBalancer(validateConfig(doc), { logger: silent });
    const { vips, metrics } = lb.addresses();
    expect(vips[0].port).toBeGreaterThan(0);
    const client = await Client.start('127.0.1.75');
    cleanup.push(() => client.close());
    client.send(shortHeader(cid(0, SIDS.a[0])), vips[0]);
    await waitFor('forwarded', () => sink.received.length === 1, 3000);
    expect(sink.received[0].client).toBe('127.0.1.75');
    expect(await lb.metricsText()).toContain('quic_lb_received_packets_total{reason="routed"} 1');
    const r = await lb.reload(); // no file: a counted failure, config unchanged
    expect(r.ok).toBe(false);
    const res = await fetch(`http://${metrics!.address}:${metrics!.port}/healthz`);
    expect(res.status).toBe(200);
    await lb.close();
    // Ports are free again: bind the same VIP port.
    const again = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(vips[0].port, vips[0].address, () => resolve());
    });
    again.close();
  });
});

describe('reload of restart-only fields', () => {
  it('applies the rest, keeps the running sockets and flags the restart', async () => {
    const sink = await Sink.start('127.0.1.77');
    cleanup.push(() => sink.close());
    const file = path.join(dir, 'restart.yaml');
    const doc = configDoc({
      listen: ['127.0.1.7:0'],
      quicLb: QUIC_LB_SPECS.slice(0, 1),
      backends: [{ name: 'a', address: sink.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
    });
    writeFileSync(file, JSON.stringify(doc));
    const lb = await startLoadBalancer(file, { logger: silent, watch: false });
    cleanup.push(() => lb.close());
    const vip = lb.addresses().vips[0];
    // New VIP and workers (restart-only) plus a new server ID (applied).
    writeFileSync(
      file,
      JSON.stringify({
        ...doc,
        listen: ['127.0.1.7:20777'],
        workers: 2,
        backends: [{ ...(doc.backends as object[])[0], serverIds: { 0: [SIDS.a[0], '0777'] } }],
      }),
    );
    const r = await lb.reload();
    expect(r.ok).toBe(true);
    expect(r.restartRequired).toEqual(['/listen', '/workers']);
    expect(lb.addresses().vips[0]).toEqual(vip);
    expect(lb.currentConfig().workers).toBe(1);
    expect(await lb.metricsText()).toContain('quic_lb_config_restart_required 1');
    const client = await Client.start('127.0.1.78');
    cleanup.push(() => client.close());
    client.send(shortHeader(cid(0, '0777')), vip);
    await waitFor('new server ID routed after the reload', () => sink.received.length === 1, 3000);
  });
});

describe('IPv6 VIP', () => {
  it('forwards from [::1] with an AF_INET6 PROXY header and returns from the v6 VIP', async () => {
    const sink = await Sink.start('127.0.1.76');
    cleanup.push(() => sink.close());
    const config = validateConfig(
      configDoc({
        listen: ['[::1]:0'],
        quicLb: QUIC_LB_SPECS.slice(0, 1),
        backends: [{ name: 'a', address: sink.endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
        returnPath: { listen: '127.0.1.7:0' },
      }),
    );
    const lb = await startLoadBalancer(config, { logger: silent });
    cleanup.push(() => lb.close());
    const vip = lb.addresses().vips[0];
    expect(vip.family).toBe(6);
    const client = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    const got: Buffer[] = [];
    client.on('message', (m, r) => {
      if (r.address === '::1' && r.port === vip.port) got.push(m);
    });
    await new Promise<void>((r) => client.bind(0, '::1', () => r()));
    cleanup.push(() => client.close());
    client.send(shortHeader(cid(0, SIDS.a[0])), vip.port, '::1');
    client.send(shortHeader(Buffer.from('e7000102030405060708', 'hex')), vip.port, '::1');
    await waitFor('v6 datagrams forwarded', () => sink.received.length === 2, 3000);
    for (const r of sink.received) {
      expect(r.client).toBe('::1');
      expect(r.clientPort).toBe(client.address().port);
      expect(r.vip).toBe('::1');
      expect(r.vipPort).toBe(vip.port);
    }
    const ret = lb.addresses().returnPort!;
    sink.reply(
      ret,
      { address: '::1', port: vip.port },
      { address: '::1', port: client.address().port },
      Buffer.from('v6-reply'),
    );
    await waitFor('v6 reply from the VIP', () => got.length === 1, 3000);
    expect(got[0].toString()).toBe('v6-reply');
  });
});

describe('quic-lb route', () => {
  const file = path.join(dir, 'route.yaml');
  writeFileSync(file, JSON.stringify(configDoc()));
  it('names the backend of a CID and the reason', () => {
    const r = runCli(['route', '--config', file, '--cid', cid(2, SIDS.c[2]).toString('hex')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('backend: c 127.0.1.12:20010');
    expect(r.stdout).toContain('reason: routed');
    expect(r.stdout).toContain('config id: 2, server id: c3c3c3');
  });
  it('--down applies the backend_down policy; bad input is a usage error', () => {
    const r = runCli(['route', '--config', file, '--cid', cid(2, SIDS.c[2]).toString('hex'), '--down', 'c', '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ reason: 'fallback_backend_down', configId: 2 });
    expect(runCli(['route', '--config', file, 'zz']).status).toBe(2);
    expect(runCli(['route', '--config', file, '--cid', '00', '--down', 'nobody']).status).toBe(2);
    expect(runCli(['route', '--config', file, '', '--json']).stdout).toContain('dropped_malformed');
  });
  it('takes 1..20 octets as a CID and longer input as a datagram (--datagram forces it)', () => {
    const c = cid(0, SIDS.b[0]).toString('hex');
    expect(JSON.parse(runCli(['route', '--config', file, c, '--json']).stdout)).toMatchObject({
      input: 'cid',
      backend: 'b',
      reason: 'routed',
    });
    const dg = shortHeader(cid(0, SIDS.d[0])).toString('hex');
    expect(JSON.parse(runCli(['route', '--config', file, dg, '--json']).stdout)).toMatchObject({
      input: 'datagram',
      backend: 'd',
      reason: 'routed',
    });
    // 9 octets as a datagram: a short header whose CID is cut short.
    expect(JSON.parse(runCli(['route', '--config', file, c, '--datagram', '--json']).stdout)).toMatchObject({
      input: 'datagram',
      reason: 'fallback_too_short',
    });
  });
});

describe('README lb section', () => {
  it('its config example passes check-config', () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('<!-- section:lb -->'), readme.indexOf('<!-- /section:lb -->'));
    const yaml = section.slice(section.indexOf('```yaml') + 7, section.indexOf('```', section.indexOf('```yaml') + 7));
    const d = path.join(dir, 'readme');
    mkdirSync(path.join(d, 'keys'), { recursive: true });
    for (const k of ['c0', 'fallback']) writeFileSync(path.join(d, 'keys', `${k}.hex`), FALLBACK_KEY);
    writeFileSync(path.join(d, 'keys', 'return.hex'), '55'.repeat(32));
    writeFileSync(path.join(d, 'lb.yaml'), yaml);
    const r = runCli(['check-config', path.join(d, 'lb.yaml')]);
    expect(r.status, r.stderr).toBe(0);
    const route = runCli(['route', '--config', path.join(d, 'lb.yaml'), '--cid', '0800011f262d343b42', '--json']);
    expect(route.status, route.stderr).toBe(0);
    expect(['edge-a', 'edge-b']).toContain(JSON.parse(route.stdout).backend);
  });
});
