// Child processes of the tests: start one, wait for its ready line, stop it by PID.
//
// The ready protocol: `quic-lb serve` and `quic-lb demo backend` print one JSON line
// `{"ready":true,...}` on stdout once their sockets are bound (src/cli/serve.ts, src/cli/demo.ts);
// `startProcess` resolves with that object. A process with another banner passes `readyWhen`.
// Every process is stopped by its PID with `stop`, SIGKILL after a deadline.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cliPath, repoRoot } from './cli.js';

export interface Proc {
  child: ChildProcess;
  pid: number;
  /** The parsed ready line (`{}` when `readyWhen` decided readiness). */
  ready: Record<string, unknown>;
  /** stdout and stderr so far, interleaved as they arrived. */
  output: () => string;
  /** stdout alone so far. */
  stdout: () => string;
  /** stderr alone so far. */
  stderr: () => string;
}

export interface StartOptions {
  /** Deadline for the ready line (default 15 s); the process is SIGKILLed when it passes. */
  timeoutMs?: number;
  /** Readiness from the output so far instead of the JSON ready line. */
  readyWhen?: (output: string) => boolean;
  /** Default: the repository root. */
  cwd?: string;
  /** Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
}

/** The first complete line of `out` that is a JSON object with `ready: true` (the ready protocol above). */
export function readyLine(out: string): Record<string, unknown> | undefined {
  const lines = out.split('\n');
  lines.pop(); // not yet complete
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as Record<string, unknown>;
      if (j.ready === true) return j;
    } catch {
      // a JSON-looking log line, not the ready line
    }
  }
  return undefined;
}

/**
 * Spawns `command args` and resolves once it is ready (see the top of this file). Rejects, with
 * the output so far, when the process exits first or `timeoutMs` passes (then it is SIGKILLed).
 */
export function startProcess(command: string, args: string[], o: StartOptions = {}): Promise<Proc> {
  const timeoutMs = o.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: o.cwd ?? repoRoot,
      env: o.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stdout = '';
    let err = '';
    let done = false;
    const finish = (f: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(
      () =>
        finish(() => {
          if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
          reject(new Error(`${[command, ...args].join(' ')}: not ready within ${timeoutMs} ms:\n${out}`));
        }),
      timeoutMs,
    );
    const check = (): void => {
      if (done) return;
      const ready = o.readyWhen ? (o.readyWhen(out) ? {} : undefined) : readyLine(out);
      if (ready)
        finish(() =>
          resolve({
            child,
            pid: child.pid as number,
            ready,
            output: () => out,
            stdout: () => stdout,
            stderr: () => err,
          }),
        );
    };
    child.stdout!.on('data', (b: Buffer) => {
      const s = b.toString();
      out += s;
      stdout += s;
      check();
    });
    child.stderr!.on('data', (b: Buffer) => {
      const s = b.toString();
      out += s;
      err += s;
      check();
    });
    child.once('error', (e) => finish(() => reject(e)));
    child.once('exit', (code, signal) =>
      finish(() =>
        reject(new Error(`${[command, ...args].join(' ')} exited (${code ?? signal}) before it was ready:\n${out}`)),
      ),
    );
  });
}

/** `node dist/cli.js ...args` (build first: `npm run build`), ready as {@link startProcess}. */
export function startCli(args: string[], o: StartOptions = {}): Promise<Proc> {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: build first (npm run build)`);
  return startProcess(process.execPath, [cliPath, ...args], o);
}

/**
 * Sends `signal` to `p` by its PID and resolves with its exit code (null: killed by a signal)
 * once it has exited; SIGKILL after `killAfterMs`. Resolves at once for no process or one that
 * already exited.
 */
export function stop(
  p: Proc | undefined,
  signal: NodeJS.Signals = 'SIGTERM',
  killAfterMs = 3000,
): Promise<number | null> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p?.child.exitCode ?? null);
  return new Promise((resolve) => {
    const kill = setTimeout(() => {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, killAfterMs);
    p.child.once('exit', (code) => {
      clearTimeout(kill);
      resolve(code);
    });
    try {
      process.kill(p.pid, signal);
    } catch {
      clearTimeout(kill);
      resolve(p.child.exitCode);
    }
  });
}

/** PIDs of the direct children of `pid` (e.g. the cluster workers of a `serve` process), from /proc. */
export function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}
