// A real redis-server for the Redis-mapped routers: free port, no persistence, stopped by PID.
import { spawnSync } from 'node:child_process';
import { spawnReady, freeTcpPort, type Child } from './proc.js';

/** True when `redis-server` is on the PATH (scripts/system-deps.sh installs it). */
export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
}

export class RedisServer {
  private child: Child | undefined;
  private constructor(readonly port: number) {}

  static async start(port?: number): Promise<RedisServer> {
    const r = new RedisServer(port ?? (await freeTcpPort()));
    await r.launch();
    return r;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  private async launch(): Promise<void> {
    this.child = await spawnReady(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
        '--loglevel',
        'warning',
        '--maxclients',
        '1000',
      ],
      // With loglevel warning redis prints almost nothing; readiness is probed below instead.
      { timeoutMs: 10000 },
    );
    await waitTcp(this.port);
  }

  /** Kills redis-server (all mappings are lost: no persistence) and starts an empty one on the same port. */
  async restart(): Promise<void> {
    await this.child?.stop('SIGKILL');
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.child?.stop('SIGTERM');
    this.child = undefined;
  }
}

async function waitTcp(port: number): Promise<void> {
  const { connect } = await import('node:net');
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.write('PING\r\n');
        s.once('data', (d) => {
          s.destroy();
          resolve(d.toString().startsWith('+PONG'));
        });
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`redis-server on port ${port} did not answer PING`);
}
