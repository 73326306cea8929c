// UDP probing helpers for fleet tests: a tagged echo server run inside a namespace, and a
// client that sends from many distinct source ports (many flows) and reports who answered.
import type { Fleet, Ns } from './netns.js';

const NODE = process.execPath;
export const PORT = 9000;

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

export async function startEcho(fleet: Fleet, ns: Ns, addr: string, tag: string): Promise<void> {
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

export async function probeFrom(
  fleet: Fleet,
  dst: string,
  n: number,
  rounds: number,
): Promise<[number, (string | null)[]][]> {
  const out = await fleet.execOk(
    fleet.client,
    [NODE, '-e', PROBE, dst, String(PORT), String(n), String(rounds)],
    60_000,
  );
  return (JSON.parse(out) as { answers: [number, (string | null)[]][] }).answers;
}
