// `datapath: xdp` where XDP cannot run (docs/xdp.md "When XDP is unavailable"): with
// `unavailable: fallback` quic-lb serve forwards on node:dgram alone and says why in
// quic_lb_xdp_state and /healthz; with `stop` it refuses to start (exit 2, ERR_XDP_UNAVAILABLE).
// A reload that changes the data path keeps the running one. Loopback only: no interface is
// attached to here (test/netns/quic-fleet-xdp.test.ts attaches in namespaces).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';
import { installYaml, startClient, startSinkFleet } from './net.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-xdp-unavailable-'));
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

/** No interface has this name (at most 15 octets, so the config accepts it). */
const NO_SUCH_INTERFACE = 'qlbnone0';

function doc(sinks: { endpoint: string }[], datapath: Record<string, unknown>): Record<string, unknown> {
  return {
    listen: ['127.0.13.1:0'],
    quicLb: QUIC_LB_SPECS.slice(0, 1),
    backends: [{ name: 'a', address: sinks[0].endpoint, serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } }],
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    metrics: { listen: '127.0.13.1:0' },
    log: { level: 'warn' },
    datapath,
  };
}

describe('datapath xdp, unavailable', () => {
  it('fallback: forwards on node:dgram, metrics and /healthz say unavailable and why; a reload keeps the data path', async () => {
    const file = path.join(dir, 'fallback.yaml');
    const xdp = { mode: 'xdp', interface: NO_SUCH_INTERFACE, attach: 'generic' };
    const f = await startSinkFleet(file, ['127.0.13.10'], (sinks) => doc(sinks, xdp), cleanup);
    const c = await startClient('127.0.13.20', cleanup);
    c.send(shortHeader(cid(0, SIDS.a[0])), f.lb.vip);
    await waitFor('the datagram at backend a', () => f.sinks[0].count === 1, 5000);
    let m = await f.metrics();
    expect(m.get(`quic_lb_xdp_state{state="unavailable",mode="",interface="${NO_SUCH_INTERFACE}"}`)).toBe(1);
    expect(m.get(`quic_lb_xdp_state{state="attached",mode="",interface="${NO_SUCH_INTERFACE}"}`)).toBe(0);
    expect(m.get('quic_lb_received_packets_total{reason="routed"}')).toBe(1);
    const healthz = await f.healthz();
    expect(healthz).toContain(
      `xdp: {"state":"unavailable","interface":"${NO_SUCH_INTERFACE}","reason":"no interface ${NO_SUCH_INTERFACE} in this network namespace"}`,
    );
    expect(f.lb.stderr).toContain('XDP unavailable: forwarding on node:dgram alone');

    // The data path is chosen at start: a reload to `node` is applied but for it.
    installYaml(file, doc(f.sinks, { mode: 'node' }));
    process.kill(f.lb.proc.pid as number, 'SIGHUP');
    await waitFor(
      'the reload',
      async () => ((await f.metrics()).get('quic_lb_config_reloads_total{outcome="success"}') ?? 0) >= 1,
      10_000,
    );
    m = await f.metrics();
    expect(m.get('quic_lb_config_restart_required')).toBe(1);
    expect(m.get(`quic_lb_xdp_state{state="unavailable",mode="",interface="${NO_SUCH_INTERFACE}"}`)).toBe(1);
  });

  it('stop: quic-lb serve exits 2 with ERR_XDP_UNAVAILABLE and the reason', () => {
    const file = path.join(dir, 'stop.yaml');
    installYaml(
      file,
      doc([{ endpoint: '127.0.13.10:9' }], { mode: 'xdp', interface: NO_SUCH_INTERFACE, unavailable: 'stop' }),
    );
    const r = runCli(['serve', '--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      `quic-lb: ERR_XDP_UNAVAILABLE: datapath xdp unavailable (datapath.unavailable: stop): no interface ${NO_SUCH_INTERFACE} in this network namespace`,
    );
    expect(r.stdout).not.toContain('"ready":true');
  });
});
