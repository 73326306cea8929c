// `quic-lb demo backend` refuses bad input with one clear line and exit code 2 (no stack trace).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { configYaml, readEvents } from './stack.js';
import { startCli, stop } from '../helpers/process.js';
import { startDemoBackend } from '../../src/demo/index.js';
import { parseConfig } from '../../src/lb/index.js';
import { createConfig, decodeServerId } from '../../src/cid/index.js';

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
  it('--cert without --key', () => {
    const r = runCli(['demo', 'backend', '--config', file, '--name', 'a', '--cert', path.join(dir, 'cert.pem')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('quic-lb: --cert and --key go together: give both\n');
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
    const p = await startCli([
      'demo',
      'backend',
      '--config',
      file,
      '--name',
      'a',
      '--no-preferred',
      '--allow-lb',
      '127.0.0.1',
      '--event-log',
      log,
    ]);
    try {
      const started = readEvents(log).find((e) => e.event === 'backend-started');
      expect(started?.preferred).toBeNull();
      const p2 = await startCli([
        'demo',
        'backend',
        '--config',
        file,
        '--name',
        'a',
        '--listen',
        '127.0.2.93:25906',
        '--preferred',
        '127.0.2.94:25907',
        '--allow-lb',
        '127.0.0.1',
        '--event-log',
        log,
      ]);
      await stop(p2);
      const second = readEvents(log).filter((e) => e.event === 'backend-started')[1];
      expect(second?.listen).toBe('127.0.2.93:25906');
      expect(second?.preferred).toBe('127.0.2.94:25907');
    } finally {
      await stop(p);
    }
  });

  it('SIGHUP semantics (applyConfig): a new codepoint is added and activated; a codepoint redefined in place is replaced', async () => {
    const base = {
      vip: { address: '127.0.2.90', port: 25910 },
      metricsPort: 25912,
      backends: [{ name: 'a', address: '127.0.2.95', port: 25915, serverIds: { 0: '0001', 1: '000101' } }],
    };
    const k0 = '00112233445566778899aabbccddeeff';
    const k0b = 'ffeeddccbbaa99887766554433221100';
    const k1 = '0f0e0d0c0b0a09080706050403020100';
    const fb = '11111111111111111111111111111111';
    const one = parseConfig(
      configYaml(
        {
          ...base,
          backends: [{ ...base.backends[0], serverIds: { 0: '0001' } }],
          quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: k0 }],
        },
        fb,
      ),
    );
    const running = await startDemoBackend(one, { name: 'a', allowLb: ['127.0.0.1'] });
    try {
      const decodes = (key: string, id: number, sidLen: number, sid: string): boolean => {
        const c = createConfig({ configId: id, serverIdLength: sidLen, nonceLength: 6, key: Buffer.from(key, 'hex') });
        return Buffer.from(decodeServerId(c, running.encoder.generate()) ?? []).toString('hex') === sid;
      };
      expect(decodes(k0, 0, 2, '0001')).toBe(true);
      // Same file: nothing changes.
      expect(running.applyConfig(one)).toEqual({ activeConfigId: 0, reissued: 0, hmacKeys: 0, retryKeys: 0 });
      // Codepoint 0 redefined with a new key: replaced, CIDs follow the new key.
      const redefined = parseConfig(
        configYaml(
          {
            ...base,
            backends: [{ ...base.backends[0], serverIds: { 0: '0001' } }],
            quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: k0b }],
          },
          fb,
        ),
      );
      expect(running.applyConfig(redefined).activeConfigId).toBe(0);
      expect(decodes(k0b, 0, 2, '0001')).toBe(true);
      // A new codepoint at the end of the file becomes the active one.
      const two = parseConfig(
        configYaml(
          {
            ...base,
            quicLb: [
              { configId: 0, serverIdLength: 2, nonceLength: 6, key: k0b },
              { configId: 1, serverIdLength: 3, nonceLength: 6, key: k1 },
            ],
          },
          fb,
        ),
      );
      expect(running.applyConfig(two).activeConfigId).toBe(1);
      expect(decodes(k1, 1, 3, '000101')).toBe(true);
    } finally {
      await running.close();
    }
  });
});
