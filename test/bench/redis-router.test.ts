// The Redis-mapped router really routes through a real redis-server: flows get a backend on their
// first packet (SET NX with TTL), every later packet follows the mapping, and a new 4-tuple for
// the same connection (NAT rebinding) gets a new mapping — the misdelivery the benchmark counts.
import { createSocket, type Socket } from 'node:dgram';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildShort } from '../../bench/lib/packets.js';
import { Prng } from '../../bench/lib/prng.js';
import { spawnReady, type Child } from '../../bench/lib/proc.js';
import { sleep } from '../helpers/wait.js';
import { RedisServer } from '../../bench/lib/redis-server.js';
import { nowUs, stampTrailer } from '../../bench/lib/trailer.js';
import { NO_OWNER, SinkSet } from '../../bench/sink/sinks.js';
import { repoRoot } from '../../bench/harness/build.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.each(['per-packet', 'cache'] as const)('Redis-mapped router (%s)', (mode) => {
  let redis: RedisServer;
  let client: Redis;
  let router: Child;
  let port = 0;
  const owner = new Int8Array(16).fill(NO_OWNER);
  const sinks = new SinkSet(['127.0.3.30', '127.0.3.31'], owner);
  let sinkAddrs: string[] = [];
  const sockets: Socket[] = [];
  const rng = new Prng(5);

  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis({ port: redis.port, host: '127.0.0.1' });
    const ports = await sinks.start();
    sinkAddrs = ports.map((p, i) => `127.0.3.${30 + i}:${p}`);
    router = await spawnReady(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(repoRoot, 'bench/routers/redis-router.ts'),
        '--listen',
        '127.0.3.32:0',
        '--redis',
        String(redis.port),
        '--backends',
        sinkAddrs.join(','),
        '--mode',
        mode,
        '--ttl',
        '60',
      ],
      { ready: /READY (\d+)/, cwd: repoRoot, timeoutMs: 30000, onReady: (m) => (port = Number(m[1])) },
    );
    sinks.reset(1);
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    await router?.stop();
    client?.disconnect();
    await sinks.close();
    const pid = redis.pid;
    await redis?.stop();
    expect(alive(pid)).toBe(false);
  });

  async function flow(): Promise<Socket> {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.3.33', () => r()));
    sockets.push(s);
    return s;
  }
  const cid = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9);
  let seq = 0;
  async function send(s: Socket, conn: number): Promise<void> {
    const b = buildShort(rng, 400, 1, conn, cid);
    stampTrailer(b, seq++, nowUs());
    await new Promise<void>((r) => s.send(b, port, '127.0.3.32', () => r()));
  }
  async function delivered(n: number): Promise<void> {
    for (let i = 0; i < 300 && sinks.stats().received.reduce((a, b) => a + b, 0) < n; i++) await sleep(10);
    expect(sinks.stats().received.reduce((a, b) => a + b, 0)).toBe(n);
  }

  it('assigns each 4-tuple a backend in Redis on its first packet and keeps every packet on it', async () => {
    const flows = [await flow(), await flow(), await flow()];
    let n = 0;
    for (let round = 0; round < 4; round++) {
      for (const [conn, s] of flows.entries()) {
        await send(s, conn);
        await delivered(++n);
      }
    }
    const st = sinks.stats();
    expect(st.wrong).toBe(0);
    expect(st.proxied).toBe(12); // PROXY v2 header in front of every datagram
    expect(st.corrupt).toBe(0);
    expect(await client.dbsize()).toBe(3);
    for (const [conn, s] of flows.entries()) {
      const key = `127.0.3.33:${s.address().port}`;
      const backend = await client.get(key);
      expect(backend).toBe(sinkAddrs[owner[conn]]);
      const ttl = await client.ttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60);
    }
    // Round robin over two backends: both got flows.
    expect(new Set([owner[0], owner[1], owner[2]]).size).toBe(2);
  });

  it('maps a rebound connection (new source port) afresh: its packets can reach another backend', async () => {
    const before = sinks.stats().received.reduce((a, b) => a + b, 0);
    // Flows 4 and 5 take the next two round-robin slots, so one of them lands away from conn 0's owner.
    const a = await flow();
    const b = await flow();
    await send(a, 0);
    await delivered(before + 1);
    await send(b, 0);
    await delivered(before + 2);
    expect(sinks.stats().wrong).toBe(1);
    expect(await client.dbsize()).toBe(5);
  });

  it('carries replies back: backend -> upstream socket with a PROXY v2 header -> client, from the router address', async () => {
    const s = await flow();
    const back = new Promise<{ len: number; from: string }>((resolve) =>
      s.once('message', (m, r) => resolve({ len: m.length, from: `${r.address}:${r.port}` })),
    );
    sinks.reset(2, true);
    const b = buildShort(rng, 400, 2, 9, cid);
    stampTrailer(b, 0, nowUs());
    s.send(b, port, '127.0.3.32');
    const got = await back;
    expect(got).toEqual({ len: 400, from: `127.0.3.32:${port}` }); // header stripped, sent from the router
    sinks.reset(1);
  });

  it('loses every mapping when redis-server restarts (no persistence)', async () => {
    await redis.restart();
    for (let i = 0; i < 100 && client.status !== 'ready'; i++) await sleep(20);
    expect(await client.dbsize()).toBe(0);
  });
});

describe('Redis-mapped router (cache): CLOCK eviction', () => {
  it('at capacity evicts the oldest entry not used since it was last passed over; a used one gets a second chance', async () => {
    const redis = await RedisServer.start();
    const owner = new Int8Array(8).fill(NO_OWNER);
    const sinks = new SinkSet(['127.0.3.34'], owner);
    const sockets: Socket[] = [];
    let router: Child | undefined;
    try {
      const [sinkPort] = await sinks.start();
      let port = 0;
      router = await spawnReady(
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(repoRoot, 'bench/routers/redis-router.ts'),
          '--listen',
          '127.0.3.35:0',
          '--redis',
          String(redis.port),
          '--backends',
          `127.0.3.34:${sinkPort}`,
          '--mode',
          'cache',
          '--cache-size',
          '2',
          '--ttl',
          '60',
        ],
        { ready: /READY (\d+)/, cwd: repoRoot, timeoutMs: 30000, onReady: (m) => (port = Number(m[1])) },
      );
      sinks.reset(1);
      const r = router;
      let seen = 0;
      const stats = async (): Promise<{ cacheHits: number; redisLookups: number; cacheEntries: number }> => {
        const before = r.output().split('STATS ').length;
        r.proc.stdin!.write('stats\n');
        for (let i = 0; i < 300 && r.output().split('STATS ').length === before; i++) await sleep(10);
        const all = r.output().split('STATS ');
        return JSON.parse(all[all.length - 1].split('\n')[0]) as {
          cacheHits: number;
          redisLookups: number;
          cacheEntries: number;
        };
      };
      const rng = new Prng(9);
      const cid = Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2, 1);
      const send = async (s: Socket, conn: number): Promise<void> => {
        const b = buildShort(rng, 200, 1, conn, cid);
        stampTrailer(b, seen, nowUs());
        await new Promise<void>((res) => s.send(b, port, '127.0.3.35', () => res()));
        seen++;
        for (let i = 0; i < 300 && sinks.stats().received[0] < seen; i++) await sleep(10);
        expect(sinks.stats().received[0]).toBe(seen);
      };
      const flow = async (): Promise<Socket> => {
        const s = createSocket('udp4');
        await new Promise<void>((res) => s.bind(0, '127.0.3.36', () => res()));
        sockets.push(s);
        return s;
      };
      const [a, b, c] = [await flow(), await flow(), await flow()];
      await send(a, 0); // miss: A cached
      await send(b, 1); // miss: B cached
      await send(a, 0); // hit: A marked used
      expect(await stats()).toMatchObject({ cacheHits: 1, redisLookups: 2, cacheEntries: 2 });
      await send(c, 2); // miss: C cached; A (oldest, used) goes to the back unmarked; B leaves
      expect(await stats()).toMatchObject({ cacheHits: 1, redisLookups: 3, cacheEntries: 2 });
      await send(a, 0); // still cached
      expect(await stats()).toMatchObject({ cacheHits: 2, redisLookups: 3 });
      await send(b, 1); // evicted: asks Redis again (which still has its mapping)
      expect(await stats()).toMatchObject({ cacheHits: 2, redisLookups: 4, cacheEntries: 2 });
    } finally {
      await Promise.all(sockets.map((s) => new Promise<void>((res) => s.close(() => res()))));
      await router?.stop();
      await sinks.close();
      await redis.stop();
    }
  });
});
