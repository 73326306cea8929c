// Long-running CLI processes for the deploy tests (dist/cli.js; build first), stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cliPath, repoRoot } from '../helpers/cli.js';

export class CliProcess {
  private constructor(
    readonly child: ChildProcess,
    /** The first stdout line (the `{"ready":true,...}` JSON of serve and demo backend). */
    readonly ready: Record<string, unknown>,
    readonly stderr: () => string,
  ) {}

  static start(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000): Promise<CliProcess> {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no ready line from quic-lb ${args.join(' ')} in ${timeoutMs} ms; stderr: ${err}`));
      }, timeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        resolve(new CliProcess(child, JSON.parse(out.slice(0, nl)) as Record<string, unknown>, () => err));
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`quic-lb ${args.join(' ')} exited with ${code}: ${err}`));
      });
    });
  }

  /** Sends `signal` to the process by PID and waits for its exit (SIGKILL after `killAfterMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 15_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)));
    process.kill(this.child.pid!, signal);
    const timer = setTimeout(() => {
      if (this.child.exitCode === null) process.kill(this.child.pid!, 'SIGKILL');
    }, killAfterMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }
}

/** Reads a JSON-lines file. */
export function jsonLines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export const deployDir = path.join(repoRoot, 'deploy');

/** Polls `check` until it returns true. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
