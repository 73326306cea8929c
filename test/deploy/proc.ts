// Helpers of the deploy tests: stopping CLI processes by PID with their exit code, the example
// /etc/quic-lb of deploy/README.md.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Proc } from '../e2e/fleet.js';
import { repoRoot, runCli } from '../helpers/cli.js';

/**
 * Sends `signal` to a process started with `startCli` (test/e2e/fleet.ts) by its PID and resolves
 * with its exit code (SIGKILL after `killAfterMs`): `serve` and `demo backend` exit 0 after a drain.
 */
export function stopWithCode(p: Proc, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => process.kill(p.pid, 'SIGKILL'), killAfterMs);
    p.child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    process.kill(p.pid, signal);
  });
}

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
