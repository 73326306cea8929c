// The child process that holds the XDP program (xdp/agent.c, built as dist/xdp/quic-lb-xdp): it
// loads the object, attaches it to an interface through a BPF link it owns, and writes maps on
// request. When it exits, however it exits, the program is detached and every datagram goes up
// the stack to the Node forwarder on the same VIP: the fast path fails open to the slow path.
//
// Protocol (xdp/agent.c): the first stdout line is `ready MODE IFINDEX`; then one reply line per
// command line, in order. Keys and values are hex of the C layouts (src/lb/xdp-maps.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import type { XdpAttachMode } from './config.js';

/** Why the agent did not start, from its exit status (xdp/agent.c). */
const EXIT_REASONS: Record<number, string> = {
  2: 'the program did not load',
  3: 'no such interface',
  4: 'the kernel refused to attach the program',
};

/** How long the agent may take to load and attach (the verifier runs in this time). */
const READY_TIMEOUT_MS = 30_000;
/** How long `close()` waits for the exit before SIGKILL. */
const CLOSE_TIMEOUT_MS = 5_000;

export interface XdpAgentOptions {
  /** The agent binary (dist/xdp/quic-lb-xdp). */
  binary: string;
  /** The BPF object (dist/xdp/quic_lb.bpf.o). */
  object: string;
  /** Interface to attach to; absent: load only (BPF_PROG_TEST_RUN through `run`, tests). */
  interface?: string;
  attach?: XdpAttachMode;
  /** Command words the agent runs under, e.g. `['ip', 'netns', 'exec', NS]` (tests). */
  prefix?: readonly string[];
}

/** An agent that failed to start: `reason` says why in words an operator can act on. */
export class XdpAgentError extends Error {
  constructor(
    readonly reason: string,
    readonly stderr: string,
  ) {
    super(`XDP agent: ${reason}`);
  }
}

interface Pending {
  resolve: (lines: string[]) => void;
  reject: (err: Error) => void;
  lines: string[];
  want: number;
}

/** A running agent. Requests are answered in order; after an exit every request rejects. */
export class XdpAgent {
  private buffered = '';
  private readonly queue: Pending[] = [];
  private exited: Error | undefined;
  private stderrText = '';
  private readonly exitListeners: ((err: Error) => void)[] = [];

  private constructor(
    private readonly child: ChildProcess,
    /** `native`, `generic` or `test` (load only). */
    readonly mode: string,
    readonly ifindex: number,
  ) {}

  /** Starts the agent and waits for its ready line; rejects with an {@link XdpAgentError}. */
  static start(o: XdpAgentOptions): Promise<XdpAgent> {
    const args = o.interface === undefined ? [o.object] : [o.object, o.interface, o.attach ?? 'auto'];
    const [command, ...rest] = [...(o.prefix ?? []), o.binary, ...args];
    const child = spawn(command, rest, { stdio: ['pipe', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        fail(`no ready line within ${READY_TIMEOUT_MS} ms`);
      }, READY_TIMEOUT_MS);
      const fail = (reason: string): void => {
        clearTimeout(timer);
        child.stdout?.removeAllListeners('data');
        reject(new XdpAgentError(reason, err));
      };
      child.on('error', (e) => fail(`cannot run ${o.binary}: ${e.message}`));
      child.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('exit', (code, signal) => {
        const last = err.trim().split('\n').pop() ?? '';
        fail(
          last.startsWith('quic-lb-xdp: ')
            ? last.slice('quic-lb-xdp: '.length)
            : (EXIT_REASONS[code ?? -1] ?? `exited (${signal ?? code}) before it was ready`),
        );
      });
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        const [word, mode, ifindex] = out.slice(0, nl).split(' ');
        if (word !== 'ready') {
          child.kill('SIGKILL');
          fail(`unexpected first line: ${out.slice(0, nl)}`);
          return;
        }
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout?.removeAllListeners('data');
        const agent = new XdpAgent(child, mode, Number(ifindex));
        agent.stderrText = err;
        agent.listen(out.slice(nl + 1));
        resolve(agent);
      });
    });
  }

  private listen(rest: string): void {
    this.child.stdout?.on('data', (d: Buffer) => this.onData(d.toString()));
    this.child.stderr?.removeAllListeners('data');
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderrText = (this.stderrText + d.toString()).slice(-8192);
    });
    this.child.on('exit', (code, signal) => {
      const err = new Error(`XDP agent exited (${signal ?? code}): ${this.stderrText.trim().split('\n').pop() ?? ''}`);
      this.exited = err;
      for (const p of this.queue.splice(0)) p.reject(err);
      for (const l of this.exitListeners) l(err);
    });
    // A write after the agent died fails with EPIPE; the exit handler reports it.
    this.child.stdin?.on('error', () => undefined);
    if (rest) this.onData(rest);
  }

  private onData(text: string): void {
    this.buffered += text;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const p = this.queue[0];
      if (!p) continue; // nothing asked: ignored
      p.lines.push(line);
      if (p.lines.length === p.want) {
        this.queue.shift();
        p.resolve(p.lines);
      }
    }
  }

  /** Calls `listener` once if the agent exits after it was ready (a crash, a kill). */
  onExit(listener: (err: Error) => void): void {
    this.exitListeners.push(listener);
  }

  /**
   * Sends `commands` (one per element, no newlines) and resolves with their replies, in order.
   * Rejects when the agent has exited or exits before answering.
   */
  request(commands: readonly string[]): Promise<string[]> {
    if (this.exited) return Promise.reject(this.exited);
    if (commands.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject, lines: [], want: commands.length });
      this.child.stdin?.write(commands.join('\n') + '\n');
    });
  }

  /**
   * Like {@link request}, but rejects with the first `error` reply (and the command that got it);
   * the commands after it were still applied (each command stands alone).
   */
  async apply(commands: readonly string[]): Promise<string[]> {
    const replies = await this.request(commands);
    const bad = replies.findIndex((r) => r.startsWith('error'));
    if (bad >= 0) throw new Error(`XDP agent: ${replies[bad]} (command: ${commands[bad].slice(0, 80)})`);
    return replies;
  }

  /** The per-index sums over the CPUs of per-CPU array `map` of __u64. */
  async sum(map: string): Promise<bigint[]> {
    const [reply] = await this.apply([`sum ${map}`]);
    return reply.split(' ').slice(1).map(BigInt);
  }

  /** The agent's PID (the tests stop what they start by PID). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exited === undefined;
  }

  /** Closes stdin (the agent exits, detaching the program); SIGKILL after a deadline. */
  close(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), CLOSE_TIMEOUT_MS);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.stdin?.end();
    });
  }
}
