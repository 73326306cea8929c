// Helpers of the deploy tests: stopping CLI processes by PID with their exit code.
import path from 'node:path';
import type { Proc } from '../e2e/fleet.js';
import { repoRoot } from '../helpers/cli.js';

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
