// Run by queue-bound.test.ts inside a network namespace of its own (unshare -n), never alone:
// the backend 'slow' (10.77.0.2) sits behind a veth whose tbf qdisc drains 8 kbit/s, so with
// a small SO_SNDBUF the LB's upstream socket fills and node:dgram queues sends in user space.
// Backend 'fast' is a loopback sink. Prints one JSON line: the largest send queue seen right
// after each upstream send, how many sends were handed over, and the LB's counters.
import dgram from 'node:dgram';
import { pino } from 'pino';
import { startLoadBalancer, validateConfig } from '../../src/lb/index.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';
import { sleep } from '../helpers/wait.js';
import { parseMetrics } from '../helpers/metrics.js';

const maxQueuedDatagrams = Number(process.env.MAX_QUEUED_DATAGRAMS);
const maxQueuedOctets = Number(process.env.MAX_QUEUED_OCTETS);
const BURSTS = 40;
const PER_BURST = 100;

// Instrumentation: a send with one argument is an upstream (connected) send; the queue is at
// its largest right after it.
let handed = 0;
let maxCount = 0;
let maxOctets = 0;
const send = dgram.Socket.prototype.send as (this: dgram.Socket, ...args: unknown[]) => void;
(dgram.Socket.prototype as unknown as { send: (...args: unknown[]) => void }).send = function (
  this: dgram.Socket,
  ...args: unknown[]
): void {
  send.apply(this, args);
  if (args.length !== 1) return;
  handed++;
  maxCount = Math.max(maxCount, this.getSendQueueCount());
  maxOctets = Math.max(maxOctets, this.getSendQueueSize());
};

const fast = dgram.createSocket('udp4');
let fastGot = 0;
fast.on('message', () => fastGot++);
await new Promise<void>((r) => fast.bind(0, '127.0.0.1', () => r()));
fast.setRecvBufferSize(4 * 1024 * 1024);

const lb = await startLoadBalancer(
  validateConfig({
    listen: ['127.0.0.1:0'],
    quicLb: QUIC_LB_SPECS.slice(0, 1),
    backends: [
      { name: 'slow', address: '10.77.0.2:4434', serverIds: { 0: SIDS.a[0] }, health: { type: 'none' } },
      {
        name: 'fast',
        address: `127.0.0.1:${fast.address().port}`,
        serverIds: { 0: SIDS.b[0] },
        health: { type: 'none' },
      },
    ],
    fallback: { key: FALLBACK_KEY },
    returnPath: { mode: 'direct' },
    socket: { sendBufferSize: 4096, maxQueuedDatagrams, maxQueuedOctets },
  }),
  { logger: pino({ level: 'silent' }) },
);
const vip = lb.addresses().vips[0];
const client = dgram.createSocket('udp4');
await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
client.setSendBufferSize(4 * 1024 * 1024);
const toSlow = shortHeader(cid(0, SIDS.a[0]), 1200);
const toFast = shortHeader(cid(0, SIDS.b[0]), 1200);
let fastSent = 0;
for (let b = 0; b < BURSTS; b++) {
  for (let i = 0; i < PER_BURST; i++) client.send(toSlow, vip.port, vip.address);
  client.send(toFast, vip.port, vip.address);
  fastSent++;
  await sleep(2);
}
await sleep(300);

const metrics = parseMetrics(await lb.metricsText());
const get = (k: string): number => metrics.get(k) ?? -1;
let received = 0;
for (const [k, v] of metrics) if (k.startsWith('quic_lb_received_packets_total{')) received += v;
process.stdout.write(
  `${JSON.stringify({
    maxCount,
    maxOctets,
    handed,
    received,
    fastSent,
    fastGot,
    forwardedSlow: get('quic_lb_backend_packets_total{backend="slow",direction="to_backend"}'),
    forwardedFast: get('quic_lb_backend_packets_total{backend="fast",direction="to_backend"}'),
    droppedSlow: get('quic_lb_backend_dropped_packets_total{backend="slow"}'),
    droppedFast: get('quic_lb_backend_dropped_packets_total{backend="fast"}'),
    queueFull: get('quic_lb_send_errors_total{reason="queue_full"}'),
    thrown: get('quic_lb_send_errors_total{reason="thrown"}'),
  })}\n`,
);
await lb.close();
client.close();
fast.close();
