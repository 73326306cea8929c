// Retry packets and their integrity tag (src/wire/retry.ts) against the RFC 9001 and RFC 9369
// Appendix A.4 packets, kept in test/vectors/retry.txt and pinned by SHA-256 there.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  QUIC_V1,
  QUIC_WIRE_ERROR_CODES,
  QUIC_V2,
  RETRY_ERROR_NAMES,
  RETRY_ERR_CID_LENGTH,
  RETRY_ERR_NOT_RETRY,
  RETRY_ERR_TAG,
  RETRY_ERR_TOKEN_EMPTY,
  RETRY_ERR_TRUNCATED,
  RETRY_INTEGRITY_TAG_LENGTH,
  RETRY_OK,
  RetryPacket,
  encodeRetry,
  parseRetry,
  retryIntegrityTag,
  verifyRetry,
} from '../../src/wire/index.js';
import { repoRoot } from '../helpers/cli.js';
import { codeOf, fieldOf, hex } from './helpers.js';

const vectorsDir = path.join(repoRoot, 'test', 'vectors');

interface RetryVector {
  version: number;
  odcid: Buffer;
  packet: Buffer;
}

/** Lines `v1|v2 <odcid hex> <packet hex>`; `#` lines name the source. */
function loadRetryVectors(): RetryVector[] {
  return readFileSync(path.join(vectorsDir, 'retry.txt'), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [v, odcid, packet] = l.split(' ');
      return { version: v === 'v1' ? QUIC_V1 : QUIC_V2, odcid: hex(odcid), packet: hex(packet) };
    });
}

const vectors = loadRetryVectors();
const named = (v: RetryVector): string => (v.version === QUIC_V1 ? 'RFC 9001 A.4 (v1)' : 'RFC 9369 A.4 (v2)');
const split = (p: Buffer): [Buffer, Buffer] => [
  p.subarray(0, p.length - RETRY_INTEGRITY_TAG_LENGTH),
  p.subarray(p.length - RETRY_INTEGRITY_TAG_LENGTH),
];

describe('test/vectors/retry.txt', () => {
  it('is byte for byte the pinned copy and names its RFC sections', () => {
    const text = readFileSync(path.join(vectorsDir, 'retry.txt'));
    const readme = readFileSync(path.join(vectorsDir, 'README.md'), 'utf8');
    const pin = /^\| `retry\.txt` \|.*\| `([0-9a-f]{64})` \|$/m.exec(readme);
    expect(pin).not.toBeNull();
    expect(createHash('sha256').update(text).digest('hex')).toBe(pin![1]);
    expect(text.toString()).toContain('RFC 9001 (QUIC-TLS, May 2021) Appendix A.4');
    expect(text.toString()).toContain('RFC 9369 (QUIC Version 2, May 2023) Appendix A.4');
    expect(vectors.map((v) => v.version)).toEqual([QUIC_V1, QUIC_V2]);
  });
});

describe.each(vectors)('the Retry of $packet.length octets', (v) => {
  const [body, tag] = split(v.packet);

  it(`${named(v)}: the integrity tag is reproduced`, () => {
    expect(retryIntegrityTag(v.version, v.odcid, body).toString('hex')).toBe(tag.toString('hex'));
  });

  it(`${named(v)}: encodeRetry reproduces the packet byte for byte`, () => {
    const out = encodeRetry({
      version: v.version,
      dcid: new Uint8Array(0),
      scid: hex('f067a5502a4262b5'),
      token: Buffer.from('token'),
      odcid: v.odcid,
      unused: 0x0f,
    });
    expect(out.toString('hex')).toBe(v.packet.toString('hex'));
  });

  it(`${named(v)}: parseRetry gives the fields and accepts the tag`, () => {
    const out = new RetryPacket();
    expect(parseRetry(v.packet, v.odcid, out)).toBe(RETRY_OK);
    expect(out.version).toBe(v.version);
    expect(out.unused).toBe(0x0f);
    expect(out.dcidLength).toBe(0);
    expect(v.packet.subarray(out.scidOffset, out.scidOffset + out.scidLength).toString('hex')).toBe('f067a5502a4262b5');
    expect(v.packet.subarray(out.tokenOffset, out.tokenOffset + out.tokenLength).toString()).toBe('token');
    expect(verifyRetry(v.packet, v.odcid)).toBe(true);
  });

  it(`${named(v)}: a flipped bit anywhere fails verification`, () => {
    const out = new RetryPacket();
    for (let i = 0; i < v.packet.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(v.packet);
        bad[i] ^= 1 << bit;
        const code = parseRetry(bad, v.odcid, out);
        expect(code, `octet ${i} bit ${bit}`).toBeLessThan(0);
        expect(verifyRetry(bad, v.odcid)).toBe(false);
      }
    }
  });

  it(`${named(v)}: every truncated prefix is refused without throwing`, () => {
    const out = new RetryPacket();
    const seen = new Set<number>();
    for (let n = 0; n < v.packet.length; n++) {
      const code = parseRetry(v.packet.subarray(0, n), v.odcid, out);
      expect(code, `prefix of ${n}`).toBeLessThan(0);
      seen.add(code);
    }
    expect([...seen].sort()).toEqual([RETRY_ERR_TAG, RETRY_ERR_TOKEN_EMPTY, RETRY_ERR_TRUNCATED].sort());
  });

  it(`${named(v)}: a wrong ODCID fails, and so does the other version's key`, () => {
    const wrong = Buffer.from(v.odcid);
    wrong[7] ^= 0x01;
    expect(parseRetry(v.packet, wrong, new RetryPacket())).toBe(RETRY_ERR_TAG);
    expect(verifyRetry(v.packet, v.odcid.subarray(0, 7))).toBe(false);
    expect(verifyRetry(v.packet, new Uint8Array(0))).toBe(false);
    const other = v.version === QUIC_V1 ? QUIC_V2 : QUIC_V1;
    expect(retryIntegrityTag(other, v.odcid, body).equals(tag)).toBe(false);
  });
});

describe('encodeRetry / parseRetry round trips', () => {
  const cases = [
    { version: QUIC_V1, dcid: 0, scid: 20, token: 1, odcid: 8 },
    { version: QUIC_V2, dcid: 20, scid: 0, token: 300, odcid: 20 },
    { version: QUIC_V1, dcid: 8, scid: 8, token: 1200, odcid: 0 },
  ];
  it.each(cases)('v$version dcid $dcid scid $scid token $token odcid $odcid', (c) => {
    const f = {
      version: c.version,
      dcid: Buffer.alloc(c.dcid, 0xd1),
      scid: Buffer.alloc(c.scid, 0x5c),
      token: Buffer.alloc(c.token, 0x7e),
      odcid: Buffer.alloc(c.odcid, 0x0d),
    };
    const packet = encodeRetry(f);
    expect(packet.length).toBe(7 + c.dcid + c.scid + c.token + 16);
    // Long header, fixed bit, Retry type bits: 0b11 in v1, 0b00 in v2 (RFC 9369 §3.2).
    expect(packet[0] & 0xf0).toBe(c.version === QUIC_V1 ? 0xf0 : 0xc0);
    const out = new RetryPacket();
    expect(parseRetry(packet, f.odcid, out)).toBe(RETRY_OK);
    expect(out.version).toBe(c.version);
    expect(packet.subarray(out.dcidOffset, out.dcidOffset + out.dcidLength)).toEqual(f.dcid);
    expect(packet.subarray(out.scidOffset, out.scidOffset + out.scidLength)).toEqual(f.scid);
    expect(packet.subarray(out.tokenOffset, out.tokenOffset + out.tokenLength)).toEqual(f.token);
  });

  it('draws the unused bits at random when not given (RFC 9000 §17.2.5)', () => {
    const f = { version: QUIC_V1, dcid: hex('01'), scid: hex('02'), token: hex('03'), odcid: hex('04') };
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const p = encodeRetry(f);
      expect(verifyRetry(p, f.odcid)).toBe(true);
      seen.add(p[0] & 0x0f);
    }
    // 200 draws over 16 values: all landing on fewer than 8 has probability far below 1e-30.
    expect(seen.size).toBeGreaterThanOrEqual(8);
  });
});

describe('hostile and wrong input', () => {
  const odcid = hex('8394c8f03e515708');
  const good = vectors[0].packet;
  const out = new RetryPacket();

  it('refuses other packet types, versions and short headers', () => {
    const initial = Buffer.from(good);
    initial[0] = 0xc0; // v1 Initial
    expect(parseRetry(initial, odcid, out)).toBe(RETRY_ERR_NOT_RETRY);
    const draft = Buffer.from(good);
    draft.writeUInt32BE(0xff00001d, 1);
    expect(parseRetry(draft, odcid, out)).toBe(RETRY_ERR_NOT_RETRY);
    expect(parseRetry(hex('4f000000010008'), odcid, out)).toBe(RETRY_ERR_NOT_RETRY);
    expect(parseRetry(Buffer.alloc(0), odcid, out)).toBe(RETRY_ERR_TRUNCATED);
  });

  it('refuses CID lengths above 20 (in the packet or the ODCID given)', () => {
    const long = Buffer.concat([hex('ff0000000115'), Buffer.alloc(21), hex('00'), Buffer.alloc(17)]);
    expect(parseRetry(long, odcid, out)).toBe(RETRY_ERR_CID_LENGTH);
    expect(parseRetry(good, Buffer.alloc(21), out)).toBe(RETRY_ERR_CID_LENGTH);
  });

  it('never throws on random datagrams', () => {
    let ok = 0;
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.from(Array.from({ length: i % 80 }, () => Math.floor(Math.random() * 256)));
      if (i % 2 === 0 && buf.length > 5) buf.writeUInt32BE(i % 4 === 0 ? QUIC_V1 : QUIC_V2, 1);
      const code = parseRetry(buf, odcid, out);
      expect(RETRY_ERROR_NAMES[-code]).toBeDefined();
      if (code === RETRY_OK) ok++;
    }
    expect(ok).toBe(0);
  });

  it('throws stable codes on the encode side', () => {
    const f = { version: QUIC_V1, dcid: hex('01'), scid: hex('02'), token: hex('03'), odcid };
    expect(codeOf(() => encodeRetry({ ...f, version: 0xff00001d }))).toBe('ERR_RETRY_VERSION');
    expect(codeOf(() => retryIntegrityTag(0x0a0a0a0a, odcid, hex('ff')))).toBe('ERR_RETRY_VERSION');
    expect(codeOf(() => encodeRetry({ ...f, scid: Buffer.alloc(21) }))).toBe('ERR_RETRY_CID_LENGTH');
    expect(fieldOf(() => encodeRetry({ ...f, dcid: Buffer.alloc(21) }))).toBe('dcid');
    expect(fieldOf(() => retryIntegrityTag(QUIC_V1, Buffer.alloc(21), hex('ff')))).toBe('odcid');
    expect(codeOf(() => encodeRetry({ ...f, token: new Uint8Array(0) }))).toBe('ERR_RETRY_TOKEN_EMPTY');
    expect(codeOf(() => encodeRetry({ ...f, unused: 16 }))).toBe('ERR_RETRY_UNUSED');
    expect(codeOf(() => encodeRetry({ ...f, unused: 1.5 }))).toBe('ERR_RETRY_UNUSED');
  });

  it('documents every ERR_RETRY_* code in the src/wire/README.md table', () => {
    const readme = readFileSync(path.join(repoRoot, 'src', 'wire', 'README.md'), 'utf8');
    const codes = QUIC_WIRE_ERROR_CODES.filter((c) => c.startsWith('ERR_RETRY_'));
    // retry.ts (4) and retry-token.ts (3)
    expect(codes).toHaveLength(7);
    for (const c of codes) expect(readme).toMatch(new RegExp(`^\\| ${c} \\|`, 'm'));
  });
});
