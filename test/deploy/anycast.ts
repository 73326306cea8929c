// Helpers of the server-topology deploy tests (deploy/config/anycast.yaml, docs/anycast.md): the
// example's /etc/quic-lb and its check with the project's loader.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { parse } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { deployDir } from './proc.js';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const anycastExample = path.join(deployDir, 'config', 'anycast.yaml');

/**
 * /etc/quic-lb of a server as deploy/README.md makes it, under `dir`: the example config and the
 * key files it names plus the stateless-reset key, made with `quic-lb keygen`, mode 0600.
 * Returns the config file's path.
 */
export function anycastEtc(dir: string): string {
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  copyFileSync(anycastExample, path.join(dir, 'config.yaml'));
  for (const [name, octets] of [
    ['quic-lb-0', 16],
    ['fallback', 16],
    ['return-hmac', 32],
    ['reset', 32],
  ] as const) {
    const file = path.join(dir, 'keys', `${name}.hex`);
    writeFileSync(file, runCli(['keygen', '--octets', String(octets)]).stdout);
    chmodSync(file, 0o600);
  }
  return path.join(dir, 'config.yaml');
}

/**
 * `check-config --json` on `file` (by `cli`: the checkout's CLI unless given): it must pass, and
 * its `anycast` section must load as written. Returns the resolved config.
 */
export function checkAnycastConfig(
  file: string,
  cli: (args: string[]) => { status: number | null; stdout: string; stderr: string } = runCli,
): Any {
  const r = cli(['check-config', file, '--json']);
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout) as Any;
  expect(out).toMatchObject({ ok: true });
  expect(r.status).toBe(0);
  const written = (parse(readFileSync(file, 'utf8')) as Any).anycast as Any;
  expect(out.config.anycast).toMatchObject(written);
  return out.config as Any;
}
