// The fleet for real (issue 6, items 1 and 3): two stateless `quic-lb serve` processes behind
// an ECMP router, three demo backends, Debian's ngtcp2 client. Root only (CI); needs the build.
import { describe, expect, it } from 'vitest';
import {
  BACKEND_PORT,
  RUN,
  client,
  isDemoBody,
  received,
  useQuicFleet,
  total,
  whileAlternatingLbs,
  type ClientResult,
} from './quic-fleet.js';

describe.runIf(RUN)('QUIC fleet: two stateless LBs behind ECMP, three demo backends, a real QUIC client (root)', () => {
  const ctx = useQuicFleet();

  it('connections spread over both LBs and all backends; handshakes complete; clients move to the preferred addresses', async () => {
    const { fleet, dir } = ctx;
    const before = await Promise.all(fleet.lbs.map((lb) => received(fleet, lb)));
    const results: ClientResult[] = [];
    for (let batch = 0; batch < 4; batch++) {
      results.push(
        ...(await Promise.all(
          Array.from({ length: 6 }, () => client(fleet, dir, '/bytes/100000', ['--delay-stream=300ms'])),
        )),
      );
    }
    const usedBackends = new Set<string>();
    for (const r of results) {
      expect(r.out).toContain('QUIC handshake has been confirmed');
      const sel = /selected server preferred_address is \[([\d.]+)\]:(\d+)/.exec(r.out);
      expect(sel).not.toBeNull();
      const [, addr, port] = sel as RegExpExecArray;
      expect(Number(port)).toBe(BACKEND_PORT);
      expect(fleet.backends.map((b) => b.address)).toContain(addr);
      expect(r.out).toMatch(
        new RegExp(
          `Path validation against path \\{local:\\[[\\d.]+\\]:\\d+, remote:\\[${addr.replace(/\./g, '\\.')}\\]:${BACKEND_PORT}\\} succeeded`,
        ),
      );
      expect(r.out).toContain('[:status: 200]');
      expect(isDemoBody(r.file, 100_000)).toBe(true);
      usedBackends.add(addr);
    }
    expect(usedBackends.size).toBe(3); // 24 connections by a keyed 4-tuple hash: all three backends
    const after = await Promise.all(fleet.lbs.map((lb) => received(fleet, lb)));
    for (let i = 0; i < fleet.lbs.length; i++) {
      expect(total(after[i]) - total(before[i])).toBeGreaterThan(0); // ECMP used both LBs
      expect(after[i].dropped_malformed ?? 0).toBe(0);
    }
  }, 120_000);

  it('packets of one connection alternating between the two LBs: nothing breaks', async () => {
    const { fleet, dir } = ctx;
    const [lb1, lb2] = fleet.lbs;
    const b1 = await received(fleet, lb1);
    const b2 = await received(fleet, lb2);
    const size = 12_000_000;
    const { result: r, flips } = await whileAlternatingLbs(fleet, () =>
      client(fleet, dir, `/bytes/${size}`, ['--no-preferred-addr']),
    );
    expect(r.out).toContain('[:status: 200]');
    expect(isDemoBody(r.file, size)).toBe(true);
    expect(flips).toBeGreaterThanOrEqual(4);
    const a1 = await received(fleet, lb1);
    const a2 = await received(fleet, lb2);
    expect((a1.routed ?? 0) - (b1.routed ?? 0)).toBeGreaterThan(0);
    expect((a2.routed ?? 0) - (b2.routed ?? 0)).toBeGreaterThan(0);
  }, 120_000);
});
