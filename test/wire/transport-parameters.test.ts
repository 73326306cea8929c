import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  QuicWireError,
  TRANSPORT_PARAMETER_DEFAULTS,
  TransportParameterId,
  decodePreferredAddress,
  decodeTransportParameters,
  encodePreferredAddress,
  encodeTransportParameters,
  preferredAddressLength,
  withTransportParameterDefaults,
  writeVarint,
  type PreferredAddress,
  type TransportParameters,
} from '../../src/wire/index.js';
import { codeOf, fieldOf, hex } from './helpers.js';

/** One parameter: id, length, value (all as given). */
const tp = (id: number, value: Buffer): Buffer => {
  const b = Buffer.alloc(16 + value.length);
  let o = writeVarint(b, 0, id);
  o = writeVarint(b, o, value.length);
  value.copy(b, o);
  return b.subarray(0, o + value.length);
};

const TOKEN = hex('00112233445566778899aabbccddeeff');
const PA: PreferredAddress = {
  ipv4: { address: '127.0.0.2', port: 4434 },
  ipv6: { address: '2001:db8::2', port: 4435 },
  connectionId: hex('4000112233445566'),
  statelessResetToken: TOKEN,
};

const FULL: TransportParameters = {
  originalDestinationConnectionId: hex('8394c8f03e515708'),
  maxIdleTimeout: 30_000,
  statelessResetToken: TOKEN,
  maxUdpPayloadSize: 1472,
  initialMaxData: 10 * 1024 * 1024,
  initialMaxStreamDataBidiLocal: 1 << 20,
  initialMaxStreamDataBidiRemote: 1 << 20,
  initialMaxStreamDataUni: 1 << 20,
  initialMaxStreamsBidi: 100,
  initialMaxStreamsUni: 3,
  ackDelayExponent: 3,
  maxAckDelay: 25,
  disableActiveMigration: true,
  preferredAddress: PA,
  activeConnectionIdLimit: 4,
  initialSourceConnectionId: hex('f067a5502a4262b5'),
  retrySourceConnectionId: hex('0102030405'),
  unknown: [{ id: 27 + 31 * 7, value: hex('cafe') }],
};

describe('preferred_address (RFC 9000 §18.2)', () => {
  it('exact layout: 41 + L octets, network byte order, fields in order', () => {
    const b = encodePreferredAddress(PA);
    expect(b.length).toBe(preferredAddressLength(8));
    expect(b.length).toBe(49);
    expect(b.toString('hex')).toBe(
      '7f000002' +
        '1152' +
        '20010db8000000000000000000000002' +
        '1153' +
        '08' +
        '4000112233445566' +
        TOKEN.toString('hex'),
    );
    expect(decodePreferredAddress(b)).toEqual(PA);
  });
  it('an absent family is all-zero address and port, and decodes as absent', () => {
    const only4 = encodePreferredAddress({ ...PA, ipv6: undefined });
    expect(only4.subarray(6, 24).every((x) => x === 0)).toBe(true);
    expect(decodePreferredAddress(only4)).toEqual({ ...PA, ipv6: undefined } as PreferredAddress);
    expect(decodePreferredAddress(only4).ipv6).toBeUndefined();
    const only6 = encodePreferredAddress({ ...PA, ipv4: undefined, ipv6: { address: '::1', port: 443 } });
    expect(only6.subarray(0, 6).every((x) => x === 0)).toBe(true);
    const d = decodePreferredAddress(only6);
    expect(d.ipv4).toBeUndefined();
    expect(d.ipv6).toEqual({ address: '::1', port: 443 });
  });
  it('decoded CID and token are copies', () => {
    const b = encodePreferredAddress(PA);
    const d = decodePreferredAddress(b);
    b.fill(0);
    expect(Buffer.from(d.connectionId).toString('hex')).toBe('4000112233445566');
  });
  it.each([
    [{ ...PA, connectionId: new Uint8Array(0) }, 'ERR_PREFERRED_ADDRESS_CID_EMPTY', 'connectionId'],
    [{ ...PA, connectionId: new Uint8Array(21) }, 'ERR_PREFERRED_ADDRESS_CID_LENGTH', 'connectionId'],
    [{ ...PA, statelessResetToken: new Uint8Array(15) }, 'ERR_PREFERRED_ADDRESS_TOKEN', 'statelessResetToken'],
    [{ ...PA, statelessResetToken: new Uint8Array(17) }, 'ERR_PREFERRED_ADDRESS_TOKEN', 'statelessResetToken'],
    [{ ...PA, ipv4: undefined, ipv6: undefined }, 'ERR_PREFERRED_ADDRESS_NO_ADDRESS', 'ipv4'],
    [{ ...PA, ipv4: { address: '::1', port: 1 } }, 'ERR_PREFERRED_ADDRESS_ADDRESS', 'ipv4.address'],
    [{ ...PA, ipv4: { address: '127.0.0.256', port: 1 } }, 'ERR_PREFERRED_ADDRESS_ADDRESS', 'ipv4.address'],
    [{ ...PA, ipv6: { address: '127.0.0.1', port: 1 } }, 'ERR_PREFERRED_ADDRESS_ADDRESS', 'ipv6.address'],
    [{ ...PA, ipv6: { address: 'localhost', port: 1 } }, 'ERR_PREFERRED_ADDRESS_ADDRESS', 'ipv6.address'],
    [{ ...PA, ipv4: { address: '127.0.0.1', port: 65536 } }, 'ERR_PREFERRED_ADDRESS_PORT', 'ipv4.port'],
    [{ ...PA, ipv6: { address: '::1', port: -1 } }, 'ERR_PREFERRED_ADDRESS_PORT', 'ipv6.port'],
  ])('encode rejects %# with a typed error', (pa, code, field) => {
    expect(codeOf(() => encodePreferredAddress(pa as PreferredAddress))).toBe(code);
    expect(fieldOf(() => encodePreferredAddress(pa as PreferredAddress))).toBe(field);
  });
  it('decode: every truncated prefix is ERR_PREFERRED_ADDRESS_TRUNCATED, trailing octets are ERR_PREFERRED_ADDRESS_LENGTH', () => {
    const b = encodePreferredAddress(PA);
    for (let n = 0; n < b.length; n++) {
      const c = codeOf(() => decodePreferredAddress(b.subarray(0, n)));
      expect(c).toBe('ERR_PREFERRED_ADDRESS_TRUNCATED');
    }
    expect(codeOf(() => decodePreferredAddress(Buffer.concat([b, hex('00')])))).toBe('ERR_PREFERRED_ADDRESS_LENGTH');
  });
  it('decode: zero-length CID and CID > 20 are errors', () => {
    const b = Buffer.alloc(41);
    expect(codeOf(() => decodePreferredAddress(b))).toBe('ERR_PREFERRED_ADDRESS_CID_EMPTY');
    const c = Buffer.alloc(41 + 21);
    c[24] = 21;
    expect(codeOf(() => decodePreferredAddress(c))).toBe('ERR_PREFERRED_ADDRESS_CID_LENGTH');
  });
  it('property: random preferred addresses round-trip', () => {
    const v4 = fc.record({ address: fc.ipV4(), port: fc.integer({ min: 1, max: 65535 }) });
    const v6 = fc.record({ address: fc.ipV6(), port: fc.integer({ min: 1, max: 65535 }) });
    fc.assert(
      fc.property(
        fc.option(v4, { nil: undefined }),
        fc.option(v6, { nil: undefined }),
        fc.uint8Array({ minLength: 1, maxLength: 20 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (ipv4, ipv6, connectionId, statelessResetToken) => {
          fc.pre(ipv4 !== undefined || ipv6 !== undefined);
          const b = encodePreferredAddress({ ipv4, ipv6, connectionId, statelessResetToken });
          expect(b.length).toBe(41 + connectionId.length);
          const d = decodePreferredAddress(b);
          expect(d.ipv4).toEqual(ipv4);
          // IPv6 strings come back canonical (RFC 5952): compare by re-encoding.
          if (ipv6 === undefined) expect(d.ipv6).toBeUndefined();
          else expect(encodePreferredAddress({ ...d }).equals(b)).toBe(true);
          expect(Buffer.from(d.connectionId).equals(Buffer.from(connectionId))).toBe(true);
          expect(Buffer.from(d.statelessResetToken).equals(Buffer.from(statelessResetToken))).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('transport parameters (RFC 9000 §18)', () => {
  it('full set round-trips, including preferred_address and a greasing id', () => {
    const b = encodeTransportParameters(FULL);
    const d = decodeTransportParameters(b);
    expect(d.preferredAddress).toEqual(PA);
    expect({ ...d, preferredAddress: undefined }).toEqual({ ...FULL, preferredAddress: undefined });
    expect(encodeTransportParameters(d).equals(b)).toBe(true);
  });
  it('known bytes: ids and lengths as varints, integer values as varints', () => {
    const b = encodeTransportParameters({
      maxIdleTimeout: 30000,
      disableActiveMigration: true,
      initialSourceConnectionId: hex('abcd'),
    });
    expect(b.toString('hex')).toBe('01' + '04' + '80007530' + '0c00' + '0f02abcd');
  });
  it('empty extension decodes to no parameters; defaults fill in', () => {
    expect(decodeTransportParameters(new Uint8Array(0))).toEqual({});
    const d = withTransportParameterDefaults({ maxAckDelay: 10 });
    expect(d.maxAckDelay).toBe(10);
    expect(d.ackDelayExponent).toBe(TRANSPORT_PARAMETER_DEFAULTS.ackDelayExponent);
    expect(d.maxUdpPayloadSize).toBe(65527);
    expect(d.activeConnectionIdLimit).toBe(2);
  });
  it('non-minimal integer encodings inside the value are accepted when the length matches', () => {
    expect(decodeTransportParameters(hex('0a 02 4003')).ackDelayExponent).toBe(3);
  });
  it('values above 2^53 saturate; initial_max_streams above 2^60 is an error', () => {
    const big = Buffer.alloc(8);
    writeVarint(big, 0, (1n << 62n) - 1n);
    expect(decodeTransportParameters(tp(TransportParameterId.INITIAL_MAX_DATA, big)).initialMaxData).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(codeOf(() => decodeTransportParameters(tp(TransportParameterId.INITIAL_MAX_STREAMS_BIDI, big)))).toBe(
      'ERR_TP_VALUE',
    );
    const ok = Buffer.alloc(8);
    writeVarint(ok, 0, 1n << 60n);
    expect(decodeTransportParameters(tp(TransportParameterId.INITIAL_MAX_STREAMS_UNI, ok)).initialMaxStreamsUni).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });
  it('unknown ids above 2^53 are kept as bigint', () => {
    const b = Buffer.concat([hex('ffffffffffffffff 01 aa')]);
    const d = decodeTransportParameters(b);
    expect(d.unknown?.length).toBe(1);
    expect(d.unknown?.[0].id).toBe((1n << 62n) - 1n);
    expect(Buffer.from(d.unknown?.[0].value ?? []).toString('hex')).toBe('aa');
    expect(encodeTransportParameters(d).equals(b)).toBe(true);
    expect(codeOf(() => decodeTransportParameters(Buffer.concat([b, b])))).toBe('ERR_TP_DUPLICATE');
  });
  it.each([
    [
      'duplicate known id',
      Buffer.concat([hex('0104 80007530'), hex('0102 4000')]),
      'ERR_TP_DUPLICATE',
      'max_idle_timeout',
    ],
    ['duplicate unknown id', hex('4036 00 4036 00'), 'ERR_TP_DUPLICATE', '0x36'],
    ['duplicate flag', hex('0c00 0c00'), 'ERR_TP_DUPLICATE', 'disable_active_migration'],
    ['id truncated', hex('40'), 'ERR_TP_TRUNCATED', 'id'],
    ['length missing', hex('01'), 'ERR_TP_TRUNCATED', 'length'],
    ['length truncated', hex('01 80'), 'ERR_TP_TRUNCATED', 'length'],
    ['value truncated', hex('01 04 800075'), 'ERR_TP_TRUNCATED', 'value'],
    ['integer shorter than its length', hex('01 02 05 00'), 'ERR_TP_LENGTH', 'max_idle_timeout'],
    ['varint needing more octets than the length gives', hex('01 01 4005'), 'ERR_TP_LENGTH', 'max_idle_timeout'],
    ['integer with length 0', hex('04 00'), 'ERR_TP_LENGTH', 'initial_max_data'],
    ['token 15 octets', Buffer.concat([hex('02 0f'), Buffer.alloc(15)]), 'ERR_TP_LENGTH', 'stateless_reset_token'],
    ['token 17 octets', Buffer.concat([hex('02 11'), Buffer.alloc(17)]), 'ERR_TP_LENGTH', 'stateless_reset_token'],
    ['flag with a value', hex('0c 01 00'), 'ERR_TP_LENGTH', 'disable_active_migration'],
    [
      'CID of 21 octets',
      Buffer.concat([hex('0f 15'), Buffer.alloc(21)]),
      'ERR_TP_CID_LENGTH',
      'initial_source_connection_id',
    ],
    [
      'original DCID of 21 octets',
      Buffer.concat([hex('00 15'), Buffer.alloc(21)]),
      'ERR_TP_CID_LENGTH',
      'original_destination_connection_id',
    ],
    ['max_udp_payload_size 1199', hex('03 02 44af'), 'ERR_TP_VALUE', 'max_udp_payload_size'],
    ['ack_delay_exponent 21', hex('0a 01 15'), 'ERR_TP_VALUE', 'ack_delay_exponent'],
    ['max_ack_delay 2^14', hex('0b 04 80004000'), 'ERR_TP_VALUE', 'max_ack_delay'],
    ['active_connection_id_limit 1', hex('0e 01 01'), 'ERR_TP_VALUE', 'active_connection_id_limit'],
    [
      'preferred_address with empty CID',
      Buffer.concat([hex('0d 29'), Buffer.alloc(41)]),
      'ERR_PREFERRED_ADDRESS_CID_EMPTY',
      'connectionId',
    ],
    [
      'preferred_address too short for its CID',
      Buffer.concat([hex('0d 29'), Buffer.alloc(24), hex('08'), Buffer.alloc(16)]),
      'ERR_PREFERRED_ADDRESS_TRUNCATED',
      'preferred_address',
    ],
    [
      'preferred_address with trailing octet',
      Buffer.concat([hex('0d 2b'), Buffer.alloc(24), hex('01 aa'), Buffer.alloc(17)]),
      'ERR_PREFERRED_ADDRESS_LENGTH',
      'preferred_address',
    ],
  ])('%s -> %s', (_name, bytes, code, field) => {
    expect(codeOf(() => decodeTransportParameters(bytes))).toBe(code);
    expect(fieldOf(() => decodeTransportParameters(bytes))).toBe(field);
  });
  it('boundary values are accepted', () => {
    const d = decodeTransportParameters(hex('03 02 44b0  0a 01 14  0b 02 7fff  0e 01 02'));
    expect(d).toEqual({
      maxUdpPayloadSize: 1200,
      ackDelayExponent: 20,
      maxAckDelay: 16383,
      activeConnectionIdLimit: 2,
    });
  });
  it('server-only parameters from a client are ERR_TP_SERVER_ONLY', () => {
    for (const p of [
      { originalDestinationConnectionId: hex('01') },
      { statelessResetToken: TOKEN },
      { preferredAddress: PA },
      { retrySourceConnectionId: hex('01') },
    ]) {
      const b = encodeTransportParameters(p);
      expect(codeOf(() => decodeTransportParameters(b, { sender: 'client' }))).toBe('ERR_TP_SERVER_ONLY');
      expect(() => decodeTransportParameters(b, { sender: 'server' })).not.toThrow();
    }
    expect(
      decodeTransportParameters(encodeTransportParameters({ initialSourceConnectionId: hex('01') }), {
        sender: 'client',
      }),
    ).toEqual({
      initialSourceConnectionId: hex('01'),
    });
  });
  it.each([
    [{ maxAckDelay: 1 << 14 }, 'ERR_TP_VALUE'],
    [{ maxIdleTimeout: -1 }, 'ERR_TP_VALUE'],
    [{ initialMaxData: 1.5 }, 'ERR_TP_VALUE'],
    [{ activeConnectionIdLimit: 1 }, 'ERR_TP_VALUE'],
    [{ initialSourceConnectionId: new Uint8Array(21) }, 'ERR_TP_CID_LENGTH'],
    [{ statelessResetToken: new Uint8Array(8) }, 'ERR_TP_LENGTH'],
    [{ unknown: [{ id: 1, value: new Uint8Array(0) }], maxIdleTimeout: 5 }, 'ERR_TP_DUPLICATE'],
    [
      {
        unknown: [
          { id: 100, value: new Uint8Array(0) },
          { id: 100n, value: new Uint8Array(0) },
        ],
      },
      'ERR_TP_DUPLICATE',
    ],
    [{ preferredAddress: { ...PA, connectionId: new Uint8Array(0) } }, 'ERR_PREFERRED_ADDRESS_CID_EMPTY'],
  ] as [TransportParameters, string][])('encode rejects case %#', (p, code) => {
    expect(codeOf(() => encodeTransportParameters(p))).toBe(code);
  });
  it('every truncated prefix: a parameter-boundary prefix decodes to the first k parameters, any other throws ERR_TP_TRUNCATED', () => {
    const b = encodeTransportParameters(FULL);
    // boundaries: re-encode growing subsets in wire order
    const boundaries = new Set<number>([0]);
    let off = 0;
    while (off < b.length) {
      const idLen = 1 << (b[off] >> 6);
      const lenLen = 1 << (b[off + idLen] >> 6);
      const len = b.readUIntBE(off + idLen, lenLen) & (lenLen === 1 ? 0x3f : lenLen === 2 ? 0x3fff : 0x3fffffff);
      off += idLen + lenLen + len;
      boundaries.add(off);
    }
    expect(off).toBe(b.length);
    for (let n = 0; n <= b.length; n++) {
      const prefix = b.subarray(0, n);
      if (boundaries.has(n)) {
        const d = decodeTransportParameters(prefix);
        expect(encodeTransportParameters(d).equals(prefix)).toBe(true);
      } else {
        expect(codeOf(() => decodeTransportParameters(prefix))).toBe('ERR_TP_TRUNCATED');
      }
    }
  });
  it('property: random parameter sets round-trip', () => {
    const int = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
    const cid = fc.uint8Array({ maxLength: 20 });
    const arb = fc.record(
      {
        originalDestinationConnectionId: cid,
        maxIdleTimeout: int,
        statelessResetToken: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        maxUdpPayloadSize: fc.integer({ min: 1200, max: 65527 }),
        initialMaxData: int,
        initialMaxStreamDataBidiLocal: int,
        initialMaxStreamDataBidiRemote: int,
        initialMaxStreamDataUni: int,
        initialMaxStreamsBidi: int,
        initialMaxStreamsUni: int,
        ackDelayExponent: fc.integer({ min: 0, max: 20 }),
        maxAckDelay: fc.integer({ min: 0, max: 16383 }),
        disableActiveMigration: fc.constant(true),
        activeConnectionIdLimit: fc.integer({ min: 2, max: 1000 }),
        initialSourceConnectionId: cid,
        retrySourceConnectionId: cid,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(arb, (p) => {
        const b = encodeTransportParameters(p);
        const d = decodeTransportParameters(b);
        expect(encodeTransportParameters(d).equals(b)).toBe(true);
        for (const [k, v] of Object.entries(p)) {
          const got = (d as Record<string, unknown>)[k];
          if (v instanceof Uint8Array) expect(Buffer.from(got as Uint8Array).equals(Buffer.from(v))).toBe(true);
          else expect(got).toBe(v);
        }
      }),
      { numRuns: 500 },
    );
  });
  it('property: random bytes either decode or throw a QuicWireError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        try {
          decodeTransportParameters(b);
        } catch (e) {
          expect(e).toBeInstanceOf(QuicWireError);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
