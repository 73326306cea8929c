// A self-signed X.509 v3 certificate (ECDSA P-256, SHA-256) built with a small DER encoder,
// so the demo server runs without openssl. RFC 5280 §4.1 structure, X.690 DER rules. Also the
// two hashes a browser pins it by, PEM files and a state dir that keeps one key across restarts
// (docs/clients.md).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

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

/**
 * The DER INTEGER of the unsigned big-endian `bytes`: minimal, as X.690 §8.3.2 requires (no
 * leading zero octet unless the next one has its high bit set, which would make it negative).
 * OpenSSL refuses a certificate with a non-minimal serial number.
 */
export function derPositiveInteger(bytes: Uint8Array): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const b = Buffer.from(bytes.subarray(start));
  if (b.length === 0) return tlv(0x02, Buffer.of(0));
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
 * Longest validity (notAfter - notBefore) WebTransport's `serverCertificateHashes` accepts
 * (W3C WebTransport §4.4 "verify a certificate hash": at most 2 weeks), and the default of
 * {@link generateSelfSigned}.
 */
export const MAX_PINNED_VALIDITY_DAYS = 14;

/**
 * Generates a self-signed certificate for `commonName`, valid from one hour ago for `days` days
 * in all (notAfter - notBefore = `days`), with subjectAltName dNSName=commonName and the given
 * IPv4 addresses, for `privateKey` (an ECDSA P-256 key; default: a fresh one).
 */
export function generateSelfSigned(
  commonName = 'localhost',
  ipAddresses: string[] = ['127.0.0.1'],
  days = MAX_PINNED_VALIDITY_DAYS,
  privateKey: KeyObject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
): ServerIdentity {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const name = seq(set(seq(oid(OID_COMMON_NAME), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const notBefore = Date.now() - 3600_000;
  const altNames = [tlv(0x82, Buffer.from(commonName, 'ascii'))];
  for (const ip of ipAddresses) altNames.push(tlv(0x87, Buffer.from(ip.split('.').map(Number))));
  const extensions = tlv(0xa3, seq(seq(oid(OID_SUBJECT_ALT_NAME), tlv(0x04, seq(...altNames)))));
  const sigAlg = seq(oid(OID_ECDSA_SHA256));
  // RFC 5280 §4.1.2.2: a positive serial number, never zero (62 random bits).
  const serial = randomBytes(8);
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const tbs = seq(
    tlv(0xa0, derPositiveInteger(Buffer.of(2))), // version v3
    derPositiveInteger(serial),
    sigAlg,
    name,
    seq(utcTime(new Date(notBefore)), utcTime(new Date(notBefore + days * 86400_000))),
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

/**
 * The SPKI pin of an identity: base64 of the SHA-256 of the leaf certificate's DER
 * SubjectPublicKeyInfo (RFC 7469 §2.4), what Chromium's `--ignore-certificate-errors-spki-list`
 * takes. It depends on the key only, so it survives a new certificate for the same key.
 */
export function spkiPin(identity: ServerIdentity): string {
  return spkiPinOfKey(new X509Certificate(identity.certificates[0]).publicKey);
}

/** {@link spkiPin} of a public key, or of a private key's public half. */
function spkiPinOfKey(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(publicKey.export({ format: 'der', type: 'spki' }))
    .digest('base64');
}

/**
 * The certificate hash of an identity: SHA-256 of the leaf certificate's DER, hex, what
 * WebTransport's `serverCertificateHashes` takes (`{ algorithm: 'sha-256', value }`). It changes
 * with every certificate.
 */
export function certificateHash(identity: ServerIdentity): string {
  return certificateSha256(identity.certificates[0]);
}

/** Hex SHA-256 of one DER certificate: what `serverCertificateHashes` pins (W3C WebTransport §4.3). */
export function certificateSha256(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The certificate chain as PEM (RFC 7468 §5). */
export function certificatesPem(identity: ServerIdentity): string {
  return identity.certificates
    .map((der) => {
      const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
      return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
    })
    .join('');
}

/** The private key as PKCS #8 PEM. */
export function privateKeyPem(identity: ServerIdentity): string {
  return identity.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** The files of a state dir ({@link persistentIdentity}). */
export function stateDirFiles(dir: string): { cert: string; key: string } {
  return { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
}

/** True when the leaf certificate is not valid for at least `marginMs` more. */
function expiresWithin(identity: ServerIdentity, marginMs: number, now: number): boolean {
  return Date.parse(new X509Certificate(identity.certificates[0]).validTo) - now < marginMs;
}

/**
 * The identity kept in `dir` (key.pem, cert.pem), so a browser's pins survive restarts: the key
 * is made once (mode 0600) and kept; the certificate is made for it when missing or when it
 * expires within a day (it is valid for at most {@link MAX_PINNED_VALIDITY_DAYS}), so the SPKI
 * pin stays the same and only the certificate hash changes. Throws on unreadable files or a key
 * that is not ECDSA P-256.
 */
export function persistentIdentity(dir: string, now = Date.now()): ServerIdentity {
  const files = stateDirFiles(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let privateKey: KeyObject;
  if (existsSync(files.key)) {
    privateKey = createPrivateKey(readFileSync(files.key));
    if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new Error(`${files.key}: expected an ECDSA P-256 private key`);
  } else {
    privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    writeFileSync(files.key, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  }
  if (existsSync(files.cert)) {
    const kept = loadIdentity(files.cert, files.key);
    if (spkiPin(kept) === spkiPinOfKey(privateKey) && !expiresWithin(kept, 86400_000, now)) return kept;
  }
  const fresh = generateSelfSigned('localhost', ['127.0.0.1'], MAX_PINNED_VALIDITY_DAYS, privateKey);
  writeFileSync(files.cert, certificatesPem(fresh));
  return fresh;
}
