// Fleet infrastructure: the network-namespace topology itself (issue 6). Runs as root (CI);
// skipped for non-root developers via runIf.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createFleet, canUseNetns, listNamespaces, namespacePids, withFleet, FleetError, type Fleet, type Ns } from './netns.js';

const ROOT = canUseNetns();
const NODE = process.execPath;
const PORT = 9000;

// UDP echo: answers every datagram with "<tag>|<payload>". Prints "ready" once bound.
const ECHO = `
const s = require('node:dgram').createSocket('udp4');
const [addr, port, tag] = process.argv.slice(1);
s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from(tag + '|'), m]), r.port, r.address));
s.bind(Number(port), addr, () => console.log('ready'));
`;

// Opens N sockets (N distinct source ports), sends `rounds` probes on each (retrying on loss),
// prints JSON { answers: [[port, [tag per round]]] }.
const PROBE = `
const dgram = require('node:dgram');
const [dst, port, n, rounds] = process.argv.slice(1).map((x, i) => (i === 0 ? x : Number(x)));
async function probe(i) {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, r));
  const tags = [];
  for (let k = 0; k < rounds; k++) {
    let tag;
    for (let attempt = 0; attempt < 5 && tag === undefined; attempt++) {
      tag = await new Promise((resolve) => {
        const t = setTimeout(() => { s.removeAllListeners('message'); resolve(undefined); }, 300);
        s.once('message', (m) => { clearTimeout(t); resolve(m.toString().split('|')[0]); });
        s.send('probe ' + i + ' ' + k, port, dst);
      });
    }
    tags.push(tag ?? null);
  }
  open.push(s); // keep it bound until the end: every flow keeps a distinct source port
  return [s.address().port, tags];
}
const open = [];
(async () => {
  const answers = [];
  for (let i = 0; i < n; i += 20) answers.push(...(await Promise.all(Array.from({ length: Math.min(20, n - i) }, (_, j) => probe(i + j)))));
  for (const s of open) s.close();
  console.log(JSON.stringify({ answers }));
})();
`;

async function startEcho(fleet: Fleet, ns: Ns, addr: string, tag: string): Promise<void> {
  const child = fleet.spawn(ns, [NODE, '-e', ECHO, addr, String(PORT), tag]);
  let out = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => (out += d));
  const started = Date.now();
  while (!out.includes('ready')) {
    if (child.exitCode !== null) throw new Error(`echo in ${ns.name} exited: ${child.exitCode}`);
    if (Date.now() - started > 10_000) throw new Error(`echo in ${ns.name} did not start`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function probeFrom(fleet: Fleet, dst: string, n: number, rounds: number): Promise<[number, (string | null)[]][]> {
  const out = await fleet.execOk(fleet.client, [NODE, '-e', PROBE, dst, String(PORT), String(n), String(rounds)], 60_000);
  return (JSON.parse(out) as { answers: [number, (string | null)[]][] }).answers;
}

describe.runIf(ROOT)('fleet topology in network namespaces (root)', () => {
  it('ECMP spreads UDP flows to the VIP over both LB namespaces, each flow sticks to one LB, backends are reachable', async () => {
    let names: string[] = [];
    await withFleet({ timeoutMs: 90_000 }, async (fleet) => {
      names = fleet.all.map((n) => n.name);
      expect(fleet.existingNamespaces().sort()).toEqual([...names].sort());
      expect(await fleet.vipNexthops()).toEqual(fleet.lbs.map((l) => l.address).sort());
      expect((await fleet.execOk(fleet.router, ['sysctl', '-n', 'net.ipv4.fib_multipath_hash_policy'])).trim()).toBe('1');
      for (const lb of fleet.lbs) await startEcho(fleet, lb, fleet.vip, lb.name);
      for (const be of fleet.backends) await startEcho(fleet, be, be.address as string, be.name);

      const answers = await probeFrom(fleet, fleet.vip, 200, 2);
      expect(answers.length).toBe(200);
      expect(new Set(answers.map(([p]) => p)).size).toBe(200); // 200 distinct source ports
      const perLb = new Map<string, number>();
      for (const [, tags] of answers) {
        expect(tags[0]).not.toBeNull();
        expect(tags[1]).toBe(tags[0]); // one flow, one LB
        perLb.set(tags[0] as string, (perLb.get(tags[0] as string) ?? 0) + 1);
      }
      expect([...perLb.keys()].sort()).toEqual(fleet.lbs.map((l) => l.name).sort());
      for (const lb of fleet.lbs) expect(perLb.get(lb.name)).toBeGreaterThanOrEqual(30); // ~100 each expected

      // Each backend's unicast address answers from its own namespace.
      for (const be of fleet.backends) {
        const [[, tags]] = await probeFrom(fleet, be.address as string, 1, 1);
        expect(tags[0]).toBe(be.name);
      }

      // Changing the route moves every flow: only lb1 left.
      await fleet.setVipNexthops([fleet.lbs[0]]);
      expect(await fleet.vipNexthops()).toEqual([fleet.lbs[0].address]);
      const after = await probeFrom(fleet, fleet.vip, 40, 1);
      expect(after.every(([, t]) => t[0] === fleet.lbs[0].name)).toBe(true);
      expect(fleet.trackedPids().length).toBe(fleet.lbs.length + fleet.backends.length);
    });
    // teardown: no namespace of this fleet is left
    const left = listNamespaces();
    for (const n of names) expect(left).not.toContain(n);
  });

  it('teardown kills every tracked process and deletes every namespace, even when the body throws', async () => {
    let fleetRef: Fleet | undefined;
    let pids: number[] = [];
    await expect(
      withFleet({ backendCount: 1 }, async (fleet) => {
        fleetRef = fleet;
        fleet.spawn(fleet.lbs[0], ['sleep', '1000']);
        fleet.spawn(fleet.backends[0], ['sh', '-c', 'sleep 1000 & sleep 1000']); // a child of a child
        await new Promise((r) => setTimeout(r, 200));
        pids = fleet.all.flatMap((n) => (fleet.existingNamespaces().includes(n.name) ? namespacePids(n.name) : []));
        expect(pids.length).toBeGreaterThanOrEqual(3);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(fleetRef?.existingNamespaces()).toEqual([]);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it('a body that hangs is cut by the timeout and still torn down', async () => {
    let fleetRef: Fleet | undefined;
    let pid = 0;
    await expect(
      withFleet({ lbCount: 1, backendCount: 0, timeoutMs: 1500 }, async (fleet) => {
        fleetRef = fleet;
        const c = fleet.spawn(fleet.client, ['sleep', '1000']);
        pid = c.pid ?? 0;
        await new Promise(() => undefined); // never settles
      }),
    ).rejects.toBeInstanceOf(FleetError);
    expect(fleetRef?.existingNamespaces()).toEqual([]);
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });

  it('two fleets at once get distinct names and do not interfere', async () => {
    const a = await createFleet({ lbCount: 1, backendCount: 0 });
    const b = await createFleet({ lbCount: 1, backendCount: 0 });
    try {
      expect(a.id).not.toBe(b.id);
      expect(a.router.name).not.toBe(b.router.name);
      expect(a.existingNamespaces().length).toBe(3);
      expect(b.existingNamespaces().length).toBe(3);
    } finally {
      await a.teardown();
      await b.teardown();
    }
    expect(a.existingNamespaces()).toEqual([]);
    expect(b.existingNamespaces()).toEqual([]);
    await b.teardown(); // idempotent
  });
});

/** Running (a zombie waiting for its parent to reap it counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

