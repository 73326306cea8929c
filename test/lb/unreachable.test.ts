// A backend address the LB cannot connect a UDP socket to (no route: ENETUNREACH) fails the start
// or the reload that names it, and the running config stays. node:dgram reports a failed
// connect() to its callback only; treating that callback as success left an unconnected upstream
// socket whose first send threw out of the 'message' handler. The child
// (unreachable.child.ts) runs in a network namespace of its own with only the loopback up.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';

describe('unreachable backend address', () => {
  it('fails start and reload with ENETUNREACH; the running config keeps forwarding', () => {
    const r = spawnSync(
      'unshare',
      ['-n', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" --import tsx test/lb/unreachable.child.ts`],
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.status, `child: ${r.stderr}`).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(out).toEqual({
      startError: 'ENETUNREACH',
      reloadOk: false,
      reloadError: 'ENETUNREACH',
      running: ['a'],
      got: 20,
    });
  });
});
