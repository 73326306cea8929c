import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  HeaderForm,
  PacketHeader,
  PacketType,
  QUIC_V1,
  QUIC_V2,
  QUIC_V2_DRAFT,
  VERSION_NEGOTIATION,
  isInitial,
  isReservedVersion,
  longPacketTypeBits,
  packetTypeOf,
  parseHeader,
} from '../../src/wire/index.js';
import { hex } from './helpers.js';

// Fixtures: the start of published packets (type bits are not header-protected).
const FIXTURES = [
  {
    name: 'v1 client Initial (RFC 9001 §A.2, protected)',
    bytes: hex('c0 00000001 08 8394c8f03e515708 00 00 449e 7b9aec34'),
    version: QUIC_V1,
    type: PacketType.INITIAL,
    dcid: '8394c8f03e515708',
    scid: '',
  },
  {
    name: 'v1 server Initial (RFC 9001 §A.3, protected)',
    bytes: hex('cf 00000001 00 08 f067a5502a4262b5 00 4075 c0d95a482cd0991cd25b0aac406a'),
    version: QUIC_V1,
    type: PacketType.INITIAL,
    dcid: '',
    scid: 'f067a5502a4262b5',
  },
  {
    name: 'v1 Retry (RFC 9001 §A.4)',
    bytes: hex('ff 00000001 00 08 f067a5502a4262b5 746f6b656e 04a265ba2eff4d829058fb3f0f2496ba'),
    version: QUIC_V1,
    type: PacketType.RETRY,
    dcid: '',
    scid: 'f067a5502a4262b5',
  },
  {
    name: 'v2 client Initial (RFC 9369 §A.2, unprotected header: type 0b01)',
    bytes: hex('d3 6b3343cf 08 8394c8f03e515708 00 00 449e 00000002'),
    version: QUIC_V2,
    type: PacketType.INITIAL,
    dcid: '8394c8f03e515708',
    scid: '',
  },
  {
    name: 'v2 Retry (RFC 9369 §A.4: type 0b00, which is a v1 Initial)',
    bytes: hex('cf 6b3343cf 00 08 f067a5502a4262b5 746f6b656e c8646ce8bfe33952d955543665dcc7b6'),
    version: QUIC_V2,
    type: PacketType.RETRY,
    dcid: '',
    scid: 'f067a5502a4262b5',
  },
  {
    name: 'v2 Handshake (type 0b11)',
    bytes: hex('f0 6b3343cf 04 01020304 04 05060708 01'),
    version: QUIC_V2,
    type: PacketType.HANDSHAKE,
    dcid: '01020304',
    scid: '05060708',
  },
  {
    name: 'v1 0-RTT (type 0b01)',
    bytes: hex('d0 00000001 08 0001020304050607 00 01'),
    version: QUIC_V1,
    type: PacketType.ZERO_RTT,
    dcid: '0001020304050607',
    scid: '',
  },
  {
    name: 'Version Negotiation (RFC 9000 §17.2.1), unused bits arbitrary',
    bytes: hex('a5 00000000 08 1011121314151617 08 0001020304050607 00000001 6b3343cf'),
    version: VERSION_NEGOTIATION,
    type: PacketType.VERSION_NEGOTIATION,
    dcid: '1011121314151617',
    scid: '0001020304050607',
  },
  {
    name: 'unknown version with 255-octet CIDs (RFC 8999 invariants)',
    bytes: Buffer.concat([hex('c0 1a2a3a4a ff'), Buffer.alloc(255, 1), hex('ff'), Buffer.alloc(255, 2), hex('00')]),
    version: 0x1a2a3a4a,
    type: PacketType.UNKNOWN_VERSION_LONG,
    dcid: '01'.repeat(255),
    scid: '02'.repeat(255),
  },
  {
    name: 'v2 draft codepoint is an unknown version',
    bytes: hex('c0 709a50c4 15') /* DCIL 21 is fine for unknown versions */,
    version: QUIC_V2_DRAFT,
    type: PacketType.UNKNOWN_VERSION_LONG,
    dcid: '00'.repeat(21),
    scid: '',
    append: Buffer.alloc(22),
  },
] as const;

describe('parseHeader: long-header fixtures', () => {
  for (const f of FIXTURES) {
    const bytes = 'append' in f ? Buffer.concat([f.bytes, f.append]) : f.bytes;
    it(f.name, () => {
      const h = new PacketHeader();
      expect(parseHeader(bytes, h)).toBe(true);
      expect(h.form).toBe(HeaderForm.LONG);
      expect(h.version).toBe(f.version);
      expect(h.packetType).toBe(f.type);
      expect(h.dcidOffset).toBe(6);
      expect(bytes.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength).toString('hex')).toBe(f.dcid);
      expect(bytes.subarray(h.scidOffset, h.scidOffset + h.scidLength).toString('hex')).toBe(f.scid);
      expect(h.payloadOffset).toBe(h.scidOffset + h.scidLength);
      expect(isInitial(h.version, bytes[0])).toBe(f.type === PacketType.INITIAL);
      // Every truncated prefix before the end of the SCID fails; longer prefixes parse the same.
      const h2 = new PacketHeader();
      for (let n = 0; n <= bytes.length; n++) {
        const ok = parseHeader(bytes.subarray(0, n), h2);
        expect(ok).toBe(n >= h.payloadOffset);
        if (ok) expect(h2).toEqual(h);
      }
    });
  }
});

describe('parseHeader: short header and limits', () => {
  it('short header: DCID at octet 1, length implied (-1)', () => {
    const h = new PacketHeader();
    const b = hex('4f 0102030405060708 aabbcc');
    expect(parseHeader(b, h)).toBe(true);
    expect(h).toMatchObject({
      form: HeaderForm.SHORT,
      dcidOffset: 1,
      dcidLength: -1,
      scidOffset: -1,
      scidLength: -1,
      packetType: PacketType.ONE_RTT,
    });
    // The fixed bit is not an invariant: a greased/DTLS-looking first octet still parses.
    expect(parseHeader(hex('17 fefd'), h)).toBe(true);
    expect(h.form).toBe(HeaderForm.SHORT);
  });
  it('empty datagram is rejected', () => {
    expect(parseHeader(new Uint8Array(0), new PacketHeader())).toBe(false);
  });
  it('v1/v2 CID length > 20 is invalid; 20 is valid', () => {
    const h = new PacketHeader();
    for (const v of ['00000001', '6b3343cf']) {
      expect(parseHeader(Buffer.concat([hex(`c0${v}14`), Buffer.alloc(20), hex('00')]), h)).toBe(true);
      expect(parseHeader(Buffer.concat([hex(`c0${v}15`), Buffer.alloc(21), hex('00')]), h)).toBe(false);
      expect(parseHeader(Buffer.concat([hex(`c0${v}00 15`), Buffer.alloc(21)]), h)).toBe(false);
    }
  });
  it('versions with the top bit set stay unsigned', () => {
    const h = new PacketHeader();
    expect(parseHeader(hex('c0 ff00001d 00 00'), h)).toBe(true);
    expect(h.version).toBe(0xff00001d);
  });
});

describe('versions', () => {
  it('maps v1 and v2 type bits to the same normalised types', () => {
    for (const t of [PacketType.INITIAL, PacketType.ZERO_RTT, PacketType.HANDSHAKE, PacketType.RETRY]) {
      for (const v of [QUIC_V1, QUIC_V2]) {
        const bits = longPacketTypeBits(v, t);
        expect(packetTypeOf(v, 0xc0 | (bits << 4))).toBe(t);
      }
    }
    expect(longPacketTypeBits(QUIC_V1, PacketType.INITIAL)).toBe(0);
    expect(longPacketTypeBits(QUIC_V2, PacketType.INITIAL)).toBe(1);
    expect(longPacketTypeBits(QUIC_V2, PacketType.RETRY)).toBe(0);
    expect(longPacketTypeBits(0x12345678, PacketType.INITIAL)).toBe(-1);
  });
  it('isInitial: v1 0b00, v2 0b01, never for short headers or unknown versions', () => {
    expect(isInitial(QUIC_V1, 0xc3)).toBe(true);
    expect(isInitial(QUIC_V2, 0xc3)).toBe(false); // v2 Retry
    expect(isInitial(QUIC_V2, 0xd3)).toBe(true);
    expect(isInitial(QUIC_V1, 0xd3)).toBe(false);
    expect(isInitial(QUIC_V1, 0x43)).toBe(false);
    expect(isInitial(0x1a2a3a4a, 0xc0)).toBe(false);
    expect(isInitial(VERSION_NEGOTIATION, 0xc0)).toBe(false);
  });
  it('reserved versions', () => {
    expect(isReservedVersion(0x1a2a3a4a)).toBe(true);
    expect(isReservedVersion(QUIC_V1)).toBe(false);
  });
});

describe('parseHeader: properties', () => {
  const version = fc.oneof(
    fc.constant(QUIC_V1),
    fc.constant(QUIC_V2),
    fc.constant(0),
    fc.integer({ min: 0, max: 0xffffffff }),
  );
  it('built long headers parse back exactly, at every legal CID length', () => {
    fc.assert(
      fc.property(
        version,
        fc.integer({ min: 0x80, max: 0xff }),
        fc.uint8Array({ maxLength: 255 }),
        fc.uint8Array({ maxLength: 255 }),
        fc.uint8Array({ maxLength: 40 }),
        (v, first, dcid, scid, rest) => {
          const b = Buffer.alloc(7 + dcid.length + scid.length + rest.length);
          b[0] = first;
          b.writeUInt32BE(v, 1);
          b[5] = dcid.length;
          b.set(dcid, 6);
          b[6 + dcid.length] = scid.length;
          b.set(scid, 7 + dcid.length);
          b.set(rest, 7 + dcid.length + scid.length);
          const h = new PacketHeader();
          const ok = parseHeader(b, h);
          const known = v === QUIC_V1 || v === QUIC_V2;
          expect(ok).toBe(!known || (dcid.length <= 20 && scid.length <= 20));
          if (!ok) return;
          expect(h.version).toBe(v);
          expect(Buffer.compare(b.subarray(h.dcidOffset, h.dcidOffset + h.dcidLength), dcid)).toBe(0);
          expect(Buffer.compare(b.subarray(h.scidOffset, h.scidOffset + h.scidLength), scid)).toBe(0);
          expect(h.packetType).toBe(v === 0 ? PacketType.VERSION_NEGOTIATION : packetTypeOf(v, first));
        },
      ),
      { numRuns: 1000 },
    );
  });
  it('random bytes never throw and never give out-of-range offsets', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        const h = new PacketHeader();
        if (parseHeader(b, h) && h.form === HeaderForm.LONG) {
          expect(h.dcidOffset + h.dcidLength).toBeLessThanOrEqual(b.length);
          expect(h.scidOffset + h.scidLength).toBeLessThanOrEqual(b.length);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
