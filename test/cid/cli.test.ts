// `quic-lb cid encode|decode`, `quic-lb keygen` and `quic-lb retry-key` through the built CLI (dist/cli.js; npm test builds first).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { parseRetryTokenKey } from '../../src/wire/index.js';

const KEY = '8f95f09245765f80256934e50c66207f';
const flags = (id: number, s: number, n: number, key?: string): string[] => [
  '--config-id',
  String(id),
  '--server-id-length',
  String(s),
  '--nonce-length',
  String(n),
  ...(key ? ['--key', key] : []),
];
const dir = mkdtempSync(path.join(os.tmpdir(), 'quic-lb-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ok(args: string[]): string {
  const r = runCli(args);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

function bad(args: string[], pattern: RegExp): void {
  const r = runCli(args);
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe('quic-lb cid encode', () => {
  it('reproduces draft-21 B.2 vectors (four-pass and single-pass)', () => {
    expect(ok(['cid', 'encode', ...flags(0, 3, 4, KEY), '--server-id', 'ed793a', '--nonce', 'ee080dbf'])).toBe(
      '0720b1d07b359d3c\n',
    );
    expect(
      ok(['cid', 'encode', ...flags(2, 8, 8, KEY), '--server-id', 'ed793a51d49b8f5f', '--nonce', 'ee080dbf48c0d1e5']),
    ).toBe('504dd2d05a7b0de9b2b9907afb5ecf8cc3\n');
  });

  it('--json reports the fields; without --nonce a random nonce is used', () => {
    const j = JSON.parse(
      ok(['cid', 'encode', ...flags(1, 10, 5, KEY), '--server-id', 'ed793a51d49b8f5fab65', '--json']),
    );
    expect(j).toMatchObject({ configId: 1, algorithm: 'four-pass', length: 16, serverId: 'ed793a51d49b8f5fab65' });
    expect(j.nonce).toMatch(/^[0-9a-f]{10}$/);
    expect(j.cid).toMatch(/^2f[0-9a-f]{30}$/);
    const back = ok(['cid', 'decode', ...flags(1, 10, 5, KEY), j.cid]);
    expect(back).toBe('ed793a51d49b8f5fab65\n');
  });

  it('plaintext without a key, --no-self-encode-length', () => {
    expect(
      ok([
        'cid',
        'encode',
        ...flags(2, 3, 4),
        '--no-self-encode-length',
        '--server-id',
        '010203',
        '--nonce',
        '0x04050607',
      ]),
    ).toBe('4001020304050607\n');
  });

  it('clear errors with exit code 2: bad hex, bad lengths, bad key, bad config', () => {
    bad(
      ['cid', 'encode', ...flags(0, 3, 4, KEY), '--server-id', 'ed79zz', '--nonce', 'ee080dbf'],
      /--server-id: not hex/,
    );
    bad(
      ['cid', 'encode', ...flags(0, 3, 4, KEY), '--server-id', 'ed793', '--nonce', 'ee080dbf'],
      /--server-id: odd number of hex digits/,
    );
    bad(
      ['cid', 'encode', ...flags(0, 3, 4, KEY), '--server-id', 'ed79', '--nonce', 'ee080dbf'],
      /--server-id: 2 octets given, config 0 needs 3/,
    );
    bad(
      ['cid', 'encode', ...flags(0, 3, 4, KEY), '--server-id', 'ed793a', '--nonce', 'ee08'],
      /--nonce: 2 octets given, config 0 needs 4/,
    );
    bad(['cid', 'encode', ...flags(0, 3, 4, 'abcd'), '--server-id', 'ed793a'], /--key: ERR_KEY/);
    bad(['cid', 'encode', ...flags(0, 3, 4, 'xyz1'), '--server-id', 'ed793a'], /--key: not hex/);
    bad(['cid', 'encode', ...flags(7, 3, 4), '--server-id', 'ed793a'], /--config-id: ERR_CONFIG_ID/);
    bad(['cid', 'encode', ...flags(0, 3, 3), '--server-id', 'ed793a'], /--nonce-length: ERR_NONCE_LENGTH/);
    bad(['cid', 'encode', ...flags(0, 10, 10), '--server-id', 'ed793a'], /ERR_PLAINTEXT_LENGTH/);
    bad(['cid', 'encode', '--server-id', 'ed793a'], /--config-id is required/);
    bad(['cid', 'decode', ...flags(0, 3, 4), 'nothex'], /cid: not hex/);
    bad(['cid', 'encode', '--config', path.join(dir, 'missing.yaml'), '--server-id', 'ed'], /--config: cannot read/);
  });
});

describe('quic-lb cid decode', () => {
  it('decodes with flags, ignores extra octets, reports unroutable CIDs with a reason', () => {
    expect(ok(['cid', 'decode', ...flags(0, 3, 4, KEY), '0720b1d07b359d3c'])).toBe('ed793a\n');
    expect(ok(['cid', 'decode', ...flags(0, 8, 8, KEY), '004dd2d05a7b0de9b2b9907afb5ecf8cc3da41'])).toBe(
      'ed793a51d49b8f5f\n',
    );
    expect(ok(['cid', 'decode', ...flags(0, 3, 4), 'e001020304050607'])).toBe('unroutable: reserved codepoint 0b111\n');
    expect(ok(['cid', 'decode', ...flags(0, 3, 4), '00010203040506'])).toBe(
      'unroutable: too short: 7 octets, config 0 needs 8\n',
    );
    expect(JSON.parse(ok(['cid', 'decode', ...flags(1, 3, 4), '0001020304050607', '--json']))).toEqual({
      routable: false,
      reason: 'no config for codepoint 0',
      configId: 0,
    });
  });

  it('reads the LB config file (quicLb list, keyFile) and picks the config by codepoint', () => {
    writeFileSync(path.join(dir, 'k1.hex'), `${KEY}\n`);
    const file = path.join(dir, 'lb.yaml');
    writeFileSync(
      file,
      [
        'quicLb:',
        '  - { configId: 0, serverIdLength: 3, nonceLength: 4, key: ' + KEY + ' }',
        '  - { configId: 1, serverIdLength: 10, nonceLength: 5, keyFile: k1.hex }',
        '  - { configId: 2, serverIdLength: 3, nonceLength: 4 }',
        'backends: []',
      ].join('\n'),
    );
    expect(ok(['cid', 'decode', '--config', file, '0720b1d07b359d3c'])).toBe('ed793a\n');
    expect(ok(['cid', 'decode', '--config', file, '2fcc381bc74cb4fbad2823a3d1f8fed2'])).toBe('ed793a51d49b8f5fab65\n');
    expect(JSON.parse(ok(['cid', 'decode', '--config', file, '4001020304050607', '--json']))).toMatchObject({
      routable: true,
      configId: 2,
      algorithm: 'plaintext',
      serverId: '010203',
    });
    expect(
      ok([
        'cid',
        'encode',
        '--config',
        file,
        '--config-id',
        '1',
        '--server-id',
        'ed793a51d49b8f5fab65',
        '--nonce',
        'ee080dbf48',
      ]),
    ).toBe('2fcc381bc74cb4fbad2823a3d1f8fed2\n');
    // The file holds the LB's view; the server-side length bits come from the flag.
    expect(
      ok(['cid', 'encode', '--config', file, '--config-id', '2', '--server-id', '010203', '--nonce', '04050607']),
    ).toBe('4701020304050607\n');
    expect(
      ok([
        'cid',
        'encode',
        '--config',
        file,
        '--config-id',
        '2',
        '--no-self-encode-length',
        '--server-id',
        '010203',
        '--nonce',
        '04050607',
      ]),
    ).toBe('4001020304050607\n');
    bad(['cid', 'encode', '--config', file, '--server-id', 'ed793a'], /several configs; choose one/);
    bad(
      ['cid', 'encode', '--config', file, '--config-id', '5', '--server-id', 'ed793a'],
      /--config-id 5: no such config/,
    );
    const broken = path.join(dir, 'broken.yaml');
    writeFileSync(broken, "quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, key: '0011' }\n");
    bad(['cid', 'decode', '--config', broken, '0720b1d07b359d3c'], /quicLb\[0\] key: ERR_KEY/);
    writeFileSync(broken, 'quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, key: 0011 }\n');
    bad(
      ['cid', 'decode', '--config', broken, '0720b1d07b359d3c'],
      /quicLb\[0\] key: expected a hex string, got number \(in YAML, quote/,
    );
    // Read as the LB reads it: what `serve` would refuse, cid refuses too.
    writeFileSync(broken, 'quicLb:\n  - { configId: 0, serverIdLength: 3, nonceLength: 4, sidLength: 3 }\n');
    bad(['cid', 'decode', '--config', broken, '0720b1d07b359d3c'], /quicLb\[0\] sidLength: unknown field/);
  });
});

describe('quic-lb keygen', () => {
  it('prints fresh 16-octet hex keys by default; --octets, --count, --json', () => {
    const a = ok(['keygen']).trim();
    const b = ok(['keygen']).trim();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(b);
    const j = JSON.parse(ok(['keygen', '--octets', '32', '--count', '3', '--json']));
    expect(j.keys).toHaveLength(3);
    for (const k of j.keys) expect(k).toMatch(/^[0-9a-f]{64}$/);
    // The key it prints is accepted by cid encode.
    expect(ok(['cid', 'encode', ...flags(0, 3, 4, a), '--server-id', '010203', '--nonce', '04050607'])).toMatch(
      /^07[0-9a-f]{14}\n$/,
    );
  });

  it('rejects bad lengths with exit code 2', () => {
    bad(['keygen', '--octets', '8'], /--octets: must be an integer 16\.\.64/);
    bad(['keygen', '--count', '0'], /--count: must be an integer 1\.\.100/);
  });
});

describe('quic-lb retry-key', () => {
  it('prints a key line the token codec reads; --out writes it 0600 and never overwrites', () => {
    const text = ok(['retry-key', '--sequence', '3']);
    const k = parseRetryTokenKey(text);
    expect(k.sequence).toBe(3);
    expect(text).toMatch(/^3 [0-9a-f]{32} [0-9a-f]{24}$/m);
    expect(parseRetryTokenKey(ok(['retry-key', '--sequence', '3'])).key).not.toEqual(k.key);
    const file = path.join(dir, 'retry-3.key');
    expect(ok(['retry-key', '--sequence', '3', '--out', file])).toBe('');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(parseRetryTokenKey(readFileSync(file, 'utf8')).sequence).toBe(3);
    bad(['retry-key', '--sequence', '3', '--out', file], /exists \(a key file is never overwritten\)/);
  });

  it('rejects a sequence outside 0..127 with exit code 2', () => {
    bad(['retry-key', '--sequence', '128'], /--sequence: must be an integer 0\.\.127/);
    bad(['retry-key', '--sequence', '-1'], /--sequence: must be an integer 0\.\.127/);
  });
});
