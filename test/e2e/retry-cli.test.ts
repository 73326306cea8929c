// `quic-lb demo backend --retry-key-file`: a file that does not load exits 2 naming the flag and
// the file; a key file others can read draws the mode warning; the flags win over the config's
// retry.keyFiles; SIGHUP re-reads the files (contents rotated) and a broken one keeps the running
// keys. Built CLI (dist/cli.js); address 127.0.7.50, ports 27290-27299 (no other test uses them).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatRetryTokenKey, generateRetryTokenKey } from '../../src/wire/index.js';
import { runCli } from '../helpers/cli.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-retry-cli-'));
let proc: Proc | undefined;
afterAll(async () => {
  await stop(proc);
  rmSync(dir, { recursive: true, force: true });
});

function keyFile(name: string, sequence: number, mode = 0o600): string {
  const f = path.join(dir, name);
  writeFileSync(f, formatRetryTokenKey(generateRetryTokenKey(sequence)), { mode });
  chmodSync(f, mode);
  return f;
}

/** An LB config with one backend b1 on 127.0.7.50:27291 and, optionally, a retry section. */
function config(name: string, retryKeyFiles?: string[]): string {
  const f = path.join(dir, name);
  writeFileSync(
    f,
    [
      "listen: ['127.0.7.50:27290']",
      "quicLb: [{ configId: 0, serverIdLength: 2, nonceLength: 6, key: '8f95f09245765f80256934e50c66207f' }]",
      "backends: [{ name: b1, address: '127.0.7.50:27291', serverIds: { '0': '0b01' } }]",
      "fallback: { key: '00112233445566778899aabbccddeeff' }",
      "returnPath: { mode: via-lb, listen: '127.0.7.50:27292' }",
      ...(retryKeyFiles
        ? [`retry: { mode: always, keyFiles: [${retryKeyFiles.map((k) => `'${k}'`).join(', ')}] }`]
        : []),
      '',
    ].join('\n'),
  );
  return f;
}

const backend = (cfg: string, ...more: string[]): string[] => [
  'demo',
  'backend',
  '--config',
  cfg,
  '--name',
  'b1',
  '--insecure-any-lb',
  ...more,
];

describe('quic-lb demo backend --retry-key-file', () => {
  it('a file that does not load: exit 2, one line naming the flag and the file', () => {
    const cfg = config('plain.yaml');
    const bad = path.join(dir, 'bad.key');
    writeFileSync(bad, '1 00112233\n', { mode: 0o600 });
    let r = runCli(backend(cfg, '--retry-key-file', bad));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`--retry-key-file: ${bad}: line 1: expected "<sequence> <key hex> <iv hex>"`);
    const missing = path.join(dir, 'missing.key');
    r = runCli(backend(cfg, '--retry-key-file', missing));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`--retry-key-file: cannot read ${missing}`);
    const dup = [keyFile('dup-a.key', 3), keyFile('dup-b.key', 3)];
    r = runCli(backend(cfg, '--retry-key-file', dup[0], '--retry-key-file', dup[1]));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--retry-key-file: .*sequence 3 appears twice/);
  });

  it('flags win over retry.keyFiles, warn on a readable file, and SIGHUP re-reads them', async () => {
    const current = keyFile('current.key', 4);
    const previous = keyFile('previous.key', 3, 0o644);
    const cfg = config('retry.yaml', [keyFile('config.key', 9)]);
    const events = path.join(dir, 'events.jsonl');
    proc = await startCli(
      backend(cfg, '--retry-key-file', current, '--retry-key-file', previous, '--event-log', events),
    );
    expect(proc.output()).toContain(`warning: key file ${previous} has mode 0644`);
    const started = JSON.parse(readFileSync(events, 'utf8').split('\n')[0]) as Record<string, unknown>;
    expect([started.event, started.retryKeys]).toEqual(['backend-started', 2]);

    // Rotation: the new key into current, the old one into previous; SIGHUP.
    writeFileSync(previous, readFileSync(current));
    writeFileSync(current, formatRetryTokenKey(generateRetryTokenKey(5)));
    process.kill(proc.pid, 'SIGHUP');
    await waitFor('reloaded', () => proc!.output().includes('2 Retry token keys'), 10_000);
    // A broken file: the reload is refused, the running keys stay.
    writeFileSync(current, 'garbage\n');
    process.kill(proc.pid, 'SIGHUP');
    await waitFor(
      'refused',
      () =>
        proc!
          .output()
          .includes(`reload failed, keeping the running config and keys: --retry-key-file: ${current}: line 1:`),
      10_000,
    );
    await stop(proc);
    proc = undefined;
  });
});
