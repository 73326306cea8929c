// Helpers of the server-topology deploy tests (deploy/config/anycast.yaml, docs/anycast.md): the
// example's /etc/quic-lb, its check with the project's loader, and the contract's rules for the
// `anycast` section.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { parse, stringify } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { deployDir } from './proc.js';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const anycastExample = path.join(deployDir, 'config', 'anycast.yaml');

/** The key files the example names, made with `quic-lb keygen` (mode 0600, as deploy/README.md says). */
export function anycastEtc(dir: string): string {
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  copyFileSync(anycastExample, path.join(dir, 'config.yaml'));
  for (const [name, octets] of [
    ['quic-lb-0', 16],
    ['fallback', 16],
    ['return-hmac', 32],
  ] as const) {
    const file = path.join(dir, 'keys', `${name}.hex`);
    writeFileSync(file, runCli(['keygen', '--octets', String(octets)]).stdout);
    chmodSync(file, 0o600);
  }
  return path.join(dir, 'config.yaml');
}

/**
 * `check-config --json` on `file` (by `cli`: the checkout's CLI unless given). Until the loader knows the `anycast` section (it is merged from
 * another branch), the only acceptable refusal is exactly that section being unknown: then the
 * file without it must pass, and `loadable` is that file, else the file itself.
 */
export function checkAnycastConfig(
  file: string,
  cli: (args: string[]) => { status: number | null; stdout: string; stderr: string } = runCli,
): { knowsAnycast: boolean; loadable: string } {
  const full = cli(['check-config', file, '--json']);
  expect(full.stderr).toBe('');
  const out = JSON.parse(full.stdout) as Any;
  if (out.ok === true) {
    expect(full.status).toBe(0);
    return { knowsAnycast: true, loadable: file };
  }
  expect(out).toMatchObject({ ok: false, code: 'ERR_CONFIG_UNKNOWN_FIELD', field: '/anycast' });
  const doc = parse(readFileSync(file, 'utf8')) as Any;
  delete doc.anycast;
  const stripped = path.join(path.dirname(file), 'without-anycast.yaml');
  writeFileSync(stripped, stringify(doc));
  const rest = cli(['check-config', stripped, '--json']);
  expect(rest.status, rest.stdout).toBe(0);
  expect(JSON.parse(rest.stdout)).toMatchObject({ ok: true });
  return { knowsAnycast: false, loadable: stripped };
}

/** The contract's rules for the `anycast` section (common to every server; docs/anycast.md). */
export function anycastSectionProblems(a: Any): string[] {
  const problems: string[] = [];
  const known = new Set(['forward', 'announce']);
  for (const k of Object.keys(a)) if (!known.has(k)) problems.push(`/anycast/${k}: unknown`);
  if (a.forward !== undefined && typeof a.forward !== 'boolean') problems.push('/anycast/forward: not a boolean');
  const n = (a.announce ?? {}) as Any;
  const fields = [
    'intervalMs',
    'withdrawAfter',
    'announceAfter',
    'maxConnections',
    'resumeConnections',
    'maxEventLoopDelayMs',
    'resumeEventLoopDelayMs',
    'maxCpu',
    'resumeCpu',
  ];
  for (const k of Object.keys(n)) if (!fields.includes(k)) problems.push(`/anycast/announce/${k}: unknown`);
  for (const k of fields)
    if (n[k] !== undefined && n[k] !== null && !(typeof n[k] === 'number' && n[k] >= 0))
      problems.push(`/anycast/announce/${k}: not a number >= 0`);
  for (const k of ['intervalMs', 'withdrawAfter', 'announceAfter'])
    if (n[k] !== undefined && !(Number.isInteger(n[k]) && n[k] >= 1))
      problems.push(`/anycast/announce/${k}: not an integer >= 1`);
  for (const [max, resume] of [
    ['maxConnections', 'resumeConnections'],
    ['maxEventLoopDelayMs', 'resumeEventLoopDelayMs'],
    ['maxCpu', 'resumeCpu'],
  ])
    if (typeof n[max] === 'number' && typeof n[resume] === 'number' && n[resume] > n[max])
      problems.push(`/anycast/announce/${resume}: must be <= ${max}`);
  return problems;
}
