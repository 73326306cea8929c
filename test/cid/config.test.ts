// createConfig(): every invalid input is a QuicLbError with a stable code and field; valid
// configs are frozen with the algorithm chosen once (draft-21 §5.3, §5.4).
import { describe, expect, it } from 'vitest';
import {
  AES_KEY_LENGTH,
  configFromSpec,
  createConfig,
  decodeServerId,
  encodeConnectionId,
  QuicLbDecoder,
  QuicLbError,
  statelessResetToken,
  type QuicLbConfigOptions,
} from '../../src/cid/index.js';
import { hex, toHex } from './vectors.js';

const KEY = hex('8f95f09245765f80256934e50c66207f');

function codeOf(fn: () => unknown): { code: string; field: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(QuicLbError);
    const err = e as QuicLbError;
    return { code: err.code, field: err.field };
  }
  throw new Error('did not throw');
}

describe('createConfig validation', () => {
  const base: QuicLbConfigOptions = { configId: 0, serverIdLength: 3, nonceLength: 4 };
  const cases: [string, Partial<QuicLbConfigOptions> | Record<string, unknown>, string, string][] = [
    ['configId 7 (0b111 reserved)', { configId: 7 }, 'ERR_CONFIG_ID', 'configId'],
    ['configId -1', { configId: -1 }, 'ERR_CONFIG_ID', 'configId'],
    ['configId 1.5', { configId: 1.5 }, 'ERR_CONFIG_ID', 'configId'],
    ['configId "1"', { configId: '1' }, 'ERR_CONFIG_ID', 'configId'],
    ['serverIdLength 0', { serverIdLength: 0 }, 'ERR_SERVER_ID_LENGTH', 'serverIdLength'],
    ['serverIdLength 16', { serverIdLength: 16 }, 'ERR_SERVER_ID_LENGTH', 'serverIdLength'],
    ['nonceLength 3', { nonceLength: 3 }, 'ERR_NONCE_LENGTH', 'nonceLength'],
    ['nonceLength NaN', { nonceLength: NaN }, 'ERR_NONCE_LENGTH', 'nonceLength'],
    ['sum 20', { serverIdLength: 10, nonceLength: 10 }, 'ERR_PLAINTEXT_LENGTH', 'nonceLength'],
    ['key 15 octets', { key: new Uint8Array(15) }, 'ERR_KEY', 'key'],
    ['key 17 octets', { key: new Uint8Array(17) }, 'ERR_KEY', 'key'],
    ['key as hex string', { key: '8f95f09245765f80256934e50c66207f' }, 'ERR_KEY', 'key'],
    ['selfEncodeLength "yes"', { selfEncodeLength: 'yes' }, 'ERR_SELF_ENCODE_LENGTH', 'selfEncodeLength'],
    ['cipher "aesni"', { cipher: 'aesni', key: KEY }, 'ERR_CIPHER', 'cipher'],
  ];
  for (const [name, patch, code, field] of cases) {
    it(`rejects ${name} with ${code}`, () => {
      expect(codeOf(() => createConfig({ ...base, ...patch } as QuicLbConfigOptions))).toEqual({ code, field });
    });
  }

  it('accepts the boundaries: 1+4, 15+4, 1+18, configId 6', () => {
    for (const [s, n] of [
      [1, 4],
      [15, 4],
      [1, 18],
      [9, 10],
    ]) {
      const c = createConfig({ configId: 6, serverIdLength: s, nonceLength: n, key: KEY });
      expect(c.cidLength).toBe(1 + s + n);
      expect(c.plaintextLength).toBe(s + n);
    }
  });

  it('chooses the algorithm once from key and lengths', () => {
    expect(createConfig(base).algorithm).toBe('plaintext');
    expect(createConfig({ ...base, serverIdLength: 8, nonceLength: 8, key: KEY }).algorithm).toBe('single-pass');
    expect(createConfig({ ...base, key: KEY }).algorithm).toBe('four-pass');
    expect(createConfig({ ...base, key: KEY }).cipher).toBe('table');
    expect(createConfig({ ...base, key: KEY, cipher: 'node' }).cipher).toBe('node');
    expect(createConfig(base).cipher).toBeUndefined();
    expect(createConfig(base).selfEncodeLength).toBe(true);
  });

  it('is frozen, copies the key, and a later change to the caller key has no effect', () => {
    const key = Uint8Array.from(KEY);
    const c = createConfig({ ...base, key });
    expect(Object.isFrozen(c)).toBe(true);
    const before = toHex(encodeConnectionId(c, hex('ed793a'), hex('ee080dbf')));
    key.fill(0);
    expect(toHex(encodeConnectionId(c, hex('ed793a'), hex('ee080dbf')))).toBe(before);
    expect(before).toBe('0720b1d07b359d3c');
    expect(() => {
      (c as { configId: number }).configId = 3;
    }).toThrow(TypeError);
  });

  it('rejects objects that createConfig did not make, and wrong-length arguments', () => {
    const fake = { ...createConfig(base) };
    expect(codeOf(() => decodeServerId(fake, new Uint8Array(8)))).toEqual({ code: 'ERR_CONFIG', field: 'config' });
    expect(codeOf(() => new QuicLbDecoder([fake]))).toEqual({ code: 'ERR_CONFIG', field: 'config' });
    const c = createConfig(base);
    expect(codeOf(() => encodeConnectionId(c, new Uint8Array(2), new Uint8Array(4)))).toEqual({
      code: 'ERR_SERVER_ID_LENGTH',
      field: 'serverId',
    });
    expect(codeOf(() => encodeConnectionId(c, new Uint8Array(3), new Uint8Array(5)))).toEqual({
      code: 'ERR_NONCE_LENGTH',
      field: 'nonce',
    });
  });

  it('selfEncodeLength false writes configId << 5 only (the encoder randomises the low bits)', () => {
    const c = createConfig({ configId: 5, serverIdLength: 3, nonceLength: 4, selfEncodeLength: false });
    expect(encodeConnectionId(c, hex('010203'), hex('04050607'))[0]).toBe(5 << 5);
  });
});

describe('configFromSpec', () => {
  const base = { configId: 0, serverIdLength: 3, nonceLength: 4 };
  it('takes the key as hex text or as octets and makes the same config as createConfig (draft-21 B.2)', () => {
    const fromHex = configFromSpec({ ...base, key: '8f95f09245765f80256934e50c66207f' });
    const fromUpper = configFromSpec({ ...base, key: '8F95F09245765F80256934E50C66207F', cipher: 'node' });
    const fromBytes = configFromSpec({ ...base, key: KEY });
    for (const c of [fromHex, fromUpper, fromBytes]) {
      expect(c.algorithm).toBe('four-pass');
      expect(toHex(c.key!)).toBe(toHex(KEY));
      expect(toHex(encodeConnectionId(c, hex('ed793a'), hex('ee080dbf')))).toBe('0720b1d07b359d3c');
    }
    expect(fromUpper.cipher).toBe('node');
    expect(configFromSpec(base).algorithm).toBe('plaintext');
    expect(configFromSpec({ ...base, selfEncodeLength: false }).selfEncodeLength).toBe(false);
  });

  it('a key string that is not exactly 32 hex digits is ERR_KEY on field key; other fields keep their codes', () => {
    const bad = [
      '',
      '00'.repeat(AES_KEY_LENGTH - 1),
      '00'.repeat(AES_KEY_LENGTH + 1),
      'zz'.repeat(AES_KEY_LENGTH),
      '0x' + '00'.repeat(AES_KEY_LENGTH - 1),
      ` ${'00'.repeat(AES_KEY_LENGTH)}`,
    ];
    for (const key of bad)
      expect(
        codeOf(() => configFromSpec({ ...base, key })),
        key,
      ).toEqual({ code: 'ERR_KEY', field: 'key' });
    expect(codeOf(() => configFromSpec({ ...base, key: new Uint8Array(15) }))).toEqual({
      code: 'ERR_KEY',
      field: 'key',
    });
    expect(codeOf(() => configFromSpec({ ...base, configId: 7 }))).toEqual({
      code: 'ERR_CONFIG_ID',
      field: 'configId',
    });
    expect(
      codeOf(() => configFromSpec({ ...base, serverIdLength: 10, nonceLength: 10, key: '00'.repeat(16) })),
    ).toEqual({
      code: 'ERR_PLAINTEXT_LENGTH',
      field: 'nonceLength',
    });
    expect(codeOf(() => configFromSpec(null as never))).toEqual({ code: 'ERR_CONFIG', field: 'options' });
  });
});

describe('QuicLbDecoder config management', () => {
  it('holds up to 7 configs, replaces, removes, reports cidLength per first octet', () => {
    const d = new QuicLbDecoder();
    for (let id = 0; id <= 6; id++) d.setConfig(createConfig({ configId: id, serverIdLength: 1 + id, nonceLength: 4 }));
    for (let id = 0; id <= 6; id++) expect(d.cidLength(id << 5)).toBe(6 + id);
    expect(d.cidLength(0xe0)).toBe(-1);
    expect(d.cidLength(0xff)).toBe(-1);
    d.setConfig(createConfig({ configId: 2, serverIdLength: 8, nonceLength: 8, key: KEY }));
    expect(d.getConfig(2)!.algorithm).toBe('single-pass');
    expect(d.cidLength(0x5f)).toBe(17);
    expect(d.removeConfig(2)).toBe(true);
    expect(d.removeConfig(2)).toBe(false);
    expect(d.cidLength(0x40)).toBe(-1);
    expect(d.getConfig(2)).toBeUndefined();
    expect(d.listConfigs().map((c) => c.configId)).toEqual([0, 1, 3, 4, 5, 6]);
    expect(codeOf(() => d.removeConfig(7))).toEqual({ code: 'ERR_CONFIG_ID', field: 'configId' });
  });
});

describe('statelessResetToken (RFC 9000 §10.3.2)', () => {
  it('is the first 16 octets of HMAC-SHA256 (RFC 4231 test case 1)', () => {
    const key = new Uint8Array(20).fill(0x0b);
    const data = new TextEncoder().encode('Hi There');
    expect(toHex(statelessResetToken(key, data))).toBe('b0344c61d8db38535ca8afceaf0bf12b');
  });
  it('differs per CID and per key; rejects short keys and empty CIDs', () => {
    const k1 = new Uint8Array(16).fill(1);
    const k2 = new Uint8Array(16).fill(2);
    const cid = hex('0720b1d07b359d3c');
    expect(statelessResetToken(k1, cid).length).toBe(16);
    expect(toHex(statelessResetToken(k1, cid))).not.toBe(toHex(statelessResetToken(k2, cid)));
    expect(toHex(statelessResetToken(k1, cid))).not.toBe(toHex(statelessResetToken(k1, hex('0720b1d07b359d3d'))));
    expect(codeOf(() => statelessResetToken(new Uint8Array(15), cid))).toEqual({
      code: 'ERR_RESET_KEY',
      field: 'staticKey',
    });
    expect(codeOf(() => statelessResetToken(k1, new Uint8Array(0)))).toEqual({ code: 'ERR_CID_LENGTH', field: 'cid' });
  });
});
