import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isIPv6 } from 'node:net';
import {
  PP2_TYPE_QUICLB_AUTH,
  PROXY_ERROR_NAMES,
  PROXY_ERR_AUTH,
  PROXY_ERR_COMMAND,
  PROXY_ERR_FAMILY,
  PROXY_ERR_LENGTH,
  PROXY_ERR_SIGNATURE,
  PROXY_ERR_STALE,
  PROXY_ERR_TRUNCATED,
  PROXY_ERR_VERSION,
  ProxyCommand,
  ProxyDirection,
  ProxyHeader,
  ProxyHeaderTemplate,
  createProxyAuth,
  encodeProxyHeader,
  formatIPv6,
  formatProxyAddress,
  parseIPv4Into,
  parseIPv6Into,
  parseProxyHeader,
  proxyHeaderLength,
  signProxyHeader,
  writeProxyHeader,
} from '../../src/wire/index.js';
import { codeOf, hex } from './helpers.js';

const SIG = '0d0a0d0a000d0a515549540a';
const KEY = Buffer.alloc(32, 0x5a);
const T0 = 1_750_000_000_000; // fixed clock for tests
describe('PROXY v2 layout (haproxy proxy-protocol.txt §2.2)', () => {
  it('IPv4 DGRAM: 0x21 0x12, length 12, src addr, dst addr, src port, dst port', () => {
    const h = encodeProxyHeader({ srcAddr: '198.18.0.10', srcPort: 50000, dstAddr: '198.19.0.1', dstPort: 443 });
    expect(h.toString('hex')).toBe(SIG + '21' + '12' + '000c' + 'c612000a' + 'c6130001' + 'c350' + '01bb');
    const out = new ProxyHeader();
    const dg = Buffer.concat([h, hex('c000000001')]);
    expect(parseProxyHeader(dg, out)).toBe(28);
    expect(out).toMatchObject({
      command: ProxyCommand.PROXY,
      family: 4,
      srcPort: 50000,
      dstPort: 443,
      headerLength: 28,
      authenticated: false,
    });
    expect(formatProxyAddress(out, 'src')).toBe('198.18.0.10');
    expect(formatProxyAddress(out, 'dst')).toBe('198.19.0.1');
    expect(dg.subarray(28).toString('hex')).toBe('c000000001');
  });
  it('IPv6 DGRAM: 0x21 0x22, length 36', () => {
    const h = encodeProxyHeader({ family: 6, srcAddr: '2001:db8::1', srcPort: 1, dstAddr: '::1', dstPort: 4433 });
    expect(h.toString('hex')).toBe(
      SIG +
        '21' +
        '22' +
        '0024' +
        '20010db8000000000000000000000001' +
        '00000000000000000000000000000001' +
        '0001' +
        '1151',
    );
    const out = new ProxyHeader();
    expect(parseProxyHeader(h, out)).toBe(52);
    expect([
      out.family,
      formatProxyAddress(out, 'src'),
      formatProxyAddress(out, 'dst'),
      out.srcPort,
      out.dstPort,
    ]).toEqual([6, '2001:db8::1', '::1', 1, 4433]);
  });
  it('LOCAL: 0x20, AF_UNSPEC, no addresses', () => {
    const h = encodeProxyHeader({ command: 'local', srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0 });
    expect(h.toString('hex')).toBe(SIG + '20' + '00' + '0000');
    const out = new ProxyHeader();
    expect(parseProxyHeader(h, out)).toBe(16);
    expect([out.command, out.family]).toEqual([ProxyCommand.LOCAL, 0]);
  });
  it('LOCAL with an address block and TLVs skips them', () => {
    const h = hex(SIG + '20' + '11' + '0010' + '7f0000017f000001 00500050' + '04 0001 00');
    const out = new ProxyHeader();
    expect(parseProxyHeader(h, out)).toBe(32);
    expect(out.family).toBe(0);
  });
  it('unknown TLVs after the addresses are skipped (e.g. PP2_TYPE_NOOP 0x04)', () => {
    const h = hex(SIG + '21' + '12' + '0011' + '7f0000017f000002 1f901f91' + '04 0002 0000');
    const out = new ProxyHeader();
    expect(parseProxyHeader(h, out)).toBe(33);
    expect(formatProxyAddress(out, 'dst')).toBe('127.0.0.2');
  });
  it.each([
    ['bad signature', hex('0d0a0d0a000d0a515549540b 2112000c' + '00'.repeat(12)), PROXY_ERR_SIGNATURE],
    ['a QUIC packet', hex('c00000000108' + '00'.repeat(30)), PROXY_ERR_SIGNATURE],
    ['PROXY v1 text', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), PROXY_ERR_SIGNATURE],
    ['version 1 nibble', hex(SIG + '11' + '12' + '000c' + '00'.repeat(12)), PROXY_ERR_VERSION],
    ['version 3', hex(SIG + '31' + '12' + '000c' + '00'.repeat(12)), PROXY_ERR_VERSION],
    ['command 2', hex(SIG + '22' + '12' + '000c' + '00'.repeat(12)), PROXY_ERR_COMMAND],
    ['STREAM transport', hex(SIG + '21' + '11' + '000c' + '00'.repeat(12)), PROXY_ERR_FAMILY],
    ['AF_UNIX', hex(SIG + '21' + '32' + '00d8' + '00'.repeat(216)), PROXY_ERR_FAMILY],
    ['PROXY with AF_UNSPEC', hex(SIG + '21' + '00' + '0000'), PROXY_ERR_FAMILY],
    ['length shorter than the IPv4 block', hex(SIG + '21' + '12' + '000b' + '00'.repeat(11)), PROXY_ERR_LENGTH],
    ['length shorter than the IPv6 block', hex(SIG + '21' + '22' + '000c' + '00'.repeat(12)), PROXY_ERR_LENGTH],
    ['TLV header cut', hex(SIG + '21' + '12' + '000e' + '00'.repeat(12) + '0400'), PROXY_ERR_LENGTH],
    [
      'TLV value runs past the header',
      hex(SIG + '21' + '12' + '0010' + '00'.repeat(12) + '04000200'),
      PROXY_ERR_LENGTH,
    ],
    ['length beyond the datagram', hex(SIG + '21' + '12' + '0020' + '00'.repeat(12)), PROXY_ERR_TRUNCATED],
  ])('%s -> %i', (_n, bytes, code) => {
    expect(parseProxyHeader(bytes, new ProxyHeader())).toBe(code);
    expect(PROXY_ERROR_NAMES[-code]).toBeTypeOf('string');
  });
  it('every truncated prefix of a valid header is negative; longer ones parse the same', () => {
    for (const h of [
      encodeProxyHeader({ srcAddr: '10.0.0.1', srcPort: 1, dstAddr: '10.0.0.2', dstPort: 2 }),
      encodeProxyHeader({ srcAddr: 'fe80::1', srcPort: 1, dstAddr: 'fe80::2', dstPort: 2 }),
    ]) {
      const dg = Buffer.concat([h, Buffer.from('payload')]);
      const out = new ProxyHeader();
      for (let n = 0; n <= dg.length; n++) {
        const r = parseProxyHeader(dg.subarray(0, n), out);
        if (n < h.length) expect(r).toBe(PROXY_ERR_TRUNCATED);
        else expect(r).toBe(h.length);
      }
    }
  });
  it('encode misuse throws typed errors', () => {
    const base = { srcAddr: '127.0.0.1', srcPort: 1, dstAddr: '127.0.0.2', dstPort: 2 };
    expect(codeOf(() => encodeProxyHeader({ ...base, srcAddr: 'example.com' }))).toBe('ERR_PROXY_ADDRESS');
    expect(codeOf(() => encodeProxyHeader({ ...base, dstAddr: '::1' }))).toBe('ERR_PROXY_ADDRESS');
    expect(codeOf(() => encodeProxyHeader({ ...base, family: 6 }))).toBe('ERR_PROXY_FAMILY');
    expect(codeOf(() => encodeProxyHeader({ ...base, srcPort: 70000 }))).toBe('ERR_PROXY_PORT');
    expect(codeOf(() => encodeProxyHeader({ ...base, hmacKey: KEY }))).toBe('ERR_PROXY_PAYLOAD');
    expect(codeOf(() => encodeProxyHeader({ ...base, hmacKey: Buffer.alloc(8) }, Buffer.alloc(1)))).toBe(
      'ERR_PROXY_HMAC_KEY',
    );
    expect(codeOf(() => createProxyAuth(Buffer.alloc(15)))).toBe('ERR_PROXY_HMAC_KEY');
  });
  it('property: random v4/v6 headers round-trip, with and without a payload', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.tuple(fc.ipV4(), fc.ipV4()), fc.tuple(fc.ipV6(), fc.ipV6())),
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.uint8Array({ maxLength: 64 }),
        ([src, dst], sp, dp, payload) => {
          const h = encodeProxyHeader({ srcAddr: src, srcPort: sp, dstAddr: dst, dstPort: dp });
          const out = new ProxyHeader();
          const dg = Buffer.concat([h, payload]);
          expect(parseProxyHeader(dg, out)).toBe(h.length);
          expect([out.srcPort, out.dstPort]).toEqual([sp, dp]);
          // addresses: compare octets
          const fam = isIPv6(src) ? 6 : 4;
          expect(out.family).toBe(fam);
          const expect16 = new Uint8Array(16);
          if (fam === 4) parseIPv4Into(src, expect16, 0);
          else parseIPv6Into(src, expect16, 0);
          expect(
            Buffer.from(out.srcAddr.subarray(0, fam === 4 ? 4 : 16)).equals(
              Buffer.from(expect16.subarray(0, fam === 4 ? 4 : 16)),
            ),
          ).toBe(true);
          expect(Buffer.from(dg.subarray(h.length)).equals(Buffer.from(payload))).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
  it('property: random bytes never throw and never claim more than they have', () => {
    const sig = hex(SIG);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.boolean(), (b, withSig) => {
        const buf = withSig ? Buffer.concat([sig, b]) : Buffer.from(b);
        const r = parseProxyHeader(buf, new ProxyHeader());
        expect(Number.isInteger(r)).toBe(true);
        expect(r).toBeLessThanOrEqual(buf.length);
        expect(r === 0).toBe(false);
        const r2 = parseProxyHeader(buf, new ProxyHeader(), createProxyAuth(KEY));
        expect(r2 < 0 || r2 === r).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('PROXY v2 HMAC authentication TLV (0xEA)', () => {
  const payload = hex('40 0102030405060708 aabbccdd'); // a short-header QUIC packet
  const opts = { srcAddr: '198.19.0.1', srcPort: 443, dstAddr: '198.18.0.10', dstPort: 50000 };
  const now = (): number => T0;
  const lbAuth = createProxyAuth(KEY, { expect: ProxyDirection.TO_CLIENT, now });
  const backendAuth = createProxyAuth(KEY, { expect: ProxyDirection.TO_BACKEND, now });
  const signed = (): Buffer => {
    const h = encodeProxyHeader(
      { ...opts, hmacKey: createProxyAuth(KEY, { now }), direction: ProxyDirection.TO_CLIENT },
      payload,
    );
    return Buffer.concat([h, payload]);
  };

  it('layout: TLV type 0xEA, length 25, direction, 64-bit ms timestamp, 16-octet MAC', () => {
    const dg = signed();
    const hlen = proxyHeaderLength(4, true);
    expect(hlen).toBe(16 + 12 + 28);
    expect(dg.readUInt16BE(14)).toBe(12 + 28);
    const t = 16 + 12;
    expect(dg[t]).toBe(PP2_TYPE_QUICLB_AUTH);
    expect(dg.readUInt16BE(t + 1)).toBe(25);
    expect(dg[t + 3]).toBe(ProxyDirection.TO_CLIENT);
    expect(Number(dg.readBigUInt64BE(t + 4))).toBe(T0);
  });
  it('accepts a correctly signed header and reports it authenticated', () => {
    const out = new ProxyHeader();
    expect(parseProxyHeader(signed(), out, lbAuth)).toBe(56);
    expect(out).toMatchObject({
      authenticated: true,
      direction: ProxyDirection.TO_CLIENT,
      timestampMs: T0,
      dstPort: 50000,
    });
    expect(formatProxyAddress(out, 'dst')).toBe('198.18.0.10');
    // raw key form works too (default window around Date.now: a fresh signature)
    const fresh = encodeProxyHeader({ ...opts, hmacKey: KEY }, payload);
    expect(parseProxyHeader(Buffer.concat([fresh, payload]), out, KEY)).toBe(56);
    // without a key the header still parses (unauthenticated)
    expect(parseProxyHeader(signed(), out)).toBe(56);
    expect(out.authenticated).toBe(false);
  });
  it('rejects: wrong key, missing TLV, wrong direction, stale or future timestamp', () => {
    const out = new ProxyHeader();
    expect(parseProxyHeader(signed(), out, createProxyAuth(Buffer.alloc(32, 1), { now }))).toBe(PROXY_ERR_AUTH);
    const plain = Buffer.concat([encodeProxyHeader(opts), payload]);
    expect(parseProxyHeader(plain, out, lbAuth)).toBe(PROXY_ERR_AUTH);
    expect(parseProxyHeader(signed(), out, backendAuth)).toBe(PROXY_ERR_AUTH);
    const late = createProxyAuth(KEY, { now: () => T0 + 30_001 });
    const early = createProxyAuth(KEY, { now: () => T0 - 30_001 });
    const edge = createProxyAuth(KEY, { now: () => T0 + 30_000 });
    expect(parseProxyHeader(signed(), out, late)).toBe(PROXY_ERR_STALE);
    expect(parseProxyHeader(signed(), out, early)).toBe(PROXY_ERR_STALE);
    expect(parseProxyHeader(signed(), out, edge)).toBe(56);
  });
  it('every single-bit flip anywhere in header or payload is rejected (never accepted)', () => {
    const dg = signed();
    const out = new ProxyHeader();
    for (let i = 0; i < dg.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const m = Buffer.from(dg);
        m[i] ^= 1 << bit;
        expect(parseProxyHeader(m, out, lbAuth)).toBeLessThan(0);
      }
    }
  });
  it('every truncation and every appended octet is rejected', () => {
    const dg = signed();
    const out = new ProxyHeader();
    for (let n = 0; n < dg.length; n++) expect(parseProxyHeader(dg.subarray(0, n), out, lbAuth)).toBeLessThan(0);
    expect(parseProxyHeader(Buffer.concat([dg, hex('00')]), out, lbAuth)).toBe(PROXY_ERR_AUTH);
  });
  it('two auth TLVs are rejected', () => {
    const h = encodeProxyHeader({ ...opts, reserveAuth: true });
    const dup = Buffer.concat([h, h.subarray(28)]);
    dup.writeUInt16BE(dup.length - 16, 14);
    expect(parseProxyHeader(dup, new ProxyHeader(), lbAuth)).toBe(PROXY_ERR_AUTH);
  });
  it('LOCAL headers can be authenticated too', () => {
    const auth = createProxyAuth(KEY, { now });
    const h = encodeProxyHeader(
      { command: 'local', srcAddr: '', srcPort: 0, dstAddr: '', dstPort: 0, hmacKey: auth },
      new Uint8Array(0),
    );
    const out = new ProxyHeader();
    expect(parseProxyHeader(h, out, auth)).toBe(16 + 28);
    expect(out.authenticated).toBe(true);
    h[h.length - 1] ^= 1;
    expect(parseProxyHeader(h, out, auth)).toBe(PROXY_ERR_AUTH);
  });
});

describe('PROXY v2 authentication with a key list (rotation)', () => {
  const T0 = 1_700_000_000_000;
  const now = (): number => T0;
  const [k1, k2, k3] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2), Buffer.alloc(32, 3)];
  const payload = hex('c0ffee');
  const opts = { srcAddr: '192.0.2.1', srcPort: 443, dstAddr: '198.51.100.7', dstPort: 5000 };
  const signed = (key: Uint8Array): Buffer =>
    Buffer.concat([
      encodeProxyHeader(
        { ...opts, hmacKey: createProxyAuth(key, { now }), direction: ProxyDirection.TO_CLIENT },
        payload,
      ),
      payload,
    ]);
  it('accepts a header signed with any listed key and names its index; refuses a key not listed', () => {
    const auth = createProxyAuth([k2, k1], { expect: ProxyDirection.TO_CLIENT, now });
    const out = new ProxyHeader();
    expect(parseProxyHeader(signed(k1), out, auth)).toBeGreaterThan(0);
    expect(out).toMatchObject({ authenticated: true, keyIndex: 1 });
    expect(parseProxyHeader(signed(k2), out, auth)).toBeGreaterThan(0);
    expect(out.keyIndex).toBe(0);
    // The key that matched last is tried first; the answer never depends on that order.
    for (const k of [k1, k1, k2, k1, k2, k2, k1]) {
      expect(parseProxyHeader(signed(k), out, auth)).toBeGreaterThan(0);
      expect(out.keyIndex).toBe(k === k2 ? 0 : 1);
    }
    expect(parseProxyHeader(signed(k3), out, auth)).toBe(PROXY_ERR_AUTH);
    expect(out).toMatchObject({ authenticated: false, keyIndex: -1 });
    // Unauthenticated parse: keyIndex -1.
    expect(parseProxyHeader(signed(k1), out)).toBeGreaterThan(0);
    expect(out.keyIndex).toBe(-1);
  });
  it('signs with the first key only', () => {
    const auth = createProxyAuth([k2, k1], { now });
    const dg = Buffer.concat([
      encodeProxyHeader({ ...opts, hmacKey: auth, direction: ProxyDirection.TO_CLIENT }, payload),
      payload,
    ]);
    expect(parseProxyHeader(dg, new ProxyHeader(), createProxyAuth(k2, { now }))).toBeGreaterThan(0);
    expect(parseProxyHeader(dg, new ProxyHeader(), createProxyAuth(k1, { now }))).toBe(PROXY_ERR_AUTH);
  });
  it('a one-key list behaves as the key itself; a tampered datagram fails every key', () => {
    const out = new ProxyHeader();
    const dg = signed(k1);
    expect(parseProxyHeader(dg, out, createProxyAuth([k1], { now }))).toBe(
      parseProxyHeader(dg, new ProxyHeader(), createProxyAuth(k1, { now })),
    );
    dg[dg.length - 1] ^= 1;
    expect(parseProxyHeader(dg, out, createProxyAuth([k3, k2, k1], { now }))).toBe(PROXY_ERR_AUTH);
  });
  it('refuses an empty list, more than 8 keys and a short key (ERR_PROXY_HMAC_KEY)', () => {
    expect(codeOf(() => createProxyAuth([]))).toBe('ERR_PROXY_HMAC_KEY');
    expect(codeOf(() => createProxyAuth(Array.from({ length: 9 }, () => k1)))).toBe('ERR_PROXY_HMAC_KEY');
    expect(codeOf(() => createProxyAuth([k1, Buffer.alloc(15)]))).toBe('ERR_PROXY_HMAC_KEY');
  });
});

describe('hot-path writers', () => {
  it('writeProxyHeader writes the same octets as encodeProxyHeader, at an offset, without touching neighbours', () => {
    const src = new Uint8Array([192, 0, 2, 1]);
    const dst = new Uint8Array([198, 51, 100, 7]);
    const buf = Buffer.alloc(100, 0xee);
    expect(writeProxyHeader(buf, 10, src, 1234, dst, 443)).toBe(38);
    expect(buf[9]).toBe(0xee);
    expect(buf[38]).toBe(0xee);
    const ref = encodeProxyHeader({ srcAddr: '192.0.2.1', srcPort: 1234, dstAddr: '198.51.100.7', dstPort: 443 });
    expect(buf.subarray(10, 38).equals(ref)).toBe(true);
    expect(writeProxyHeader(buf, 90, src, 1, dst, 1)).toBe(-1); // no room
    expect(writeProxyHeader(buf, 0, src, 1, new Uint8Array(16), 1)).toBe(-1); // mixed families
  });
  it('template (fixed dst = VIP) sets src per packet; equals encodeProxyHeader', () => {
    const t = new ProxyHeaderTemplate({ fixedAddr: '198.19.0.1', fixedPort: 443, fixedSide: 'dst', ringSize: 4 });
    expect(t.length).toBe(28);
    const slots = new Set<Buffer>();
    for (let i = 0; i < 8; i++) {
      const h = t.next(`198.18.0.${i}`, 40000 + i);
      expect(h).toBeDefined();
      slots.add(h as Buffer);
      const ref = encodeProxyHeader({
        srcAddr: `198.18.0.${i}`,
        srcPort: 40000 + i,
        dstAddr: '198.19.0.1',
        dstPort: 443,
      });
      expect((h as Buffer).equals(ref)).toBe(true);
    }
    expect(slots.size).toBe(4); // the ring is reused
    expect(t.next('not-an-ip', 1)).toBeUndefined();
    expect(t.next('::1', 1)).toBeUndefined(); // wrong family
    // dual-stack sockets report IPv4 peers as IPv4-mapped IPv6
    const m = t.next('::ffff:198.18.0.9', 7) as Buffer;
    expect(
      m.equals(encodeProxyHeader({ srcAddr: '198.18.0.9', srcPort: 7, dstAddr: '198.19.0.1', dstPort: 443 })),
    ).toBe(true);
  });
  it('template (fixed src = VIP, return path) sets dst per packet, with auth signed afterwards', () => {
    const auth = createProxyAuth(KEY, { now: () => T0, expect: ProxyDirection.TO_CLIENT });
    const t = new ProxyHeaderTemplate({ fixedAddr: '2001:db8::443', fixedPort: 443, fixedSide: 'src', withAuth: true });
    const buf = Buffer.alloc(t.length);
    expect(t.write(buf, 0, '2001:db8:1::99', 5555)).toBe(t.length);
    const payload = Buffer.from('quic');
    expect(signProxyHeader(buf, payload, auth, ProxyDirection.TO_CLIENT)).toBe(true);
    const out = new ProxyHeader();
    expect(parseProxyHeader(Buffer.concat([buf, payload]), out, auth)).toBe(t.length);
    expect([formatProxyAddress(out, 'src'), out.srcPort, formatProxyAddress(out, 'dst'), out.dstPort]).toEqual([
      '2001:db8::443',
      443,
      '2001:db8:1::99',
      5555,
    ]);
    expect(signProxyHeader(Buffer.alloc(28), payload, auth, ProxyDirection.TO_CLIENT)).toBe(false);
  });
});

describe('IP literal helpers', () => {
  it.each([
    ['::', '00'.repeat(16), '::'],
    ['::1', '00'.repeat(15) + '01', '::1'],
    ['1::', '0001' + '00'.repeat(14), '1::'],
    ['2001:DB8::1', '20010db8' + '00'.repeat(11) + '01', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008', '1:2:3:4:5:6:7:8'],
    ['1:0:3:4:5:6:7:8', '00010000000300040005000600070008', '1:0:3:4:5:6:7:8'],
    ['::ffff:192.0.2.1', '00'.repeat(10) + 'ffff' + 'c0000201', '::ffff:192.0.2.1'],
    ['64:ff9b::192.0.2.33', '0064ff9b' + '00'.repeat(8) + 'c0000221', '64:ff9b::c000:221'],
    ['fe80::1%eth0', 'fe80' + '00'.repeat(13) + '01', 'fe80::1'],
  ])('%s', (s, bytes, canonical) => {
    const b = new Uint8Array(16);
    expect(parseIPv6Into(s, b, 0)).toBe(true);
    expect(Buffer.from(b).toString('hex')).toBe(bytes);
    expect(formatIPv6(b)).toBe(canonical);
  });
  it.each([
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '12345::',
    'g::',
    '1:',
    ':1',
    '::1.2.3',
    '1.2.3.4',
    '::1.2.3.4:5',
  ])('rejects IPv6 %s', (s) => {
    expect(parseIPv6Into(s, new Uint8Array(16), 0)).toBe(false);
  });
  it.each(['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.', '.1.2.3', 'a.b.c.d', '1..2.3', ' 1.2.3.4'])(
    'rejects IPv4 %s',
    (s) => {
      expect(parseIPv4Into(s, new Uint8Array(4), 0)).toBe(false);
    },
  );
  it('property: format -> parse is the identity on random addresses, and agrees with node:net', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const s = formatIPv6(b);
        expect(isIPv6(s)).toBe(true);
        const back = new Uint8Array(16);
        expect(parseIPv6Into(s, back, 0)).toBe(true);
        expect(Buffer.from(back).equals(Buffer.from(b))).toBe(true);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.ipV6(), (s) => {
        expect(parseIPv6Into(s, new Uint8Array(16), 0)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
