// Child processes of the harness: started with a readiness line, stopped by PID only.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Everything the child printed so far (bounded), for error messages. */
  output(): string;
  exited(): boolean;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface SpawnOptions {
  /** Resolves once stdout or stderr matches; without it, as soon as the process has spawned. */
  ready?: RegExp;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Called with each matching line's match (e.g. to read a port). */
  onReady?: (m: RegExpExecArray) => void;
}

export function spawnReady(cmd: string, args: string[], opts: SpawnOptions): Promise<Child> {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  let out = '';
  let exited = false;
  const exitPromise = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const child: Child = {
    proc,
    pid: proc.pid ?? -1,
    output: () => out,
    exited: () => exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (exited || proc.pid === undefined) return;
      try {
        process.kill(proc.pid, signal);
      } catch {
        return;
      }
      const t = setTimeout(() => {
        if (!exited && proc.pid !== undefined) {
          try {
            process.kill(proc.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }, 3000);
      await exitPromise;
      clearTimeout(t);
    },
  };
  return new Promise<Child>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      void child.stop('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: not ready after ${opts.timeoutMs ?? 15000} ms\n${out}`));
    }, opts.timeoutMs ?? 15000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 20000) out = out.slice(-10000);
      if (done || !opts.ready) return;
      const m = opts.ready.exec(out);
      if (m) {
        done = true;
        clearTimeout(timer);
        opts.onReady?.(m);
        resolve(child);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    if (!opts.ready) {
      proc.once('spawn', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(child);
      });
    }
    proc.once('error', (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(e);
    });
    proc.once('exit', (code, sig) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code ?? sig}) before ready:\n${out}`));
    });
  });
}

/** A TCP port free on `host` right now (the kernel picks it). */
export function freeTcpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A UDP port free on `host` right now (the kernel picks it). */
export function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    s.once('error', reject);
    s.bind(0, host, () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * `cmd args` as run in network namespace `netns` (`ip netns exec`, which execs `cmd`: the PID and
 * its CPU are the command's own), or unchanged without one.
 */
export function inNetns(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return netns === undefined ? [cmd, args] : ['ip', ['netns', 'exec', netns, cmd, ...args]];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * True once some socket is bound to UDP `host:port` (IPv4), read from `table` (default
 * /proc/net/udp: this process's network namespace; /proc/PID/net/udp: PID's).
 */
export function udpBound(host: string, port: number, table = '/proc/net/udp'): boolean {
  const ipHex = host
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .reverse()
    .join('')
    .toUpperCase();
  const want = `${ipHex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  const wild = `00000000:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  try {
    const text = readFileSync(table, 'utf8');
    return text.includes(` ${want} `) || text.includes(` ${wild} `);
  } catch {
    return false;
  }
}

/** Waits until `host:port` is bound in `child`'s network namespace (a router in a namespace of its own, too). */
export async function waitUdpBound(host: string, port: number, child: Child, timeoutMs = 15000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!udpBound(host, port, `/proc/${child.pid}/net/udp`)) {
    if (child.exited()) throw new Error(`process exited before binding ${host}:${port}:\n${child.output()}`);
    if (Date.now() > end) throw new Error(`nothing bound ${host}:${port} after ${timeoutMs} ms:\n${child.output()}`);
    await sleep(20);
  }
}

/** SIGKILL a process and all its descendants (a "crash" of the router, not a graceful stop). */
export async function killTree(child: Child): Promise<void> {
  const { processTree } = await import('./procstat.js');
  const pids = processTree(child.pid).reverse();
  for (const p of pids) {
    if (p === child.pid) continue;
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await child.stop('SIGKILL');
}
