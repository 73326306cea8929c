// A Redis-mapped UDP router, the design of large WebRTC/QUIC relays that keep "client address ->
// backend" in Redis: the first packet of a flow (4-tuple) assigns a backend (round robin) with
// SET NX + TTL, every packet looks the mapping up — in Redis itself (`--mode per-packet`, the
// lookups of one event-loop turn pipelined) or in a local cache in front of Redis (`--mode cache`,
// CLOCK eviction). Forwards like quic-lb serve: a PROXY
// protocol v2 header carrying the client address in front of the untouched datagram; replies
// come back the same way on the upstream socket and leave from the listening socket.
//   node --import tsx bench/routers/redis-router.ts --listen 127.0.3.101:0 --redis 6379 [--db 0] \
//     --backends 127.0.3.10:4000,127.0.3.11:4000 --mode cache --cache-size 100000 --ttl 300
// Prints `READY <port>`. Stdin lines: `{"backends":["ip:port",...]}` replaces the pool for new
// flows; `stats` prints `STATS {json}`.
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { ProxyHeader, ProxyHeaderTemplate, formatProxyAddress, parseProxyHeader } from '../../src/wire/index.js';
import { endpoint, parseArgs } from './args.js';

const args = parseArgs(process.argv.slice(2));
const listen = endpoint(args.get('listen') ?? '127.0.0.1:0');
const redisPort = Number(args.get('redis') ?? 6379);
const redisDb = Number(args.get('db') ?? 0);
const mode = args.get('mode') ?? 'per-packet';
const cacheSize = Number(args.get('cache-size') ?? 100_000);
const ttl = Number(args.get('ttl') ?? 300);
const BUFFER = 8 << 20;

const stats = {
  packets: 0,
  forwarded: 0,
  cacheHits: 0,
  redisLookups: 0,
  assigned: 0,
  redisErrors: 0,
  replies: 0,
  badReplies: 0,
};

/** Upstream sockets, one connected socket per backend address ("ip:port"). */
const upstreams = new Map<string, Socket>();
let pool: string[] = [];
let rr = 0;

async function setPool(list: string[]): Promise<void> {
  for (const b of list) {
    if (upstreams.has(b)) continue;
    const e = endpoint(b);
    const s = createSocket({ type: 'udp4', sendBufferSize: BUFFER });
    s.on('error', () => {});
    s.on('message', onReply);
    await new Promise<void>((r) => s.connect(e.port, e.host, () => r()));
    upstreams.set(b, s);
  }
  pool = [...list];
}

const redis = new Redis({
  port: redisPort,
  host: '127.0.0.1',
  db: redisDb,
  // A relay must not queue packets behind a dead Redis: fail fast, drop, reconnect in the background.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: () => 50,
  lazyConnect: false,
  // Commands issued in one event-loop turn leave in one write (one pipeline): what a relay
  // doing a lookup per packet needs to keep up at all.
  enableAutoPipelining: true,
});
redis.on('error', () => {});

/**
 * The local cache: CLOCK (second chance), an LRU approximation whose hit costs one field write
 * (a true LRU moves the entry on every packet). At capacity, the oldest entry leaves unless it
 * was used since it was last passed over; then it goes to the back, unmarked.
 */
interface CacheEntry {
  backend: string;
  used: boolean;
}
const cache = new Map<string, CacheEntry>();

function remember(key: string, backend: string): void {
  if (mode !== 'cache') return;
  cache.set(key, { backend, used: false });
  while (cache.size > cacheSize) {
    const [oldKey, old] = cache.entries().next().value as [string, CacheEntry];
    cache.delete(oldKey);
    if (!old.used) break;
    old.used = false;
    cache.set(oldKey, old);
  }
}

async function lookup(key: string): Promise<string> {
  stats.redisLookups++;
  const found = await redis.get(key);
  if (found !== null) return found;
  const mine = pool[rr++ % pool.length];
  // SET ... NX GET (Redis >= 7.0): atomically assign unless another packet/router did first.
  const prior = (await redis.call('SET', key, mine, 'EX', ttl, 'NX', 'GET')) as string | null;
  if (prior === null) stats.assigned++;
  return prior ?? mine;
}

let sock: Socket;

/**
 * Return path: a backend replies on the upstream socket (connected, so only that backend can)
 * with [PROXY v2 header (dst = client), datagram]; the datagram leaves from the listening socket.
 */
const replyHeader = new ProxyHeader();
function onReply(msg: Buffer): void {
  const n = parseProxyHeader(msg, replyHeader);
  if (n <= 0 || replyHeader.family !== 4) {
    stats.badReplies++;
    return;
  }
  sock.send(msg.subarray(n), replyHeader.dstPort, formatProxyAddress(replyHeader, 'dst'));
  stats.replies++;
}

function forward(backend: string, msg: Buffer, rinfo: RemoteInfo): void {
  const up = upstreams.get(backend);
  if (!up) return; // a backend no longer in any pool this process knows
  const hdr = proxyHeader!.next(rinfo.address, rinfo.port);
  if (!hdr) return;
  up.send([hdr, msg]);
  stats.forwarded++;
}

/** PROXY v2 header with the router's address fixed (built once the port is known). */
let proxyHeader: ProxyHeaderTemplate | undefined;

function onMessage(msg: Buffer, rinfo: RemoteInfo): void {
  stats.packets++;
  const key = `${rinfo.address}:${rinfo.port}`;
  if (mode === 'cache') {
    const hit = cache.get(key);
    if (hit !== undefined) {
      stats.cacheHits++;
      hit.used = true;
      forward(hit.backend, msg, rinfo);
      return;
    }
  }
  lookup(key).then(
    (b) => {
      remember(key, b);
      forward(b, msg, rinfo);
    },
    () => stats.redisErrors++,
  );
}

async function main(): Promise<void> {
  await setPool((args.get('backends') ?? '').split(',').filter(Boolean));
  if (redis.status !== 'ready') await new Promise<void>((r) => redis.once('ready', () => r()));
  sock = createSocket({ type: 'udp4', recvBufferSize: BUFFER });
  sock.on('message', onMessage);
  sock.bind(listen.port, listen.host, () => {
    const port = sock.address().port;
    proxyHeader = new ProxyHeaderTemplate({
      fixedAddr: listen.host,
      fixedPort: port,
      fixedSide: 'dst',
      ringSize: 4096,
    });
    process.stdout.write(`READY ${port}\n`);
  });
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stats') {
      process.stdout.write(`STATS ${JSON.stringify({ ...stats, cacheEntries: cache.size })}\n`);
      return;
    }
    const m = JSON.parse(line) as { backends?: string[] };
    if (m.backends) void setPool(m.backends).then(() => process.stdout.write('POOL ok\n'));
  });
  process.on('SIGTERM', () => {
    redis.disconnect();
    process.exit(0);
  });
}

void main();
