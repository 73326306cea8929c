// Every vector of test/vectors (kept in the repository, each naming its source): draft-21
// Appendix B (and its corrected copies), the §5.4.2.4 worked example with intermediates,
// google/quiche's vectors, and the obsolete draft-15..17 four-pass vectors that a draft-18+
// implementation must NOT reproduce.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createConfig,
  decodeServerId,
  encodeConnectionId,
  QuicLbDecoder,
  TOO_SHORT,
  UNKNOWN_CONFIG,
  UNROUTABLE,
  type QuicLbConfig,
} from '../../src/cid/index.js';
import { FourPassCodec } from '../../src/cid/codec.js';
import { createBlockCipher } from '../../src/cid/cipher.js';
import { repoRoot } from '../helpers/cli.js';
import {
  hex,
  loadVectors,
  pinnedDigests,
  toHex,
  vectorFileDigest,
  vectorsDir,
  type Vector,
  type VectorFile,
} from './vectors.js';

const draft = loadVectors('draft-21.json');
const quiche = loadVectors('quiche.json');
const ciphers = ['table', 'node'] as const;

function configFor(v: Vector, cipher: 'table' | 'node', selfEncodeLength = true): QuicLbConfig {
  return createConfig({
    configId: v.cr_bits,
    serverIdLength: v.sid_len!,
    nonceLength: v.nonce_len!,
    key: v.key === null ? undefined : hex(v.key),
    selfEncodeLength,
    cipher,
  });
}

describe('the vector files (test/vectors)', () => {
  it('live inside the checkout', () => {
    const rel = path.relative(repoRoot, vectorsDir);
    expect(rel).toBe(path.join('test', 'vectors'));
  });

  it('are byte for byte the pinned copies (SHA-256 in test/vectors/README.md) and every vector names its source', () => {
    const files: VectorFile[] = ['draft-21.json', 'quiche.json'];
    const pins = pinnedDigests();
    expect([...pins.keys()].sort()).toEqual(files);
    for (const file of files) {
      expect(vectorFileDigest(file), `${file} was edited`).toBe(pins.get(file));
      for (const v of loadVectors(file))
        expect(v.source, v.cid).toMatch(/draft-ietf-quic-load-balancers-\d|google\/quiche @ [0-9a-f]{12}/);
    }
  });
});

const algorithmName = { plaintext: 'plaintext', single_pass: 'single-pass', four_pass: 'four-pass' } as const;
const label = (v: Vector): string => `${v.algorithm} cr=${v.cr_bits} ${v.sid_len}+${v.nonce_len} ${v.cid}`;

function checkPositive(v: Vector, cipher: 'table' | 'node'): void {
  const cid = hex(v.cid);
  // The first octet says whether the vector self-encodes its length (quiche's decoder vectors do not).
  const selfEncoded = (cid[0] & 0x1f) === cid.length - 1;
  const config = configFor(v, cipher, selfEncoded);
  expect(config.algorithm).toBe(algorithmName[v.algorithm as keyof typeof algorithmName]);
  if (v.nonce !== null) {
    const encoded = encodeConnectionId(config, hex(v.server_id!), hex(v.nonce));
    expect(toHex(encoded)).toBe(v.cid.slice(0, 2 * config.cidLength));
  }
  expect(toHex(decodeServerId(config, cid)!)).toBe(v.server_id);
  const decoder = new QuicLbDecoder([config]);
  const out = new Uint8Array(20);
  // Inside a larger datagram, at an offset, with the datagram's tail after it.
  const datagram = new Uint8Array(cid.length + 40).fill(0xa5);
  datagram.set(cid, 7);
  expect(decoder.decode(datagram, 7, cid.length, out)).toBe(v.cr_bits);
  expect(toHex(out.subarray(0, v.sid_len!))).toBe(v.server_id);
}

describe('draft-21 Appendix B and worked example (test/vectors/draft-21.json)', () => {
  const positives = draft.filter((v) => v.self_consistent === true && v.algorithm !== 'four_pass_legacy_d15_d17');
  it('has the vectors the digest lists', () => {
    expect(positives.length).toBe(7);
  });
  for (const cipher of ciphers) {
    for (const v of positives) {
      it(`${cipher}: ${label(v)} encodes and decodes exactly`, () => checkPositive(v, cipher));
    }
  }

  it('B.1 vector 2 is the known erratum: its nonce does not even parse as octets', () => {
    const broken = draft.find((v) => v.cid === '20a350d28b4203487d970b')!;
    expect(broken.self_consistent).toBe(false);
    expect(() => hex(broken.nonce!)).toThrow();
  });

  it('B.2 vector 4 as printed (0x12 under cr_bits 3) is rejected for codepoint 3; the corrected 0x72 decodes', () => {
    const printed = draft.find((v) => v.self_consistent === false && v.cid.startsWith('12'))!;
    const config = configFor(printed, 'table');
    expect(config.configId).toBe(3);
    expect(decodeServerId(config, hex(printed.cid))).toBeUndefined();
    expect(toHex(encodeConnectionId(config, hex(printed.server_id!), hex(printed.nonce!)))).toBe(
      '72' + printed.cid.slice(2),
    );
  });

  for (const cipher of ciphers) {
    it(`${cipher}: worked example §5.4.2.4 reproduces every intermediate`, () => {
      const v = draft.find((x) => x.intermediates !== undefined)!;
      const codec = new FourPassCodec(v.sid_len!, v.nonce_len!, createBlockCipher(hex(v.key!), cipher));
      const trace = codec.trace(hex(v.server_id!), hex(v.nonce!));
      for (const [name, value] of Object.entries(v.intermediates!)) {
        expect(toHex(trace[name]), name).toBe(value);
      }
      // The draft misprints the step-10 operand as 0xb3e4357c; the AES output is 0xb334357c.
      expect(toHex(trace.pass4_aes_out).slice(0, 8)).toBe('b334357c');
    });
  }

  const legacy = [...draft, ...quiche].filter((v) => v.algorithm === 'four_pass_legacy_d15_d17');
  for (const v of legacy) {
    it(`obsolete draft-15..17 vector ${v.cid} does NOT match`, () => {
      const config = configFor(v, 'table', true);
      const encoded = toHex(encodeConnectionId(config, hex(v.server_id!), hex(v.nonce!)));
      expect(encoded.slice(2)).not.toBe(v.cid.slice(2));
      expect(toHex(decodeServerId(config, hex(v.cid)) ?? new Uint8Array())).not.toBe(v.server_id);
    });
  }
});

describe('google/quiche vectors (test/vectors/quiche.json)', () => {
  const positives = quiche.filter((v) => v.expect === 'server_id' && v.algorithm !== 'four_pass_legacy_d15_d17');
  it('has every positive quiche vector', () => {
    expect(positives.length).toBe(18);
  });
  for (const cipher of ciphers) {
    for (const v of positives) {
      it(`${cipher}: ${label(v)} (${v.source.split(':: ')[1]})`, () => checkPositive(v, cipher));
    }
  }

  it('quiche writes its nonce counter little-endian: the seed octets reproduce its nonces', () => {
    // seed = uint128(hi=0x9321e7e34dde525d, lo=0xe5d1c048bf0d08ee), masked to nonce_len, host order.
    const seed = (0x9321e7e34dde525dn << 64n) | 0xe5d1c048bf0d08een;
    const le = (value: bigint, len: number): string => {
      let s = '';
      for (let i = 0; i < len; i++) s += ((value >> BigInt(8 * i)) & 0xffn).toString(16).padStart(2, '0');
      return s;
    };
    const seeded = quiche.filter((v) => v.source.includes('EncoderTestVectors'));
    expect(seeded.length).toBe(8);
    for (const v of seeded) expect(le(seed, v.nonce_len!)).toBe(v.nonce);
    // RunOutOfNonces: seed 0xdeadbeef + 0xfffffffe (mod 2^32) = 0xdeadbeed, little-endian.
    const run = quiche.find((v) => v.source.includes('RunOutOfNonces') && v.algorithm === 'four_pass')!;
    expect(le((0xdeadbeefn + 0xfffffffen) & 0xffffffffn, 4)).toBe(run.nonce);
  });

  // Decoder negative cases: which configs quiche's decoder held in each test.
  const decoderSetups: Record<string, (d: QuicLbDecoder) => void> = {
    InvalidConfigId: (d) => d.setConfig(createConfig({ configId: 1, serverIdLength: 3, nonceLength: 4 })),
    UnroutableCodepoint: (d) => d.setConfig(createConfig({ configId: 1, serverIdLength: 3, nonceLength: 4 })),
    UnroutableCodepointAnyLength: (d) => d.setConfig(createConfig({ configId: 1, serverIdLength: 3, nonceLength: 4 })),
    ConnectionIdTooShort: (d) => d.setConfig(createConfig({ configId: 0, serverIdLength: 3, nonceLength: 4 })),
    DeleteConfigGoodId: (d) => {
      d.setConfig(createConfig({ configId: 2, serverIdLength: 3, nonceLength: 4 }));
      expect(d.removeConfig(2)).toBe(true);
    },
    UnroutableConnectionId: (d) => {
      // Every codepoint that can hold a config: 0b111 must still be unroutable.
      for (let id = 0; id <= 6; id++) d.setConfig(createConfig({ configId: id, serverIdLength: 3, nonceLength: 4 }));
    },
  };
  const negatives = quiche.filter((v) => v.expect === 'unroutable');
  it('covers every must-fail quiche vector', () => {
    expect(negatives.length).toBe(6);
  });
  for (const v of negatives) {
    const test = v.source.split(':: ')[1];
    it(`${v.cid} is unroutable (${test})`, () => {
      const decoder = new QuicLbDecoder();
      decoderSetups[test](decoder);
      const cid = hex(v.cid);
      const out = new Uint8Array(20).fill(0xee);
      expect([UNROUTABLE, UNKNOWN_CONFIG, TOO_SHORT]).toContain(decoder.decode(cid, 0, cid.length, out));
      expect(out.every((b) => b === 0xee)).toBe(true);
      for (const config of decoder.listConfigs()) expect(decodeServerId(config, cid)).toBeUndefined();
    });
  }
});
