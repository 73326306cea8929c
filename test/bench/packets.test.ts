// The generator's datagrams: v1 Initial layout, short headers carrying a CID that decodes to the
// owner's server ID, the trailer, and deterministic selection.
import { describe, expect, it } from 'vitest';
import { createConfig, decodeServerId, encodeConnectionId } from '../../src/cid/index.js';
import { parseHeader, PacketHeader } from '../../src/wire/index.js';
import { buildInitial, buildShort } from '../../bench/lib/packets.js';
import { Prng } from '../../bench/lib/prng.js';
import { KIND_INITIAL, KIND_SHORT, readTrailer, stampTrailer, type Trailer } from '../../bench/lib/trailer.js';
import { selected } from '../../bench/load/generator.js';
import { bucketOf, bucketValue, percentile, HISTOGRAM_BUCKETS } from '../../bench/lib/histogram.js';

const t = (): Trailer => ({ trial: 0, conn: 0, seq: 0, kind: 0, length: 0, sendTimeUs: 0 });

describe('bench packets', () => {
  it('builds 1200-byte v1 Initials with a random 8..20-byte client DCID', () => {
    const rng = new Prng(3);
    for (const dcidLen of [8, 13, 20]) {
      const p = buildInitial(rng, 1200, 9, 42, dcidLen);
      expect(p.length).toBe(1200);
      expect(p[0] & 0xf0).toBe(0xc0); // long header, fixed bit, Initial
      expect(p.readUInt32BE(1)).toBe(1);
      expect(p[5]).toBe(dcidLen);
      const tr = t();
      expect(readTrailer(p, tr)).toBe(true);
      expect(tr).toMatchObject({ trial: 9, conn: 42, kind: KIND_INITIAL, length: 1200 });
    }
  });

  it('puts the minted CID right after the first octet of a short header; it decodes to the owner', () => {
    const config = createConfig({
      configId: 2,
      serverIdLength: 2,
      nonceLength: 6,
      key: Uint8Array.from(Buffer.from('8f95f09245765f80256934e50c66207f', 'hex')),
    });
    const sid = Uint8Array.of(0x03, 0x03);
    const cid = encodeConnectionId(config, sid, new Uint8Array(6).fill(7));
    const p = buildShort(new Prng(1), 1200, 1, 5, cid);
    expect(p[0] & 0xc0).toBe(0x40);
    expect(decodeServerId(config, p.subarray(1, 1 + cid.length))).toEqual(sid);
    const h = new PacketHeader();
    expect(parseHeader(p, h)).toBe(true);
    expect(h.form).toBe(0);
    stampTrailer(p, 77, 123.5);
    const tr = t();
    readTrailer(p, tr);
    expect(tr).toMatchObject({ conn: 5, seq: 77, kind: KIND_SHORT, sendTimeUs: 123.5 });
  });

  it('is deterministic for a seed', () => {
    expect(buildInitial(new Prng(11), 1200, 0, 0, 8)).toEqual(buildInitial(new Prng(11), 1200, 0, 0, 8));
    expect(buildInitial(new Prng(11), 1200, 0, 0, 8)).not.toEqual(buildInitial(new Prng(12), 1200, 0, 0, 8));
  });

  it('selects about the requested share of connections, the same ones every time', () => {
    let n = 0;
    for (let c = 0; c < 10_000; c++) if (selected(c, 0.1, 1)) n++;
    expect(n).toBeGreaterThan(900);
    expect(n).toBeLessThan(1100);
    for (let c = 0; c < 100; c++) expect(selected(c, 0.1, 1)).toBe(selected(c, 0.1, 1));
    // A smaller share selects a subset of a larger one (rebinding uses spare sockets of the larger set).
    for (let c = 0; c < 10_000; c++) if (selected(c, 0.1, 5)) expect(selected(c, 0.5, 5)).toBe(true);
  });

  it('computes percentiles from the latency histogram', () => {
    const h = new Uint32Array(HISTOGRAM_BUCKETS);
    for (let us = 1; us <= 100; us++) h[bucketOf(us)]++;
    expect(percentile(h, 50)).toBe(50);
    expect(percentile(h, 99)).toBe(99);
    h[bucketOf(100_000)] += 1000;
    const p99 = percentile(h, 99)!;
    expect(p99).toBeGreaterThan(95_000);
    expect(p99).toBeLessThanOrEqual(100_000);
    expect(bucketValue(bucketOf(5000))).toBeLessThanOrEqual(5000);
    expect(percentile(new Uint32Array(HISTOGRAM_BUCKETS), 50)).toBeNull();
  });
});
