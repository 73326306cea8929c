// The load generator over real sockets: one source port per connection, Initials first, CIDs
// minted for the owner, and path events that keep (switch) or change (rebind) the 4-tuple.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfig, decodeServerId } from '../../src/cid/index.js';
import { Generator, type CidScheme } from '../../bench/load/generator.js';
import { KIND_INITIAL, KIND_SHORT, readTrailer, type Trailer } from '../../bench/lib/trailer.js';
import { sleep } from '../helpers/wait.js';

const scheme: CidScheme = { configId: 0, serverIdLength: 2, nonceLength: 6, serverIds: [0x0a0b, 0x0c0d] };

/** `from` is the sender's address:port (the client side of the 4-tuple). */
interface Seen {
  conn: number;
  kind: number;
  from: string;
  at: 'A' | 'B';
  dcid: Buffer;
}

describe('Generator', () => {
  const seen: Seen[] = [];
  let a: Socket;
  let b: Socket;
  const owner = new Int8Array(6).fill(-1);
  const gen = new Generator(
    {
      conns: 6,
      sourceAddresses: ['127.0.3.50', '127.0.3.51'],
      packetSize: 300,
      seed: 9,
      schemes: { plaintext: scheme },
      spareShare: 0.5,
    },
    owner,
  );

  const listen = async (host: string, at: 'A' | 'B'): Promise<Socket> => {
    const s = createSocket('udp4');
    s.on('message', (m: Buffer, r: RemoteInfo) => {
      const t: Trailer = { trial: 0, conn: 0, seq: 0, kind: 0, length: 0, sendTimeUs: 0 };
      if (readTrailer(m, t))
        seen.push({ conn: t.conn, kind: t.kind, from: `${r.address}:${r.port}`, at, dcid: m.subarray(1, 10) });
    });
    await new Promise<void>((r) => s.bind(0, host, () => r()));
    return s;
  };
  const target = (s: Socket, host: string) => ({ host, port: s.address().port });
  const settle = async (n: number): Promise<void> => {
    for (let i = 0; i < 100 && seen.length < n; i++) await sleep(10);
  };

  beforeAll(async () => {
    a = await listen('127.0.3.52', 'A');
    b = await listen('127.0.3.53', 'B');
    await gen.init();
  });
  afterAll(async () => {
    await gen.close();
    for (const s of [a, b]) await new Promise<void>((r) => s.close(() => r()));
  });

  it("sends one Initial per connection from its own source port, then short headers with the owner's CIDs", async () => {
    await gen.connect(target(a, '127.0.3.52'));
    const hs = await gen.handshake(1, 5000);
    expect(hs.sent).toBe(6);
    await settle(6);
    const initials = seen.filter((s) => s.kind === KIND_INITIAL);
    expect(initials.map((s) => s.conn).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Set(initials.map((s) => s.from)).size).toBe(6);
    // Connections 0-2 "belong" to backend 0, 3-4 to backend 1; 5 lost its Initial.
    owner.set([0, 0, 0, 1, 1, -1]);
    expect(gen.mint('plaintext')).toBe(5);
    seen.length = 0;
    const run = await gen.run({ trial: 2, rate: 2000, durationMs: 100, targets: [target(a, '127.0.3.52')] });
    await settle(run.sent);
    expect(run.sent).toBeGreaterThan(50);
    expect(seen.length).toBe(run.sent);
    const config = createConfig({ configId: 0, serverIdLength: 2, nonceLength: 6 });
    for (const s of seen) {
      expect(s.kind).toBe(KIND_SHORT);
      expect(s.conn).not.toBe(5);
      const sid = decodeServerId(config, s.dcid)!;
      expect((sid[0] << 8) | sid[1]).toBe(scheme.serverIds[owner[s.conn]]);
      expect(s.from).toBe(initials.find((i) => i.conn === s.conn)!.from);
    }
  });

  it('keeps the 4-tuple when a flow switches router instance (ECMP), changes it on NAT rebinding', async () => {
    await gen.connect(target(a, '127.0.3.52'));
    const portOf = new Map<number, string>();
    seen.length = 0;
    await gen.run({ trial: 3, rate: 2000, durationMs: 60, targets: [target(a, '127.0.3.52')] });
    await settle(60);
    for (const s of seen) portOf.set(s.conn, s.from);
    seen.length = 0;
    const run = await gen.run({
      trial: 4,
      rate: 2000,
      durationMs: 200,
      targets: [target(a, '127.0.3.52'), target(b, '127.0.3.53')],
      events: [
        { atMs: 50, type: 'switch', share: 1, instance: 1 },
        { atMs: 120, type: 'rebind', share: 0.5 },
      ],
    });
    await settle(run.sent);
    const atB = seen.filter((s) => s.at === 'B');
    expect(atB.length).toBeGreaterThan(0);
    const rebound = new Set<number>();
    for (const s of atB) if (s.from !== portOf.get(s.conn)) rebound.add(s.conn);
    // Before the rebinding event every packet at B came from the connection's original port.
    const firstAtB = new Map<number, string>();
    for (const s of atB) if (!firstAtB.has(s.conn)) firstAtB.set(s.conn, s.from);
    for (const [conn, port] of firstAtB) expect(port).toBe(portOf.get(conn));
    // Rebinding moved some (those with a spare socket), not all.
    expect(rebound.size).toBeGreaterThan(0);
    expect(rebound.size).toBeLessThan(5);
  });
});
