import { describe, expect, it } from 'vitest';
import {
  HEALTH_PROBE_LENGTH,
  HealthProbeKind,
  PROXY_ERR_AUTH,
  ProxyCommand,
  ProxyHeader,
  answerHealthProbe,
  createProxyAuth,
  encodeHealthProbe,
  isHealthProbeRequest,
  parseHealthProbe,
  parseProxyHeader,
} from '../../src/wire/index.js';

const TOKEN = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

describe('LB health probe (PROXY v2 LOCAL + TLV 0xEE)', () => {
  it('exact bytes, and a well-formed PROXY v2 LOCAL header to parseProxyHeader', () => {
    const p = encodeHealthProbe(HealthProbeKind.REQUEST, TOKEN);
    expect(Buffer.from(p).toString('hex')).toBe(
      '0d0a0d0a000d0a515549540a' + '20' + '00' + '000c' + 'ee' + '0009' + '01' + '0102030405060708',
    );
    const h = new ProxyHeader();
    expect(parseProxyHeader(p, h)).toBe(HEALTH_PROBE_LENGTH);
    expect(h.command).toBe(ProxyCommand.LOCAL);
    // never mistaken for an authenticated encapsulated datagram
    expect(parseProxyHeader(p, h, createProxyAuth(new Uint8Array(32)))).toBe(PROXY_ERR_AUTH);
  });
  it('answer echoes the token with kind UP or DRAINING; only requests are answered', () => {
    const req = encodeHealthProbe(HealthProbeKind.REQUEST, TOKEN);
    expect(isHealthProbeRequest(req)).toBe(true);
    const up = answerHealthProbe(req) as Uint8Array;
    expect(parseHealthProbe(up)).toBe(HealthProbeKind.UP);
    expect(Buffer.from(up.subarray(20)).equals(Buffer.from(TOKEN))).toBe(true);
    expect(parseHealthProbe(answerHealthProbe(req, true) as Uint8Array)).toBe(HealthProbeKind.DRAINING);
    expect(answerHealthProbe(up)).toBeUndefined();
  });
  it('every truncation, extension or single-octet change of the fixed part is rejected', () => {
    const req = encodeHealthProbe(HealthProbeKind.REQUEST, TOKEN);
    for (let n = 0; n < req.length; n++) expect(parseHealthProbe(req.subarray(0, n))).toBe(-1);
    expect(parseHealthProbe(Buffer.concat([req, Buffer.of(0)]))).toBe(-1);
    for (let i = 0; i < 20; i++) {
      const m = Uint8Array.from(req);
      m[i] ^= 0x01;
      const k = parseHealthProbe(m);
      if (i === 19)
        expect(k === -1 || k === HealthProbeKind.DRAINING).toBe(true); // 1 ^ 1 = 0 invalid; kind octet
      else expect(k).toBe(-1);
    }
  });
  it('misuse throws', () => {
    expect(() => encodeHealthProbe(HealthProbeKind.REQUEST, new Uint8Array(7))).toThrow(RangeError);
    expect(() => encodeHealthProbe(HealthProbeKind.REQUEST, TOKEN, new Uint8Array(27))).toThrow(RangeError);
  });
});
