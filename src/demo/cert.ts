// A self-signed X.509 v3 certificate (ECDSA P-256, SHA-256) built with a small DER encoder,
// so the demo server runs without openssl. RFC 5280 §4.1 structure, X.690 DER rules.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.of(tag), derLength(body.length), body]);
}

const seq = (...c: Uint8Array[]): Buffer => tlv(0x30, ...c);
const set = (...c: Uint8Array[]): Buffer => tlv(0x31, ...c);

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [parts[0] * 40 + parts[1]];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function positiveInteger(bytes: Uint8Array): Buffer {
  const b = Buffer.from(bytes);
  return tlv(0x02, b[0] & 0x80 ? Buffer.concat([Buffer.of(0), b]) : b);
}

function utcTime(d: Date): Buffer {
  const p = (n: number): string => String(n).padStart(2, '0');
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}

const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_COMMON_NAME = '2.5.4.3';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';

/** A server certificate chain (one self-signed certificate) and its private key. */
export interface ServerIdentity {
  /** DER certificates, leaf first */
  certificates: Buffer[];
  privateKey: KeyObject;
}

/**
 * Generates an ECDSA P-256 key and a self-signed certificate for `commonName`, valid from one
 * hour ago for `days` days, with subjectAltName dNSName=commonName and the given IP addresses.
 */
export function generateSelfSigned(
  commonName = 'localhost',
  ipAddresses: string[] = ['127.0.0.1'],
  days = 30,
): ServerIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const name = seq(set(seq(oid(OID_COMMON_NAME), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const now = Date.now();
  const altNames = [tlv(0x82, Buffer.from(commonName, 'ascii'))];
  for (const ip of ipAddresses) altNames.push(tlv(0x87, Buffer.from(ip.split('.').map(Number))));
  const extensions = tlv(0xa3, seq(seq(oid(OID_SUBJECT_ALT_NAME), tlv(0x04, seq(...altNames)))));
  const sigAlg = seq(oid(OID_ECDSA_SHA256));
  const serial = randomBytes(8);
  serial[0] &= 0x7f;
  const tbs = seq(
    tlv(0xa0, positiveInteger(Buffer.of(2))), // version v3
    positiveInteger(serial),
    sigAlg,
    name,
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + days * 86400_000))),
    name,
    spki,
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey);
  const cert = seq(tbs, sigAlg, tlv(0x03, Buffer.of(0), signature));
  return { certificates: [cert], privateKey };
}

/** Loads a PEM certificate chain and an ECDSA P-256 private key from files. */
export function loadIdentity(certPath: string, keyPath: string): ServerIdentity {
  const pem = readFileSync(certPath, 'utf8');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const certificates = blocks.map((b) => new X509Certificate(b).raw);
  const privateKey = createPrivateKey(readFileSync(keyPath));
  return { certificates, privateKey };
}
