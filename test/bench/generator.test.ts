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

// Session mode (bench/sessions): clients that took preferred_address send to their owner's own
// address; per-connection NAT rebinding and the restart mark record frame numbers; echoes set
// the per-frame bitmap, and those not sent by a backend address count as having crossed the tier.
describe('Generator session mode', () => {
  const owner = Int8Array.of(0, 1, 0, 1);
  const gen = new Generator(
    {
      conns: 4,
      sourceAddresses: ['127.0.3.54', '127.0.3.55'],
      packetSize: 160,
      seed: 4,
      schemes: { plaintext: scheme },
      spareShare: 1,
    },
    owner,
  );
  const rowBytes = 8;
  const down = new SharedArrayBuffer(4 * rowBytes);
  const bits = new Uint8Array(down);
  /** conn -> "host:port" of every frame it sent, in order, and where it arrived. */
  const from = new Map<number, string[]>();
  const at = new Map<number, Set<string>>();
  let a: Socket; // backend 0, on a backend address
  let t: Socket; // "backend 1" reached through a tier address: what answers is not a backend address

  const backend = async (host: string, name: string): Promise<Socket> => {
    const s = createSocket('udp4');
    s.on('message', (m: Buffer, r: RemoteInfo) => {
      const t: Trailer = { trial: 0, conn: 0, seq: 0, kind: 0, length: 0, sendTimeUs: 0 };
      if (!readTrailer(m, t) || t.kind !== KIND_SHORT) return;
      from.set(t.conn, [...(from.get(t.conn) ?? []), `${r.address}:${r.port}`]);
      at.set(t.conn, (at.get(t.conn) ?? new Set()).add(name));
      s.send(m, r.port, r.address);
    });
    await new Promise<void>((r) => s.bind(0, host, () => r()));
    return s;
  };

  beforeAll(async () => {
    a = await backend('127.0.3.56', 'A');
    t = await backend('127.0.3.58', 'T');
    await gen.init();
    gen.sessionMode({ down, rowBytes, sinkHosts: ['127.0.3.56', '127.0.3.57'], latencyFrames: 1000 });
  });
  afterAll(async () => {
    await gen.close();
    for (const s of [a, t]) await new Promise<void>((r) => s.close(() => r()));
  });

  it('sends each session to its owner, rebinds one, marks all, and fills the echo bitmap', async () => {
    await gen.connect({ host: '127.0.3.56', port: a.address().port });
    expect(gen.mint('plaintext')).toBe(4);
    await gen.connectOwners([
      { host: '127.0.3.56', port: a.address().port },
      { host: '127.0.3.58', port: t.address().port },
    ]);
    const run = await gen.run({
      trial: 7,
      rate: 400, // 100 frames/s per session
      durationMs: 300,
      targets: [{ host: '127.0.3.56', port: a.address().port }],
      events: [
        { atMs: 100, type: 'rebind-conn', conn: 2 },
        { atMs: 200, type: 'mark' },
      ],
      resetSeq: true,
    });
    await sleep(100);
    const r = gen.sessionReport();
    expect(r.sent.reduce((x, y) => x + y, 0)).toBe(run.sent);
    // Owners 0, 1, 0, 1: straight to their owner's address, never elsewhere.
    expect([0, 1, 2, 3].map((c) => [...(at.get(c) ?? [])])).toEqual([['A'], ['T'], ['A'], ['T']]);
    // Only conn 2 rebound, at the frame number recorded; its source port changed there.
    expect([0, 1, 3].map((c) => r.rebindSeq[c])).toEqual([-1, -1, -1]);
    const seq2 = r.rebindSeq[2];
    expect(seq2).toBeGreaterThan(0);
    expect(seq2).toBeLessThan(r.sent[2]);
    const ports2 = from.get(2)!;
    expect(new Set(ports2.slice(0, seq2)).size).toBe(1);
    expect(new Set(ports2.slice(seq2)).size).toBe(1);
    expect(ports2[seq2]).not.toBe(ports2[0]);
    for (const c of [0, 1, 3]) expect(new Set(from.get(c)).size).toBe(1);
    // The mark fell between the rebinding and the end, for every session.
    for (let c = 0; c < 4; c++) {
      expect(r.markSeq[c]).toBeGreaterThan(0);
      expect(r.markSeq[c]).toBeLessThanOrEqual(r.sent[c]);
    }
    expect(r.markSeq[2]).toBeGreaterThanOrEqual(seq2);
    // Every frame was echoed: bits 0..sent-1 of each row, nothing beyond.
    for (let c = 0; c < 4; c++) {
      let set = 0;
      for (let f = 0; f < rowBytes * 8; f++) if (bits[c * rowBytes + (f >> 3)] & (1 << (f & 7))) set++;
      expect(set).toBe(r.sent[c]);
    }
    // Echoes from 127.0.3.58 (not a backend address), and only those, crossed the tier.
    expect(r.echoes).toBe(run.sent);
    expect(r.echoesViaTier).toBe(r.sent[1] + r.sent[3]);
  });
});
