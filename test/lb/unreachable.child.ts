// Run by unreachable.test.ts inside a network namespace of its own (unshare -n) with only the
// loopback up, so 10.1.1.1 has no route: connecting a UDP socket to it fails (ENETUNREACH).
// Prints one JSON line: what start and a reload with that backend gave, and whether traffic to
// the reachable backend still flows.
import dgram from 'node:dgram';
import { pino } from 'pino';
import { startLoadBalancer, validateConfig } from '../../src/lb/index.js';
import { FALLBACK_KEY, QUIC_LB_SPECS, SIDS, cid, shortHeader } from './fixtures.js';
import { sleep } from '../helpers/wait.js';

const sink = dgram.createSocket('udp4');
let got = 0;
sink.on('message', () => got++);
await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
const backend = (name: string, address: string, sid: string): object => ({
  name,
  address,
  serverIds: { 0: sid },
  health: { type: 'none' },
});
const doc = (backends: object[]): object => ({
  listen: ['127.0.0.1:0'],
  quicLb: QUIC_LB_SPECS.slice(0, 1),
  backends,
  fallback: { key: FALLBACK_KEY },
  returnPath: { mode: 'direct' },
});
const reachable = backend('a', `127.0.0.1:${sink.address().port}`, SIDS.a[0]);
const unreachable = backend('b', '10.1.1.1:4434', SIDS.b[0]);
const logger = pino({ level: 'silent' });

let startError: string | undefined;
try {
  const lb = await startLoadBalancer(validateConfig(doc([reachable, unreachable])), { logger });
  await lb.close();
} catch (err) {
  startError = (err as { code?: string }).code;
}
const lb = await startLoadBalancer(validateConfig(doc([reachable])), { logger });
const reload = await lb.applyConfig(validateConfig(doc([reachable, unreachable])));
const vip = lb.addresses().vips[0];
const client = dgram.createSocket('udp4');
await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
for (let i = 0; i < 10; i++) client.send(shortHeader(cid(0, SIDS.a[0], i + 1)), vip.port, vip.address);
// Server ID B is unknown to the running config: those take the fallback to a.
for (let i = 0; i < 10; i++) client.send(shortHeader(cid(0, SIDS.b[0], i + 1)), vip.port, vip.address);
await sleep(300);
process.stdout.write(
  `${JSON.stringify({
    startError,
    reloadOk: reload.ok,
    reloadError: (reload.error as { code?: string } | undefined)?.code,
    running: lb.currentConfig().backends.map((b) => b.name),
    got,
  })}\n`,
);
await lb.close();
client.close();
sink.close();
