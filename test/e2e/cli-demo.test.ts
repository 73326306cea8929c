// `quic-lb demo backend` refuses bad input with one clear line and exit code 2 (no stack trace).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { configYaml, readEvents, startCli, stop } from './fleet.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-cli-demo-'));
const file = path.join(dir, 'lb.yaml');
writeFileSync(
  file,
  configYaml(
    {
      vip: { address: '127.0.2.90', port: 25900 },
      metricsPort: 25902,
      quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: '00112233445566778899aabbccddeeff' }],
      backends: [
        { name: 'a', address: '127.0.2.91', port: 25905, serverIds: { 0: '0001' } },
        { name: 'nosid', address: '127.0.2.92', port: 25905, serverIds: {} },
      ],
    },
    'ffeeddccbbaa99887766554433221100',
  ),
);

describe('quic-lb demo backend: errors', () => {
  it('an unknown backend name', () => {
    const r = runCli(['demo', 'backend', '--config', file, '--name', 'zzz']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^quic-lb: --name: no backend 'zzz' in the config \(have: a, nosid\)\n$/);
  });
  it('a backend without server IDs (it could only mint unroutable CIDs)', () => {
    const r = runCli(['demo', 'backend', '--config', file, '--name', 'nosid']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("backend 'nosid' has no serverIds");
  });
  it('a config id the backend has no server ID for', () => {
    const r = runCli(['demo', 'backend', '--config', file, '--name', 'a', '--config-id', '3']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--config-id');
  });
  it('an invalid config file reports the LB config error code and field', () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'listen: []\n');
    const r = runCli(['demo', 'backend', '--config', bad, '--name', 'a']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('ERR_CONFIG_REQUIRED');
    expect(r.stderr).not.toContain('    at ');
  });

  it('--no-preferred: the backend advertises no preferred_address', async () => {
    const log = path.join(dir, 'np.jsonl');
    const p = await startCli(['demo', 'backend', '--config', file, '--name', 'a', '--no-preferred', '--event-log', log]);
    try {
      const started = readEvents(log).find((e) => e.event === 'backend-started');
      expect(started?.preferred).toBeNull();
      const p2 = await startCli(['demo', 'backend', '--config', file, '--name', 'a', '--listen', '127.0.2.93:25906', '--preferred', '127.0.2.94:25907', '--event-log', log]);
      await stop(p2);
      const second = readEvents(log).filter((e) => e.event === 'backend-started')[1];
      expect(second?.listen).toBe('127.0.2.93:25906');
      expect(second?.preferred).toBe('127.0.2.94:25907');
    } finally {
      await stop(p);
    }
  });
});
