// The backend kit's Retry token validator (src/backend/retry.ts) over the codec of
// src/wire/retry-token.ts: valid, tampered, other IP, other port, expired, unknown sequence,
// two keys during a rotation, IPv4-mapped client addresses, the Initial-level entry point, and
// key files that do not load (ERR_BACKEND_RETRY_KEY naming the file). No sockets.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BackendError,
  loadRetryTokenKeys,
  RETRY_TOKEN_RESULTS,
  RetryTokenValidator,
  type RetryTokenValidation,
} from '../../src/backend/index.js';
import {
  formatRetryTokenKey,
  generateRetryTokenKey,
  RETRY_TOKEN_ERR_EXPIRED,
  RETRY_TOKEN_ERR_INVALID,
  RETRY_TOKEN_ERR_KEY_SEQUENCE,
  RETRY_TOKEN_ERR_NEW_TOKEN,
  RETRY_TOKEN_ERR_PORT,
  RETRY_TOKEN_ERR_TRUNCATED,
  RETRY_TOKEN_ERROR_NAMES,
  RetryTokenKeys,
  sealRetryToken,
  type RetryTokenKey,
} from '../../src/wire/index.js';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-retry-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NOW = 1_800_000_000;
const CLIENT = { ip: Uint8Array.of(192, 0, 2, 7), address: '192.0.2.7', port: 40_123 };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function keyFile(name: string, key: RetryTokenKey | string): string {
  const f = path.join(dir, name);
  writeFileSync(f, typeof key === 'string' ? key : formatRetryTokenKey(key), { mode: 0o600 });
  return f;
}

/** A token sealed by "the LB" with `keys`, for CLIENT, in a larger buffer at offset 5. */
function sealed(keys: RetryTokenKeys, over: { ip?: Uint8Array; port?: number; expiresAt?: number } = {}) {
  const odcid = randomBytes(12);
  const rscid = randomBytes(9);
  const token = sealRetryToken(keys, {
    clientIp: over.ip ?? CLIENT.ip,
    clientPort: over.port ?? CLIENT.port,
    odcid,
    rscid,
    expiresAt: over.expiresAt ?? NOW + 10,
  });
  const buf = Buffer.concat([randomBytes(5), token, randomBytes(7)]);
  return { buf, offset: 5, length: token.length, odcid, rscid };
}

const validatorOf = (keys: RetryTokenKeys, now = NOW): RetryTokenValidator =>
  new RetryTokenValidator({ keys, now: () => now });

function check(
  v: RetryTokenValidator,
  t: ReturnType<typeof sealed>,
  address = CLIENT.address,
  port = CLIENT.port,
  dcid: Uint8Array = t.rscid,
): RetryTokenValidation {
  return v.validate(t.buf, t.offset, t.length, address, port, dcid);
}

describe('RetryTokenValidator', () => {
  const k1 = generateRetryTokenKey(1);
  const k2 = generateRetryTokenKey(2);
  const ring1 = new RetryTokenKeys([k1]);

  it('a valid token gives the ODCID and RSCID (= the bearing DCID), and counts it', () => {
    const v = validatorOf(ring1);
    const t = sealed(ring1);
    const r = check(v, t);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect([hex(r.odcid), hex(r.rscid), r.sequence, r.expiresAt]).toEqual([hex(t.odcid), hex(t.rscid), 1, NOW + 10]);
    expect(v.stats.valid).toBe(1);
  });

  it('refuses, with the right code and counter: tampered, other IP, other port, other DCID, expired, unknown sequence', () => {
    const v = validatorOf(ring1);
    const refused = (r: RetryTokenValidation): [number, string] => (r.ok ? [0, 'valid'] : [r.code, r.reason]);
    for (let i = 0; i < 16; i++) {
      // A flipped bit anywhere after the first octet (the first names the sequence: see below).
      const t = sealed(ring1);
      t.buf[t.offset + 1 + ((i * 7) % (t.length - 1))] ^= 1 << (i % 8);
      expect(refused(check(v, t))).toEqual([RETRY_TOKEN_ERR_INVALID, 'invalid']);
    }
    expect(refused(check(v, sealed(ring1), '192.0.2.8'))).toEqual([RETRY_TOKEN_ERR_INVALID, 'invalid']);
    expect(refused(check(v, sealed(ring1), '2001:db8::7'))).toEqual([RETRY_TOKEN_ERR_INVALID, 'invalid']);
    expect(refused(check(v, sealed(ring1), CLIENT.address, CLIENT.port + 1))).toEqual([RETRY_TOKEN_ERR_PORT, 'port']);
    expect(refused(check(v, sealed(ring1), CLIENT.address, CLIENT.port, randomBytes(9)))).toEqual([
      RETRY_TOKEN_ERR_INVALID,
      'invalid',
    ]);
    // The draft's 2 s skew allowance: 2 s past the timestamp still opens, 3 s does not.
    expect(check(validatorOf(ring1, NOW + 12), sealed(ring1)).ok).toBe(true);
    expect(refused(check(v, sealed(ring1, { expiresAt: NOW - 3 })))).toEqual([RETRY_TOKEN_ERR_EXPIRED, 'expired']);
    expect(refused(check(v, sealed(new RetryTokenKeys([k2]))))).toEqual([RETRY_TOKEN_ERR_KEY_SEQUENCE, 'key_sequence']);
    const t = sealed(ring1);
    expect(refused(v.validate(t.buf, t.offset, 20, CLIENT.address, CLIENT.port, t.rscid))).toEqual([
      RETRY_TOKEN_ERR_TRUNCATED,
      'truncated',
    ]);
    t.buf[t.offset] |= 0x80; // type 1: a NEW_TOKEN token, not ours to open
    expect(refused(check(v, t))).toEqual([RETRY_TOKEN_ERR_NEW_TOKEN, 'new_token']);
    expect(refused(check(v, sealed(ring1), 'not-an-address'))).toEqual([RETRY_TOKEN_ERR_INVALID, 'invalid']);
    const { valid, invalid, port, expired, key_sequence: keySequence, truncated, new_token: newToken } = v.stats;
    expect({ valid, invalid, port, expired, keySequence, truncated, newToken }).toEqual({
      valid: 0,
      invalid: 16 + 3 + 1,
      port: 1,
      expired: 1,
      keySequence: 1,
      truncated: 1,
      newToken: 1,
    });
  });

  it('two keys during a rotation: tokens of either sequence open; setKeys drops the old one', () => {
    const old = new RetryTokenKeys([k1]);
    const next = new RetryTokenKeys([k2]);
    const v = validatorOf(new RetryTokenKeys([k2, k1]));
    const a = check(v, sealed(old));
    const b = check(v, sealed(next));
    expect([a.ok && a.sequence, b.ok && b.sequence]).toEqual([1, 2]);
    v.setKeys(next);
    expect(check(v, sealed(old))).toMatchObject({ ok: false, reason: 'key_sequence' });
    expect(check(v, sealed(next)).ok).toBe(true);
    expect(v.stats.valid).toBe(3);
  });

  it('an IPv4 client seen as IPv4-mapped IPv6 (a dual-stack socket) matches the IPv4 token and the mapped one', () => {
    const v = validatorOf(ring1);
    expect(check(v, sealed(ring1), `::ffff:${CLIENT.address}`).ok).toBe(true);
    // ... and the token of an LB that saw the client as ::ffff:a.b.c.d (a dual-stack socket) too.
    const mapped = Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), CLIENT.ip]);
    expect(check(v, sealed(ring1, { ip: mapped }), `::ffff:${CLIENT.address}`).ok).toBe(true);
    expect(check(v, sealed(ring1, { ip: mapped }), `::ffff:192.0.2.9`).ok).toBe(false);
    expect(check(v, sealed(ring1, { ip: mapped }), CLIENT.address).ok).toBe(true);
    const ip6 = Buffer.from('20010db8000000000000000000000007', 'hex');
    expect(check(v, sealed(ring1, { ip: ip6 }), '2001:db8::7').ok).toBe(true);
  });

  it('validateInitial finds the token and the DCID of an Initial; no token or no Initial: undefined, not counted', () => {
    const v = validatorOf(ring1);
    const t = sealed(ring1);
    const token = t.buf.subarray(t.offset, t.offset + t.length);
    // RFC 9000 §17.2.2: first octet, version, DCID, SCID, Token Length (2-octet varint), Token, Length, ...
    const initial = (dcid: Uint8Array, tok: Uint8Array): Buffer =>
      Buffer.concat([
        Buffer.of(0xc0, 0, 0, 0, 1, dcid.length),
        dcid,
        Buffer.of(8),
        randomBytes(8),
        Buffer.of(0x40 | (tok.length >> 8), tok.length & 0xff),
        tok,
        Buffer.of(0x44, 0xd0), // Length 1232
        randomBytes(1232),
      ]);
    const r = v.validateInitial(initial(t.rscid, token), CLIENT.address, CLIENT.port);
    expect(r?.ok && hex(r.odcid)).toBe(hex(t.odcid));
    expect(v.validateInitial(initial(randomBytes(9), token), CLIENT.address, CLIENT.port)).toMatchObject({
      ok: false,
      reason: 'invalid',
    });
    expect(v.validateInitial(initial(t.rscid, new Uint8Array(0)), CLIENT.address, CLIENT.port)).toBeUndefined();
    expect(v.validateInitial(Buffer.from('4000', 'hex'), CLIENT.address, CLIENT.port)).toBeUndefined();
    expect([v.stats.valid, v.stats.invalid]).toEqual([1, 1]);
  });
});

describe('RETRY_TOKEN_RESULTS', () => {
  it('names the codec codes in its order (valid for RETRY_TOKEN_OK)', () => {
    expect(RETRY_TOKEN_RESULTS.slice(1)).toEqual(RETRY_TOKEN_ERROR_NAMES.slice(1));
    expect(RETRY_TOKEN_RESULTS[-RETRY_TOKEN_ERR_PORT]).toBe('port');
  });
});

describe('loadRetryTokenKeys', () => {
  const catchErr = (f: () => unknown): BackendError => {
    try {
      f();
    } catch (err) {
      if (err instanceof BackendError) return err;
      throw err;
    }
    throw new Error('did not throw');
  };

  it('reads one key per file, first file first', () => {
    const a = generateRetryTokenKey(4);
    const b = generateRetryTokenKey(5);
    const ring = loadRetryTokenKeys([keyFile('a.key', `# current\n${formatRetryTokenKey(a)}`), keyFile('b.key', b)]);
    expect([ring.sealing, ring.has(4), ring.has(5), ring.has(6)]).toEqual([4, true, true, false]);
    // The validator built from the files opens what the in-memory ring seals.
    const v = RetryTokenValidator.fromFiles([keyFile('c.key', b)], () => NOW);
    expect(check(v, sealed(new RetryTokenKeys([b]))).ok).toBe(true);
  });

  it('ERR_BACKEND_RETRY_KEY naming the file: missing, unreadable content, duplicate sequence, none, too many', () => {
    const missing = path.join(dir, 'missing.key');
    let e = catchErr(() => loadRetryTokenKeys([keyFile('ok.key', generateRetryTokenKey(1)), missing]));
    expect([e.code, e.field]).toEqual(['ERR_BACKEND_RETRY_KEY', 'retryKeyFiles[1]']);
    expect(e.message).toContain(`cannot read ${missing}`);
    const bad = keyFile('bad.key', '1 0011 0022\n');
    e = catchErr(() => loadRetryTokenKeys([bad]));
    expect([e.code, e.field]).toEqual(['ERR_BACKEND_RETRY_KEY', 'retryKeyFiles[0]']);
    expect(e.message).toContain(bad);
    const dup = [keyFile('d1.key', generateRetryTokenKey(7)), keyFile('d2.key', generateRetryTokenKey(7))];
    e = catchErr(() => loadRetryTokenKeys(dup));
    expect([e.code, e.field]).toEqual(['ERR_BACKEND_RETRY_KEY', 'retryKeyFiles']);
    expect(e.message).toContain(dup[1]);
    expect(catchErr(() => loadRetryTokenKeys([])).field).toBe('retryKeyFiles');
    const five = [1, 2, 3, 4, 5].map((i) => keyFile(`k${i}.key`, generateRetryTokenKey(i)));
    expect(catchErr(() => loadRetryTokenKeys(five)).message).toMatch(/1 to 4 key files, got 5/);
  });
});
