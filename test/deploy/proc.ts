// Helpers of the deploy tests: the example /etc/quic-lb of deploy/README.md, how long a
// graceful stop may take, and a systemd unit's directives.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, runCli } from '../helpers/cli.js';

/** `serve` and `demo backend` exit 0 after their drain: SIGKILL (`stop`'s deadline) only after this. */
export const GRACEFUL_STOP_MS = 15_000;

export const deployDir = path.join(repoRoot, 'deploy');

/**
 * /etc/quic-lb as deploy/README.md lays it out, under `dir`: deploy/config/config.yaml and the
 * keys/*.hex files it names, made with `quic-lb keygen`. Returns the config file's path.
 */
export function exampleEtc(dir: string): string {
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  copyFileSync(path.join(deployDir, 'config', 'config.yaml'), path.join(dir, 'config.yaml'));
  for (const [name, octets] of [
    ['quic-lb-0', 16],
    ['fallback', 16],
    ['return-hmac', 32],
  ] as const) {
    writeFileSync(path.join(dir, 'keys', `${name}.hex`), runCli(['keygen', '--octets', String(octets)]).stdout);
  }
  return path.join(dir, 'config.yaml');
}

/** A systemd unit's directives (section.key -> values, in order; comments and blank lines skipped). */
export function unitDirectives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      section = line.slice(1, -1);
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}
