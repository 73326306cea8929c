// The attacker tool itself (raw-udp.c): a datagram it sends with a spoofed source address and
// port arrives at a real UDP socket with exactly that source, the port included (0 and 65535),
// and its payload intact (the kernel drops a datagram with a wrong UDP checksum), over IPv4 and
// IPv6. Inside a namespace of its own; the listener is a node process stopped by its PID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { createFleet, canUseNetns, type Fleet } from '../netns/netns.js';
import { buildRawUdp, rawSend, writePayloads } from './native.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = canUseNetns();
const V6 = 'fd00:5151::2';
const LISTENER = `
const dgram = require('node:dgram');
for (const [type, addr] of [['udp4', process.argv[1]], ['udp6', process.argv[2]]]) {
  const s = dgram.createSocket(type);
  s.on('message', (m, r) => process.stdout.write(JSON.stringify({ address: r.address, port: r.port, hex: m.toString('hex') }) + '\\n'));
  s.bind(5555, addr, () => process.stdout.write('READY ' + type + '\\n'));
}`;

describe('raw-udp send', () => {
  let fleet: Fleet | undefined;
  let lines: string[] = [];
  let bin = '';
  beforeAll(async () => {
    if (!ROOT) throw new Error('test:hostile needs root (network namespaces, raw sockets); CI runs it as root');
    bin = buildRawUdp();
    fleet = await createFleet({ prefix: 'qlbh', lbCount: 1, backendCount: 0 });
    await fleet.execOk(fleet.client, ['ip', '-6', 'addr', 'add', `${V6}/64`, 'dev', 'eth0', 'nodad']);
    const l = fleet.spawn(fleet.client, [process.execPath, '-e', LISTENER, fleet.client.address as string, V6]);
    l.stdout?.setEncoding('utf8');
    let buf = '';
    l.stdout?.on('data', (d: string) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      lines.push(...parts);
    });
    await waitFor('listener', async () => lines.filter((x) => x.startsWith('READY')).length === 2, 10_000);
  }, 60_000);
  afterAll(async () => {
    await fleet?.teardown();
  });

  const cases = [
    { family: 'IPv4', src: '198.51.100.9', sport: 0 },
    { family: 'IPv4', src: '203.0.113.200', sport: 65535 },
    { family: 'IPv6', src: 'fd00:9::9', sport: 0 },
    { family: 'IPv6', src: '2001:db8::1', sport: 1 },
  ];
  for (const c of cases) {
    it(`${c.family}: source ${c.src} port ${c.sport} arrives as sent, payload intact`, async () => {
      const f = fleet as Fleet;
      lines = lines.filter((x) => x.startsWith('READY'));
      const payloads = [Buffer.from('hostile-0123456789abcdef', 'latin1'), Buffer.alloc(1200, 0xa5), Buffer.of(0xff)];
      const file = path.join(process.env.TMPDIR ?? '/tmp', `tools-${c.sport}-${c.family}.bin`);
      writePayloads(file, payloads);
      const dst = c.family === 'IPv4' ? `${f.client.address}:5555` : `[${V6}]:5555`;
      const r = await rawSend(f, f.client, bin, { file, dst, src: c.src, sport: c.sport, count: 6, rate: 1000 });
      expect(r).toMatchObject({ sent: 6, errors: 0, payload_octets: 2 * (24 + 1200 + 1) });
      expect(r.ip_octets).toBe(r.payload_octets + 6 * (8 + (c.family === 'IPv4' ? 20 : 40)));
      await waitFor('6 datagrams', async () => lines.filter((x) => x.startsWith('{')).length >= 6, 5000);
      const got = lines
        .filter((x) => x.startsWith('{'))
        .map((x) => JSON.parse(x) as { address: string; port: number; hex: string });
      expect(got.map((g) => [g.address, g.port])).toEqual(Array(6).fill([c.src, c.sport]));
      expect(got.map((g) => g.hex)).toEqual([...payloads, ...payloads].map((p) => p.toString('hex')));
    });
  }
});
