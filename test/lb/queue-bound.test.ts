// The per-backend send queue bound (issue 10, finding 4). Loopback never fills a UDP socket's
// send buffer (the kernel hands the datagram to the receiver within the send call), so the
// child (queue-bound.child.ts) runs in a network namespace of its own (`unshare -n`, gone when
// it exits) where a slow backend sits behind a veth with an 8 kbit/s tbf qdisc: the LB's
// upstream socket fills, node:dgram queues, and the bound has to hold. Asserted: the queue
// never exceeds socket.maxQueuedDatagrams / maxQueuedOctets (and did reach the bound), drops
// are counted per backend and as send_errors{queue_full}, never as forwarded, and the fast
// backend next to it loses nothing.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';

const SETUP = [
  'ip link set lo up',
  'ip link add v0 type veth peer name v1',
  'ip link set v0 up',
  'ip link set v1 up',
  'ip addr add 10.77.0.1/24 dev v0',
  'ip neigh add 10.77.0.2 lladdr 02:00:00:00:00:02 dev v0',
  'tc qdisc add dev v0 root tbf rate 8kbit burst 1600 limit 1000000',
].join(' && ');

interface ChildResult {
  maxCount: number;
  maxOctets: number;
  handed: number;
  received: number;
  fastSent: number;
  fastGot: number;
  forwardedSlow: number;
  forwardedFast: number;
  droppedSlow: number;
  droppedFast: number;
  queueFull: number;
  thrown: number;
}

function runChild(maxQueuedDatagrams: number, maxQueuedOctets: number): ChildResult {
  const r = spawnSync(
    'unshare',
    ['-n', 'sh', '-c', `${SETUP} && exec "${process.execPath}" --import tsx test/lb/queue-bound.child.ts`],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        MAX_QUEUED_DATAGRAMS: String(maxQueuedDatagrams),
        MAX_QUEUED_OCTETS: String(maxQueuedOctets),
      },
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  expect(r.status, `child: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
}

function expectAccounting(r: ChildResult): void {
  // Every datagram received was forwarded or dropped, and "forwarded" is exactly what was handed to a socket.
  expect(r.forwardedSlow + r.droppedSlow + r.forwardedFast + r.droppedFast).toBe(r.received);
  expect(r.forwardedSlow + r.forwardedFast).toBe(r.handed);
  expect(r.droppedSlow).toBeGreaterThan(0);
  expect(r.queueFull).toBe(r.droppedSlow);
  expect(r.thrown).toBe(0);
  // The fast backend shares nothing with the slow one's queue.
  expect(r.droppedFast).toBe(0);
  expect(r.forwardedFast).toBe(r.fastSent);
  expect(r.fastGot).toBe(r.fastSent);
}

describe('upstream send queue bound (slow backend in a network namespace)', () => {
  it('by datagrams: the queue stops at maxQueuedDatagrams (past the header ring), the rest is dropped and counted', () => {
    const r = runChild(300, 16 * 1024 * 1024);
    expect(r.maxCount).toBeLessThanOrEqual(300);
    expect(r.maxCount).toBe(300);
    expectAccounting(r);
  });
  it('by octets: the queue stops at maxQueuedOctets', () => {
    const r = runChild(100_000, 131_072);
    expect(r.maxOctets).toBeLessThanOrEqual(131_072);
    expect(r.maxOctets).toBeGreaterThan(131_072 - 1300);
    expect(r.maxCount).toBeLessThan(300);
    expectAccounting(r);
  });
});
