// deploy/config/anycast.yaml, the server topology's example config (docs/anycast.md): the project's
// own loader accepts it with the key files deploy/README.md makes, its `anycast` thresholds have
// a hysteresis band, and the routing it describes holds with the real decide() (`quic-lb route`):
// each server's CIDs go to its unicast address, a first flight is placed by the fallback, and a
// withdrawn (draining) server leaves the fallback but keeps its CID-routed datagrams. Needs dist/.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, runCli } from '../helpers/cli.js';
import { anycastEtc, anycastExample, checkAnycastConfig } from './anycast.js';
import { deployDir } from './proc.js';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-anycast-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function route(config: string, args: string[]): Any {
  const r = runCli(['route', '--config', config, '--json', ...args]);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Any;
}

/** A client's first Initial (RFC 9000 §17.2.2, 1200 octets, §14.1) with an 8-octet client-chosen DCID. */
function initialHex(): string {
  const b = Buffer.alloc(1200);
  b[0] = 0xc3; // long header, fixed bit, type Initial, 4-octet packet number
  b.writeUInt32BE(1, 1); // QUIC v1
  b[5] = 8;
  Buffer.from('c0ffee0123456789', 'hex').copy(b, 6);
  // SCID length 0, token length 0, then a 2-octet Length varint for the rest.
  b.writeUInt16BE(0x4000 | (1200 - 18), 16);
  return b.toString('hex');
}

describe('deploy/config/anycast.yaml', () => {
  let doc: Any;
  let loadable: string;
  let resolved: Any;
  beforeAll(() => {
    doc = parse(readFileSync(anycastExample, 'utf8')) as Any;
    loadable = anycastEtc(path.join(work, 'etc'));
    resolved = checkAnycastConfig(loadable);
  });

  it('is a server topology: three servers on one VIP, replies from the VIP, signed peer traffic, probes between servers', () => {
    expect(doc.backends).toHaveLength(3);
    const vips = (doc.listen as string[]).map((l) => l.replace(/:\d+$/, ''));
    const addresses = (doc.backends as Any[]).map((b) => b.address as string);
    expect(new Set(addresses).size).toBe(3);
    // A server's own address is not the VIP: it is where the connection moves (preferred_address).
    for (const a of addresses) expect(vips).not.toContain(a.replace(/:\d+$/, ''));
    expect(doc.returnPath).toMatchObject({ mode: 'direct', signForward: true });
    expect(doc.returnPath.hmacKeyFile).toBeTruthy();
    expect(doc.returnPath.listen).toBeUndefined();
    expect(doc.health.type).toBe('udp');
    // /healthz on each server's loopback, where vip-health.sh polls it.
    expect(doc.metrics.listen).toMatch(/^127\./);
  });

  it('the anycast section: every limit on, with a hysteresis band; the loader refuses a resume level over its limit', () => {
    const a = resolved.anycast.announce as Any;
    expect(resolved.anycast.forward).toBe(true);
    for (const [max, resume] of [
      ['maxConnections', 'resumeConnections'],
      ['maxEventLoopDelayMs', 'resumeEventLoopDelayMs'],
      ['maxCpu', 'resumeCpu'],
    ]) {
      expect(a[max], max).toBeGreaterThan(0);
      expect(a[resume], resume).toBeLessThan(a[max] as number);
    }
    // CPU is per core: the event loop runs on one, so a limit above 1 could never be reached.
    expect(a.maxCpu).toBeLessThanOrEqual(1);
    expect(a.announceAfter).toBeGreaterThanOrEqual(a.withdrawAfter as number);
    // The same file with the CPU band inverted, and without returnPath.mode: direct.
    const text = readFileSync(loadable, 'utf8');
    const bad = path.join(path.dirname(loadable), 'bad.yaml');
    writeFileSync(bad, text.replace(/resumeCpu: [\d.]+/, `resumeCpu: ${a.maxCpu + 0.05}`));
    expect(JSON.parse(runCli(['check-config', bad, '--json']).stdout)).toMatchObject({
      ok: false,
      code: 'ERR_CONFIG_VALUE',
      field: '/anycast/announce/resumeCpu',
    });
    writeFileSync(bad, text.replace('mode: direct, ', 'mode: via-lb, listen: "127.0.0.1:4440", '));
    expect(JSON.parse(runCli(['check-config', bad, '--json']).stdout)).toMatchObject({
      ok: false,
      code: 'ERR_CONFIG_VALUE',
      field: '/returnPath/mode',
    });
  });

  it("each server's CIDs route to its unicast address; a draining server leaves the fallback and keeps its CIDs", () => {
    for (const b of doc.backends as Any[]) {
      const enc = runCli([
        'cid',
        'encode',
        '--config',
        loadable,
        '--config-id',
        '0',
        '--server-id',
        b.serverIds[0],
        '--json',
      ]);
      expect(enc.status, enc.stderr).toBe(0);
      const cid = (JSON.parse(enc.stdout) as { cid: string }).cid;
      expect(route(loadable, ['--cid', cid])).toMatchObject({ backend: b.name, address: b.address, reason: 'routed' });
      // Withdrawn (its probes answer DRAINING): CID-routed datagrams still reach it.
      expect(route(loadable, ['--cid', cid, '--draining', b.name])).toMatchObject({
        backend: b.name,
        reason: 'routed',
      });
    }
    // A first flight is placed by the fallback hash of its 4-tuple; draining its server moves it.
    const initial = initialHex();
    const clientOf = new Map<string, string>(); // server -> a client address whose first flight it owns
    for (let port = 50000; port < 50040 && clientOf.size < 3; port++) {
      const d = route(loadable, ['--datagram', initial, '--from', `192.0.2.1:${port}`]);
      expect(d.reason).toBe('fallback_initial');
      if (!clientOf.has(d.backend as string)) clientOf.set(d.backend as string, `192.0.2.1:${port}`);
    }
    // Three equal servers: each owns about a third of the 4-tuples (missing one: p = 3 * (2/3)^40).
    expect(clientOf.size).toBe(3);
    for (const [owner, from] of clientOf) {
      const d = route(loadable, ['--datagram', initial, '--from', from, '--draining', owner]);
      expect(d.reason).toBe('fallback_initial');
      expect(d.backend).not.toBe(owner);
    }
  });
});

describe('docs/anycast.md and the deploy READMEs', () => {
  const docs = {
    'docs/anycast.md': readFileSync(path.join(repoRoot, 'docs', 'anycast.md'), 'utf8'),
    'deploy/README.md': readFileSync(path.join(deployDir, 'README.md'), 'utf8'),
    'deploy/bird/README.md': readFileSync(path.join(deployDir, 'bird', 'README.md'), 'utf8'),
  };
  /** The contract's metric names and withdraw reasons (common to the server mode and these pages). */
  const METRICS = [
    'quic_lb_anycast_announced',
    'quic_lb_anycast_withdrawn',
    'quic_lb_anycast_withdrawals_total',
    'quic_lb_anycast_datagrams_total',
    'quic_lb_anycast_peer_received_total',
    'quic_lb_anycast_active_connections',
    'quic_lb_anycast_event_loop_delay_seconds',
    'quic_lb_anycast_cpu_ratio',
  ];
  const REASONS = ['starting', 'draining', 'connections', 'event-loop-delay', 'cpu', 'self-check'];

  /** The server topology's part of a page: all of docs/anycast.md, the "Servers on the VIP" section of the others. */
  const serverPart = (name: string, text: string): string =>
    name === 'docs/anycast.md' ? text : (text.split('## Servers on the VIP')[1] ?? '').split('\n## ')[0];

  it('every relative link, and every deploy/ path the server topology parts name, exists', () => {
    for (const [name, text] of Object.entries(docs)) {
      const dir = path.dirname(path.join(repoRoot, name));
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(m[1])) continue;
        expect(existsSync(path.resolve(dir, m[1])), `${name}: link ${m[1]}`).toBe(true);
      }
      const part = serverPart(name, text);
      expect(part.length, `${name}: its server topology part`).toBeGreaterThan(500);
      for (const m of part.matchAll(/(?<![\w/.])(deploy\/[\w./@-]*\w)/g))
        expect(existsSync(path.join(repoRoot, m[1])), `${name}: ${m[1]}`).toBe(true);
    }
    // README.md and deploy/README.md link the guide.
    expect(readFileSync(path.join(repoRoot, 'README.md'), 'utf8')).toContain('](docs/anycast.md)');
    expect(docs['deploy/README.md']).toContain('](../docs/anycast.md)');
  });

  it("names only the contract's metrics, every withdraw reason, and the test behind every figure", () => {
    const text = Object.values(docs).join('\n');
    const named = new Set([...text.matchAll(/\bquic_lb_anycast_\w+/g)].map((m) => m[0]));
    expect([...named].filter((n) => !METRICS.includes(n))).toEqual([]);
    for (const m of METRICS) expect(docs['deploy/README.md'], m).toContain(m);
    const table = [...docs['docs/anycast.md'].matchAll(/^\| `([a-z-]+)` \| /gm)].map((m) => m[1]);
    expect(table).toEqual(REASONS);
    // Every figure is filled in (no placeholder left) and names the namespace test that measures it.
    expect(text).not.toMatch(/<!-- figure:/);
    for (const proof of ['spread', 'churn', 'overload', 'kill']) {
      expect(docs['docs/anycast.md'] + docs['deploy/bird/README.md'], proof).toMatch(
        new RegExp(`test/netns/anycast-${proof}\\.test\\.ts`),
      );
    }
  });
});
