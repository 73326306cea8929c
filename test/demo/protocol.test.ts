// Building blocks of the demo QUIC stack against published vectors: RFC 9001 Appendix A
// (Initial keys), RFC 9000 Appendix A.3 (packet numbers), RFC 7541 Appendix B/C (Huffman),
// RFC 9204 (QPACK field sections), plus the self-signed certificate and the HTTP/3 framing.
import { createPublicKey, sign, verify, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hkdfExpandLabel, initialKeys } from '../../src/demo/crypto.js';
import { decodePacketNumber, openPacket, sealPacket } from '../../src/demo/packet.js';
import { decodeFieldSection, huffmanCodes, huffmanDecode } from '../../src/demo/qpack.js';
import { encodeResponse, generateBody, parseRequest } from '../../src/demo/h3.js';
import { generateSelfSigned } from '../../src/demo/cert.js';
import { RangeSet, Reassembler } from '../../src/demo/buffers.js';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('RFC 9001 Appendix A.1: Initial keys for DCID 8394c8f03e515708', () => {
  const keys = initialKeys(h('8394c8f03e515708'));
  it('client key, iv, hp', () => {
    expect(keys.rx.key.toString('hex')).toBe('1f369613dd76d5467730efcbe3b1a22d');
    expect(keys.rx.iv.toString('hex')).toBe('fa044b2f42a3fd3b46fb255c');
  });
  it('server key, iv', () => {
    expect(keys.tx.key.toString('hex')).toBe('cf3a5331653c364c88f0f379b6067e37');
    expect(keys.tx.iv.toString('hex')).toBe('0ac1493ca1905853b0bba03e');
  });
  it('HKDF-Expand-Label "quic hp" of the client secret', () => {
    expect(hkdfExpandLabel(keys.rx.secret, 'quic hp', Buffer.alloc(0), 16).toString('hex')).toBe(
      '9f50449e04a0e810283a1e9933adedd2',
    );
    expect(hkdfExpandLabel(keys.tx.secret, 'quic hp', Buffer.alloc(0), 16).toString('hex')).toBe(
      'c206b8d9b9f0f37644430b490eeaa314',
    );
  });
  it('seal then open round-trips and a flipped bit fails authentication (undefined, no throw)', () => {
    const header = Buffer.from('c300000001', 'hex');
    const sealed = keys.tx.seal(7, header, Buffer.from('hello'));
    expect(keys.tx.open(7, header, sealed)?.toString()).toBe('hello');
    sealed[0] ^= 1;
    expect(keys.tx.open(7, header, sealed)).toBeUndefined();
    expect(keys.tx.open(7, header, Buffer.alloc(3))).toBeUndefined();
  });
});

describe('packet protection (sealPacket / openPacket)', () => {
  const keys = initialKeys(h('8394c8f03e515708'));
  it('round-trips a long-header packet and recovers the packet number from the largest seen', () => {
    // Handshake-style long header: first octet 0xe3 (PN length 4), version 1, DCID/SCID, Length.
    const header = Buffer.concat([h('e3 00000001 04 01020304 04 05060708'), h('4020'), Buffer.alloc(4)]);
    const pnOffset = header.length - 4;
    const pkt = sealPacket(keys.tx, Buffer.from(header), pnOffset, 70000, Buffer.from('payload of the packet'));
    expect(pkt[0] & 0xf0).toBe(0xe0);
    const opened = openPacket(keys.tx, pkt, pnOffset, 69990);
    expect(opened?.pn).toBe(70000);
    expect(opened?.first).toBe(0xe3);
    expect(opened?.payload.toString()).toBe('payload of the packet');
  });
  it('short header: a wrong key, a flipped bit or a truncated packet gives undefined', () => {
    const header = Buffer.concat([h('43 0a0b0c0d0e0f1011'), Buffer.alloc(4)]);
    const pkt = sealPacket(keys.tx, Buffer.from(header), 9, 5, Buffer.from('0123456789'));
    expect(openPacket(keys.tx, pkt, 9, 4)?.payload.toString()).toBe('0123456789');
    expect(openPacket(keys.rx, pkt, 9, 4)).toBeUndefined();
    const flipped = Buffer.from(pkt);
    flipped[flipped.length - 1] ^= 0x80;
    expect(openPacket(keys.tx, flipped, 9, 4)).toBeUndefined();
    for (let n = 0; n < pkt.length; n++) expect(openPacket(keys.tx, pkt.subarray(0, n), 9, 4)).toBeUndefined();
  });
});

describe('RFC 9000 Appendix A.3: packet number decoding', () => {
  it('the RFC example', () => {
    expect(decodePacketNumber(0xa82f30ea, 0x9b32, 16)).toBe(0xa82f9b32);
  });
  it('small numbers and wrap-around', () => {
    expect(decodePacketNumber(-1, 0, 32)).toBe(0);
    expect(decodePacketNumber(254, 0x01, 8)).toBe(257);
    expect(decodePacketNumber(300, 0x2b, 8)).toBe(299);
  });
});

describe('HPACK Huffman code (RFC 7541 Appendix B) rebuilt from code lengths', () => {
  it('matches the table at sample rows', () => {
    const codes = huffmanCodes();
    expect(codes.length).toBe(257);
    expect(codes[0]).toEqual([0x1ff8, 13]);
    expect(codes[48]).toEqual([0x0, 5]); // '0'
    expect(codes[47]).toEqual([0x18, 6]); // '/'
    expect(codes[88]).toEqual([0xfc, 8]); // 'X'
    expect(codes[200]).toEqual([0x3ffffe2, 26]);
    expect(codes[254]).toEqual([0x7fffff0, 27]);
    expect(codes[256]).toEqual([0x3fffffff, 30]); // EOS
  });
  it('decodes RFC 7541 C.4.1 "www.example.com" and rejects bad padding', () => {
    expect(huffmanDecode(h('f1e3 c2e5 f23a 6ba0 ab90 f4ff'))?.toString()).toBe('www.example.com');
    expect(huffmanDecode(h('a8eb 1064 9cbf'))?.toString()).toBe('no-cache'); // C.4.2
    expect(huffmanDecode(h('f1e3 c2e5 f23a 6ba0 ab90 f400'))).toBeUndefined();
  });
});

describe('QPACK field sections (static table + literals only)', () => {
  it('indexed static fields, literal with name reference (Huffman value) and literal name', () => {
    // RIC 0, base 0; :method GET (17); :scheme https (23); :path literal "/index.html" with name ref 1;
    // :authority with name ref 0 and Huffman "www.example.com"; literal name "x-a" value "b".
    const block = Buffer.concat([
      h('0000 d1 d7'),
      h('51 0b'),
      Buffer.from('/index.html'),
      h('50 8c f1e3c2e5f23a6ba0ab90f4ff'),
      h('23'),
      Buffer.from('x-a'),
      h('01'),
      Buffer.from('b'),
    ]);
    expect(decodeFieldSection(block)).toEqual([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/index.html'],
      [':authority', 'www.example.com'],
      ['x-a', 'b'],
    ]);
  });
  it('refuses dynamic-table references and truncation (undefined, no throw)', () => {
    expect(decodeFieldSection(h('0100 d1'))).toBeUndefined(); // Required Insert Count 1
    expect(decodeFieldSection(h('0000 91'))).toBeUndefined(); // dynamic indexed field
    const ok = Buffer.concat([h('0000 51 0b'), Buffer.from('/index.html')]);
    for (let n = 3; n < ok.length; n++) expect(decodeFieldSection(ok.subarray(0, n))).toBeUndefined();
  });
});

describe('HTTP/3 framing', () => {
  it('parses a request stream and encodes a 200 response with QPACK :status 200 (index 25)', () => {
    const fields = Buffer.concat([h('0000 d1 51 0c'), Buffer.from('/bytes/12345')]);
    const stream = Buffer.concat([Buffer.of(0x01, fields.length), fields]);
    expect(parseRequest(stream)).toEqual({ method: 'GET', path: '/bytes/12345', authority: '', protocol: '' });
    expect(parseRequest(stream.subarray(0, 5))).toBe('incomplete');
    const res = encodeResponse({ status: 200, body: Buffer.from('abc') });
    expect(res.toString('hex')).toBe('01030000d9' + '0003' + '616263');
  });
  it('generated bodies: octet i is i mod 251', () => {
    const b = generateBody(600);
    expect(b.length).toBe(600);
    expect(b[250]).toBe(250);
    expect(b[251]).toBe(0);
    expect(b[599]).toBe(599 % 251);
  });
});

describe('self-signed certificate (DER built in TS)', () => {
  it('parses as X.509, names localhost and 127.0.0.1, and its signature verifies', () => {
    const id = generateSelfSigned('localhost', ['127.0.0.1']);
    const cert = new X509Certificate(id.certificates[0]);
    expect(cert.subject).toBe('CN=localhost');
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.verify(createPublicKey(id.privateKey))).toBe(true);
    const data = Buffer.from('data');
    expect(verify('sha256', data, cert.publicKey, sign('sha256', data, id.privateKey))).toBe(true);
  });
});

describe('RangeSet and Reassembler', () => {
  it('merges ranges and answers coverage', () => {
    const r = new RangeSet();
    r.add(0, 10);
    r.add(20, 30);
    r.add(10, 20);
    expect(r.ranges).toEqual([[0, 30]]);
    expect(r.covers(5, 25)).toBe(true);
    r.add(40, 41);
    expect(r.largest).toBe(40);
    expect(r.has(35)).toBe(false);
  });
  it('reassembles out-of-order, overlapping chunks exactly once', () => {
    const a = new Reassembler();
    expect(a.push(5, Buffer.from('fghij'))?.length).toBe(0);
    expect(a.push(0, Buffer.from('abcdefg'))?.toString()).toBe('abcdefghij');
    expect(a.push(3, Buffer.from('de'))?.length).toBe(0);
    expect(a.push(10, Buffer.from('k'), true)?.toString()).toBe('k');
    expect(a.finished).toBe(true);
  });
});
