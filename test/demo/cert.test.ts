// The demo identity a browser pins (src/demo/cert.ts, docs/clients.md): the SPKI pin and the
// certificate hash against a vector computed with openssl, the validity window WebTransport
// accepts, PEM round trips and the state dir that keeps one key across restarts.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  certificateHash,
  certificatesPem,
  generateSelfSigned,
  loadIdentity,
  MAX_PINNED_VALIDITY_DAYS,
  persistentIdentity,
  privateKeyPem,
  spkiPin,
  stateDirFiles,
} from '../../src/demo/index.js';
import { derPositiveInteger } from '../../src/demo/cert.js';

// A throwaway ECDSA P-256 certificate made with `openssl req -x509 -days 14`; the expected
// values from `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst
// -sha256 -binary | base64` and `openssl x509 -outform der | openssl dgst -sha256`.
const VECTOR_CERT = `-----BEGIN CERTIFICATE-----
MIIBeDCCAR2gAwIBAgIUSMGuKpt/f5wkyv96a9LMlC+ZvaMwCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGdmVjdG9yMB4XDTI2MTIwMjEzNDU1MloXDTI2MTIxNjEzNDU1
MlowETEPMA0GA1UEAwwGdmVjdG9yMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
jetmPysHux1YiURg/dB8eiTJws1HT/dd/aeAdNhS8BnGzp9pgv3727MXdUpbkhCu
HrTLngbGaWFiz5eHZnRWeKNTMFEwHQYDVR0OBBYEFEojzMmHHnBa7IzsnUgRefRf
uHoOMB8GA1UdIwQYMBaAFEojzMmHHnBa7IzsnUgRefRfuHoOMA8GA1UdEwEB/wQF
MAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAKEev+EA1YnbMPI4HhrqHujv3cj+8z24
52hXPeWPUTSDAiEA2MRCNrnl34w24Nctw0tafNVJ9wKGVkOWultsl5Qud3I=
-----END CERTIFICATE-----
`;
const VECTOR_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqJhcwe1DAgjlS7dJ
c3zwxdU3zLnAW2/otKzuKB6mMwShRANCAASN62Y/Kwe7HViJRGD90Hx6JMnCzUdP
9139p4B02FLwGcbOn2mC/fvbsxd1SluSEK4etMueBsZpYWLPl4dmdFZ4
-----END PRIVATE KEY-----
`;
const VECTOR_PIN = 'dtdXmHkCOl2KIgDsGE6NEi01Uqx7tnWbmgojJ0ToTck=';
const VECTOR_HASH = '9c80f18a369de67682c93962e92de4183b40a4e209627d8bb3c335f5cd4784d2';

const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-cert-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DAY = 86400_000;

describe('pins of an identity', () => {
  it('match openssl: SPKI pin (base64 SHA-256 of the SPKI DER) and certificate hash (hex SHA-256 of the DER)', () => {
    writeFileSync(path.join(dir, 'v-cert.pem'), VECTOR_CERT);
    writeFileSync(path.join(dir, 'v-key.pem'), VECTOR_KEY);
    const id = loadIdentity(path.join(dir, 'v-cert.pem'), path.join(dir, 'v-key.pem'));
    expect(spkiPin(id)).toBe(VECTOR_PIN);
    expect(certificateHash(id)).toBe(VECTOR_HASH);
    // PEM export gives back the same octets.
    expect(certificatesPem(id)).toBe(VECTOR_CERT);
    expect(createPrivateKey(privateKeyPem(id)).export({ format: 'der', type: 'pkcs8' })).toEqual(
      createPrivateKey(VECTOR_KEY).export({ format: 'der', type: 'pkcs8' }),
    );
  });

  it('the SPKI pin follows the key, the certificate hash the certificate', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const a = generateSelfSigned('localhost', ['127.0.0.1'], 14, privateKey);
    const b = generateSelfSigned('localhost', ['127.0.0.1'], 14, privateKey);
    const c = generateSelfSigned();
    expect(spkiPin(a)).toBe(spkiPin(b));
    expect(certificateHash(a)).not.toBe(certificateHash(b)); // random serial
    expect(spkiPin(c)).not.toBe(spkiPin(a));
    expect(new X509Certificate(a.certificates[0]).fingerprint256.replaceAll(':', '').toLowerCase()).toBe(
      certificateHash(a),
    );
  });
});

describe('generateSelfSigned', () => {
  it('is ECDSA P-256, self-signed, valid now, for at most 14 days in all by default (WebTransport)', () => {
    const before = Date.now();
    const x = new X509Certificate(generateSelfSigned().certificates[0]);
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(x.verify(x.publicKey)).toBe(true);
    const from = Date.parse(x.validFrom);
    const to = Date.parse(x.validTo);
    expect(to - from).toBe(MAX_PINNED_VALIDITY_DAYS * DAY);
    expect(MAX_PINNED_VALIDITY_DAYS).toBe(14);
    expect(from).toBeLessThan(before);
    expect(to).toBeGreaterThan(before + 13 * DAY);
  });
});

describe('DER integers (X.690 §8.3.2: minimal)', () => {
  it.each([
    ['00', '020100'],
    ['0000', '020100'],
    ['02', '020102'],
    ['0020', '020120'], // a leading zero before a clear high bit is dropped
    ['000080', '02020080'], // kept only as the sign octet
    ['80', '02020080'],
    ['7f', '02017f'],
    ['00207888aea1e3be', '0207207888aea1e3be'], // a serial that made a certificate OpenSSL refused
  ])('%s -> %s', (input, der) => {
    expect(derPositiveInteger(Buffer.from(input, 'hex')).toString('hex')).toBe(der);
  });

  it('every generated certificate parses (OpenSSL refuses a non-minimal serial)', () => {
    // With a serial whose first octet may be 0, about 1 in 270 certificates did not parse.
    for (let i = 0; i < 1500; i++) {
      const der = generateSelfSigned().certificates[0];
      expect(() => new X509Certificate(der), `certificate ${i}`).not.toThrow();
    }
  });
});

describe('persistentIdentity (a state dir)', () => {
  it('makes the key once (mode 0600) and gives back the same identity while it is valid', () => {
    const state = path.join(dir, 'state-a');
    const first = persistentIdentity(state);
    const files = stateDirFiles(state);
    expect(statSync(files.key).mode & 0o777).toBe(0o600);
    const second = persistentIdentity(state);
    expect(spkiPin(second)).toBe(spkiPin(first));
    expect(certificateHash(second)).toBe(certificateHash(first));
    expect(loadIdentity(files.cert, files.key).certificates[0]).toEqual(first.certificates[0]);
  });

  it('renews a certificate about to expire for the same key: same SPKI pin, new certificate hash', () => {
    const state = path.join(dir, 'state-b');
    const first = persistentIdentity(state);
    const keyBefore = readFileSync(stateDirFiles(state).key, 'utf8');
    const later = persistentIdentity(state, Date.now() + 13.5 * DAY);
    expect(spkiPin(later)).toBe(spkiPin(first));
    expect(certificateHash(later)).not.toBe(certificateHash(first));
    expect(readFileSync(stateDirFiles(state).key, 'utf8')).toBe(keyBefore);
    expect(certificateHash(persistentIdentity(state))).toBe(certificateHash(later));
  });

  it('replaces a certificate of another key, and refuses a key that is not ECDSA P-256', () => {
    const state = path.join(dir, 'state-c');
    const first = persistentIdentity(state);
    writeFileSync(stateDirFiles(state).cert, certificatesPem(generateSelfSigned()));
    expect(spkiPin(persistentIdentity(state))).toBe(spkiPin(first));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    writeFileSync(stateDirFiles(state).key, rsa.export({ format: 'pem', type: 'pkcs8' }));
    expect(() => persistentIdentity(state)).toThrow(/ECDSA P-256/);
  });
});
