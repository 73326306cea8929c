// Shared-state Retry tokens (src/wire/retry-token.ts, draft-ietf-quic-retry-offload-00 §4): the
// draft's vector for the AEAD step (test/vectors/retry-token.txt, pinned there), the layout of the
// draft's text byte by byte, every refusal of openRetryToken, key files, and the Initial's token.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MIN_RETRY_TOKEN_LENGTH,
  OpenedRetryToken,
  QUIC_WIRE_ERROR_CODES,
  RETRY_TOKEN_ERROR_NAMES,
  RETRY_TOKEN_ERR_EXPIRED,
  RETRY_TOKEN_ERR_INVALID,
  RETRY_TOKEN_ERR_KEY_SEQUENCE,
  RETRY_TOKEN_ERR_NEW_TOKEN,
  RETRY_TOKEN_ERR_ODCID,
  RETRY_TOKEN_ERR_PORT,
  RETRY_TOKEN_ERR_TRUNCATED,
  RETRY_TOKEN_OK,
  RetryTokenKeys,
  formatRetryTokenKey,
  generateRetryTokenKey,
  initialTokenOf,
  openRetryToken,
  parseRetryTokenKey,
  sealRetryToken,
  sealTokenBody,
  writeVarint,
  type RetryTokenFields,
  type RetryTokenKey,
} from '../../src/wire/index.js';
import { repoRoot } from '../helpers/cli.js';
import { codeOf, hex } from './helpers.js';

const vectorsDir = path.join(repoRoot, 'test', 'vectors');
const vectorText = readFileSync(path.join(vectorsDir, 'retry-token.txt'), 'utf8');
const v = Object.fromEntries(
  vectorText
    .split('\n')
    .filter((l) => l.includes(' = ') && !l.startsWith('#'))
    .map((l) => l.split(' = ') as [string, string]),
);

describe('test/vectors/retry-token.txt', () => {
  it('is byte for byte the pinned copy and names its source', () => {
    const readme = readFileSync(path.join(vectorsDir, 'README.md'), 'utf8');
    const pin = /^\| `retry-token\.txt` \|.*\| `([0-9a-f]{64})` \|$/m.exec(readme);
    expect(pin).not.toBeNull();
    expect(createHash('sha256').update(vectorText).digest('hex')).toBe(pin![1]);
    expect(vectorText).toContain('draft-ietf-quic-retry-offload-00');
  });

  it('the AEAD step reproduces the ciphertext and ICV (nonce = IV XOR unique token number)', () => {
    const key: RetryTokenKey = { sequence: 0, key: hex(v.encrypt_key), iv: hex(v.AEAD_IV) };
    // The vector's (older) plaintext layout, composed from the printed fields.
    const plaintext = Buffer.concat([
      hex(v.ODCIL),
      hex(v.RSCIL),
      hex(v.port),
      hex(v.original_destination_connection_id),
      hex(v.retry_source_connection_id),
      hex(v.timestamp),
    ]);
    const out = sealTokenBody(key, hex(v.unique_token_number), hex(v.AEAD_associated_data), plaintext);
    expect(out.toString('hex')).toBe(v.encrypted_shared_state_retry_offload_token_body + v.AEAD_ICV);
    // The printed nonce is the XOR, and the printed port is the printed client port.
    const xor = Buffer.from(hex(v.AEAD_IV).map((b, i) => b ^ hex(v.unique_token_number)[i]));
    expect(xor.toString('hex')).toBe(v.AEAD_nonce);
    expect(parseInt(v.port, 16)).toBe(Number(v.client_port));
  });
});

const ipv4 = Buffer.from([127, 0, 0, 1]);
const ipv6 = hex('20010db8000000000000000000000001');
const key0: RetryTokenKey = { sequence: 0, key: hex(v.encrypt_key), iv: hex(v.AEAD_IV) };
const key5 = generateRetryTokenKey(5);
const ring = new RetryTokenKeys([key0]);
const odcid = hex(v.original_destination_connection_id);
const rscid = hex(v.retry_source_connection_id);
const NOW = 1_800_000_000;
const fields = (over: Partial<RetryTokenFields> = {}): RetryTokenFields => ({
  clientIp: ipv4,
  clientPort: 6666,
  odcid,
  rscid,
  expiresAt: NOW + 10,
  ...over,
});
const open = (
  keys: RetryTokenKeys,
  token: Buffer,
  ip: Uint8Array = ipv4,
  port = 6666,
  dcid: Uint8Array = rscid,
  now = NOW,
): [number, OpenedRetryToken] => {
  const out = new OpenedRetryToken();
  return [openRetryToken(keys, token, 0, token.length, ip, port, dcid, now, out), out];
};

describe('sealRetryToken: the layout of the draft text (§4, §4.1)', () => {
  it('first octet, unique token number, then AES-128-GCM of the body under the pseudoheader', () => {
    const token = sealRetryToken(ring, fields());
    expect(token[0]).toBe(0); // type 0, key sequence 0
    expect(token.length).toBe(1 + 12 + (8 + 1 + 18 + 2) + 16);
    // Rebuild it independently of the module: associated data IP(16)|octet|number|RSCIL|RSCID.
    const utn = token.subarray(1, 13);
    const nonce = Buffer.from(key0.iv.map((b, i) => b ^ utn[i]));
    const ad = Buffer.concat([ipv4, Buffer.alloc(12), token.subarray(0, 13), Buffer.from([rscid.length]), rscid]);
    const body = Buffer.concat([
      Buffer.from('0000000000000000', 'hex'),
      Buffer.from([odcid.length]),
      odcid,
      Buffer.from([0x1a, 0x0a]),
    ]);
    body.writeBigUInt64BE(BigInt(NOW + 10), 0);
    const c = createCipheriv('aes-128-gcm', key0.key, nonce);
    c.setAAD(ad);
    const expected = Buffer.concat([token.subarray(0, 13), c.update(body), c.final(), c.getAuthTag()]);
    expect(token.toString('hex')).toBe(expected.toString('hex'));
  });

  it('a fresh unique token number per token', () => {
    const a = sealRetryToken(ring, fields());
    const b = sealRetryToken(ring, fields());
    expect(a.subarray(1, 13).equals(b.subarray(1, 13))).toBe(false);
  });

  it('round trip, IPv4 and IPv6, with opaque data', () => {
    for (const ip of [ipv4, ipv6]) {
      const token = sealRetryToken(ring, fields({ clientIp: ip, opaque: Buffer.from('cwnd') }));
      const [code, out] = open(ring, token, ip);
      expect(code).toBe(RETRY_TOKEN_OK);
      expect(out.odcid().equals(odcid)).toBe(true);
      expect(out.port).toBe(6666);
      expect(out.expiresAt).toBe(NOW + 10);
      expect(out.sequence).toBe(0);
      expect(out.opaque().toString()).toBe('cwnd');
    }
  });

  it('refuses fields it cannot encode', () => {
    expect(codeOf(() => sealRetryToken(ring, fields({ clientIp: Buffer.alloc(5) })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(codeOf(() => sealRetryToken(ring, fields({ clientPort: 65536 })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(codeOf(() => sealRetryToken(ring, fields({ odcid: Buffer.alloc(7) })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(codeOf(() => sealRetryToken(ring, fields({ odcid: Buffer.alloc(21) })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(codeOf(() => sealRetryToken(ring, fields({ rscid: Buffer.alloc(21) })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(codeOf(() => sealRetryToken(ring, fields({ expiresAt: -1 })))).toBe('ERR_RETRY_TOKEN_FIELD');
    expect(QUIC_WIRE_ERROR_CODES).toContain('ERR_RETRY_TOKEN_FIELD');
  });
});

describe('openRetryToken: every refusal, never a throw', () => {
  const token = sealRetryToken(ring, fields());

  it('another client IP, another Initial DCID, a flipped bit anywhere: invalid', () => {
    expect(open(ring, token, Buffer.from([127, 0, 0, 2]))[0]).toBe(RETRY_TOKEN_ERR_INVALID);
    expect(open(ring, token, ipv6)[0]).toBe(RETRY_TOKEN_ERR_INVALID);
    expect(open(ring, token, ipv4, 6666, randomBytes(16))[0]).toBe(RETRY_TOKEN_ERR_INVALID);
    for (let i = 1; i < token.length; i++) {
      const t = Buffer.from(token);
      t[i] ^= 0x01;
      expect(open(ring, t)[0], `bit flipped in octet ${i}`).toBe(RETRY_TOKEN_ERR_INVALID);
    }
  });

  it('the first octet names the key: another sequence is unknown, the type bit makes it NEW_TOKEN', () => {
    const t = Buffer.from(token);
    t[0] = 7;
    expect(open(ring, t)[0]).toBe(RETRY_TOKEN_ERR_KEY_SEQUENCE);
    t[0] = 0x80;
    expect(open(ring, t)[0]).toBe(RETRY_TOKEN_ERR_NEW_TOKEN);
  });

  it('expired only past the two-second allowance (§4.2)', () => {
    expect(open(ring, token, ipv4, 6666, rscid, NOW + 12)[0]).toBe(RETRY_TOKEN_OK);
    expect(open(ring, token, ipv4, 6666, rscid, NOW + 13)[0]).toBe(RETRY_TOKEN_ERR_EXPIRED);
  });

  it('another source port: port', () => {
    expect(open(ring, token, ipv4, 6667)[0]).toBe(RETRY_TOKEN_ERR_PORT);
  });

  it('an ODCIL outside 8..20 under a valid ICV (a key holder bug): odcid', () => {
    // Seal a body with ODCIL 7 through the AEAD step directly.
    const head = Buffer.concat([Buffer.from([0]), randomBytes(12)]);
    const ad = Buffer.concat([ipv4, Buffer.alloc(12), head, Buffer.from([rscid.length]), rscid]);
    const body = Buffer.concat([Buffer.alloc(8), Buffer.from([7]), Buffer.alloc(7), Buffer.alloc(2), Buffer.alloc(5)]);
    const t = Buffer.concat([head, sealTokenBody(key0, head.subarray(1), ad, body)]);
    expect(open(ring, t)[0]).toBe(RETRY_TOKEN_ERR_ODCID);
  });

  it('every truncation is refused without throwing', () => {
    for (let n = 0; n < token.length; n++) {
      const code = open(ring, token.subarray(0, n))[0];
      expect(code, `${n} octets`).toBeLessThan(0);
      if (n < MIN_RETRY_TOKEN_LENGTH) expect(code).toBe(RETRY_TOKEN_ERR_TRUNCATED);
    }
    expect(openRetryToken(ring, token, 10, token.length, ipv4, 6666, rscid, NOW, new OpenedRetryToken())).toBe(
      RETRY_TOKEN_ERR_TRUNCATED,
    );
  });

  it('random octets of every length: a negative code, never a throw', () => {
    for (let i = 0; i < 2000; i++) {
      const t = randomBytes(i % 120);
      t[0] &= i % 2 === 0 ? 0x00 : 0xff;
      expect(open(ring, t)[0]).toBeLessThan(0);
    }
  });

  it('result names cover every code', () => {
    expect(RETRY_TOKEN_ERROR_NAMES[-RETRY_TOKEN_ERR_PORT]).toBe('port');
    expect(RETRY_TOKEN_ERROR_NAMES[-RETRY_TOKEN_ERR_INVALID]).toBe('invalid');
    expect(RETRY_TOKEN_ERROR_NAMES.length).toBe(8);
  });
});

describe('key rings and key files', () => {
  it('rotation: the first key seals, every key opens; a removed key no longer opens', () => {
    const old = new RetryTokenKeys([key0]);
    const during = new RetryTokenKeys([key5, key0]);
    const after = new RetryTokenKeys([key5]);
    const oldToken = sealRetryToken(old, fields());
    const newToken = sealRetryToken(during, fields());
    expect(newToken[0]).toBe(5);
    expect(open(during, oldToken)[0]).toBe(RETRY_TOKEN_OK);
    expect(open(during, newToken)[0]).toBe(RETRY_TOKEN_OK);
    expect(open(after, oldToken)[0]).toBe(RETRY_TOKEN_ERR_KEY_SEQUENCE);
    expect(open(old, newToken)[0]).toBe(RETRY_TOKEN_ERR_KEY_SEQUENCE);
  });

  it('a ring refuses no key and a sequence twice', () => {
    expect(codeOf(() => new RetryTokenKeys([]))).toBe('ERR_RETRY_KEY_FILE');
    expect(codeOf(() => new RetryTokenKeys([key0, { ...key5, sequence: 0 }]))).toBe('ERR_RETRY_KEY_SEQUENCE');
  });

  it('formatRetryTokenKey and parseRetryTokenKey round trip', () => {
    const k = parseRetryTokenKey(formatRetryTokenKey(key5));
    expect(k.sequence).toBe(5);
    expect(Buffer.from(k.key).equals(Buffer.from(key5.key))).toBe(true);
    expect(Buffer.from(k.iv).equals(Buffer.from(key5.iv))).toBe(true);
  });

  it.each([
    ['', 'ERR_RETRY_KEY_FILE', /no key line/],
    ['# only a comment\n', 'ERR_RETRY_KEY_FILE', /no key line/],
    ['1 00112233445566778899aabbccddeeff\n', 'ERR_RETRY_KEY_FILE', /line 1: expected/],
    ['x 00112233445566778899aabbccddeeff 001122334455667788990011\n', 'ERR_RETRY_KEY_FILE', /line 1: sequence/],
    ['128 00112233445566778899aabbccddeeff 001122334455667788990011\n', 'ERR_RETRY_KEY_SEQUENCE', /not 0\.\.127/],
    ['1 0011 001122334455667788990011\n', 'ERR_RETRY_KEY_FILE', /line 1: key is not 32 hex/],
    ['\n1 00112233445566778899aabbccddeeff 0011\n', 'ERR_RETRY_KEY_FILE', /line 2: iv is not 24 hex/],
    [
      '1 00112233445566778899aabbccddeeff 001122334455667788990011\n2 00112233445566778899aabbccddeeff 001122334455667788990011\n',
      'ERR_RETRY_KEY_FILE',
      /line 2: a key file holds one key/,
    ],
  ])('key file %j is refused (%s)', (text, code, message) => {
    expect(codeOf(() => parseRetryTokenKey(text))).toBe(code);
    expect(() => parseRetryTokenKey(text)).toThrow(message);
  });
});

describe('initialTokenOf', () => {
  /** A v1 Initial header: DCID, SCID, token, then a Length and payload of `pad` octets. */
  function initial(token: Buffer, version = 1, pad = 1200): Buffer {
    const dcid = randomBytes(8);
    const scid = randomBytes(5);
    const tl = Buffer.alloc(8);
    const n = writeVarint(tl, 0, token.length);
    const first = version === 1 ? 0xc0 : 0xd0; // Initial: type 0b00 under v1, 0b01 under v2
    const ver = Buffer.alloc(4);
    ver.writeUInt32BE(version === 1 ? 1 : 0x6b3343cf);
    return Buffer.concat([
      Buffer.from([first]),
      ver,
      Buffer.from([8]),
      dcid,
      Buffer.from([5]),
      scid,
      tl.subarray(0, n),
      token,
      Buffer.alloc(pad),
    ]);
  }

  it('finds the token of v1 and v2 Initials, empty or not', () => {
    const token = randomBytes(77);
    for (const version of [1, 2]) {
      const d = initial(token, version);
      const out = { tokenOffset: -1, tokenLength: -1 };
      expect(initialTokenOf(d, out)).toBe(true);
      expect(d.subarray(out.tokenOffset, out.tokenOffset + out.tokenLength).equals(token)).toBe(true);
      expect(initialTokenOf(initial(Buffer.alloc(0), version), out)).toBe(true);
      expect(out.tokenLength).toBe(0);
    }
  });

  it('refuses other packet types, other versions, and every truncation, without throwing', () => {
    const out = { tokenOffset: -1, tokenLength: -1 };
    const d = initial(randomBytes(60), 1, 0);
    const handshake = Buffer.from(d);
    handshake[0] = 0xe0;
    expect(initialTokenOf(handshake, out)).toBe(false);
    const v2typed = Buffer.from(d);
    v2typed.writeUInt32BE(0x6b3343cf, 1); // 0xc0 under v2 is a 0-RTT packet, not an Initial
    expect(initialTokenOf(v2typed, out)).toBe(false);
    const unknown = Buffer.from(d);
    unknown.writeUInt32BE(0x1a2a3a4a, 1);
    expect(initialTokenOf(unknown, out)).toBe(false);
    for (let n = 0; n < d.length; n++) expect(initialTokenOf(d.subarray(0, n), out), `${n} octets`).toBe(false);
    expect(initialTokenOf(d, out)).toBe(true);
  });
});
