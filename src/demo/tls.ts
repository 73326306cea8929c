// The server half of a TLS 1.3 handshake as QUIC uses it (RFC 8446, RFC 9001 §4):
// TLS_AES_128_GCM_SHA256, x25519, ECDSA P-256 / SHA-256 certificate, ALPN, and the
// quic_transport_parameters extension. No records: QUIC carries the handshake messages in
// CRYPTO frames. No HelloRetryRequest, no resumption, no 0-RTT, no client certificates.
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, sign, timingSafeEqual } from 'node:crypto';
import { HASH_LEN, hkdfExpandLabel, hkdfExtract, hmacSha256, sha256 } from './crypto.js';
import type { ServerIdentity } from './cert.js';

// RFC 8446 §4 handshake message types.
const HS_CLIENT_HELLO = 1;
const HS_SERVER_HELLO = 2;
const HS_ENCRYPTED_EXTENSIONS = 8;
const HS_CERTIFICATE = 11;
const HS_CERTIFICATE_VERIFY = 15;
const HS_FINISHED = 20;
// RFC 8446 §4.2 extension types, RFC 9001 §8.2 quic_transport_parameters.
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const EXT_SUPPORTED_VERSIONS = 0x002b;
const EXT_KEY_SHARE = 0x0033;
const EXT_QUIC_TRANSPORT_PARAMETERS = 0x0039;
const TLS13 = 0x0304;
const CIPHER_TLS_AES_128_GCM_SHA256 = 0x1301;
const GROUP_X25519 = 0x001d;
const SIG_ECDSA_SECP256R1_SHA256 = 0x0403;
/** RFC 8410: DER SubjectPublicKeyInfo prefix of a raw 32-octet X25519 public key. */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** RFC 8446 §6 alert descriptions the server sends (QUIC: CRYPTO_ERROR 0x100 + alert). */
export const TlsAlert = {
  UNEXPECTED_MESSAGE: 10,
  HANDSHAKE_FAILURE: 40,
  ILLEGAL_PARAMETER: 47,
  DECODE_ERROR: 50,
  DECRYPT_ERROR: 51,
  PROTOCOL_VERSION: 70,
  MISSING_EXTENSION: 109,
  NO_APPLICATION_PROTOCOL: 120,
} as const;

export interface ClientHelloInfo {
  serverName?: string;
  alpn: string[];
  transportParameters: Buffer;
}

export interface Secrets {
  client: Buffer;
  server: Buffer;
}

export type TlsResult<T> = { ok: true; value: T } | { ok: false; alert: number; reason: string };

const fail = (alert: number, reason: string): { ok: false; alert: number; reason: string } => ({
  ok: false,
  alert,
  reason,
});

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}

function u24(v: number): Buffer {
  return Buffer.of((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
}

function handshakeMessage(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.of(type), u24(body.length), body]);
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/**
 * Splits complete handshake messages off the front of `buf`. Returns the messages and the
 * number of octets consumed (a partial message at the end stays for later).
 */
export function splitHandshakeMessages(buf: Buffer): { messages: Buffer[]; consumed: number } {
  const messages: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 4) {
    const len = buf.readUIntBE(off + 1, 3);
    if (buf.length - off < 4 + len) break;
    messages.push(buf.subarray(off, off + 4 + len));
    off += 4 + len;
  }
  return { messages, consumed: off };
}

interface ParsedClientHello extends ClientHelloInfo {
  sessionId: Buffer;
  x25519Share?: Buffer;
  cipherOk: boolean;
  tls13: boolean;
}

/** Parses a ClientHello; undefined when malformed (never throws). */
function parseClientHello(msg: Buffer): ParsedClientHello | undefined {
  try {
    return parseClientHelloUnchecked(msg);
  } catch {
    return undefined; // a Buffer read past the end: truncated or inconsistent lengths
  }
}

function parseClientHelloUnchecked(msg: Buffer): ParsedClientHello | undefined {
  // msg = type(1) len(3) body
  let o = 4;
  const need = (n: number): boolean => o + n <= msg.length;
  if (!need(2 + 32 + 1)) return undefined;
  o += 2 + 32; // legacy_version, random
  const sidLen = msg[o++];
  if (!need(sidLen + 2)) return undefined;
  const sessionId = msg.subarray(o, o + sidLen);
  o += sidLen;
  const csLen = msg.readUInt16BE(o);
  o += 2;
  if (!need(csLen + 1)) return undefined;
  let cipherOk = false;
  for (let i = 0; i + 1 < csLen; i += 2) if (msg.readUInt16BE(o + i) === CIPHER_TLS_AES_128_GCM_SHA256) cipherOk = true;
  o += csLen;
  const compLen = msg[o++];
  o += compLen;
  if (!need(2)) return undefined;
  const extEnd = o + 2 + msg.readUInt16BE(o);
  o += 2;
  if (extEnd > msg.length) return undefined;
  const out: ParsedClientHello = { sessionId, cipherOk, tls13: false, alpn: [], transportParameters: Buffer.alloc(0) };
  let sawTp = false;
  while (o + 4 <= extEnd) {
    const type = msg.readUInt16BE(o);
    const len = msg.readUInt16BE(o + 2);
    o += 4;
    if (o + len > extEnd) return undefined;
    const body = msg.subarray(o, o + len);
    o += len;
    if (type === EXT_SUPPORTED_VERSIONS) {
      for (let i = 1; i + 1 < body.length && i <= body[0]; i += 2) if (body.readUInt16BE(i) === TLS13) out.tls13 = true;
    } else if (type === EXT_KEY_SHARE) {
      let k = 2;
      while (k + 4 <= body.length) {
        const group = body.readUInt16BE(k);
        const klen = body.readUInt16BE(k + 2);
        if (group === GROUP_X25519 && klen === 32 && k + 4 + klen <= body.length)
          out.x25519Share = body.subarray(k + 4, k + 4 + klen);
        k += 4 + klen;
      }
    } else if (type === EXT_ALPN) {
      let k = 2;
      while (k < body.length) {
        const l = body[k];
        out.alpn.push(body.subarray(k + 1, k + 1 + l).toString('latin1'));
        k += 1 + l;
      }
    } else if (type === EXT_SERVER_NAME) {
      // server_name_list(2) name_type(1)=0 host_name<1..2^16-1>
      if (body.length >= 5 && body[2] === 0)
        out.serverName = body.subarray(5, 5 + body.readUInt16BE(3)).toString('latin1');
    } else if (type === EXT_QUIC_TRANSPORT_PARAMETERS) {
      out.transportParameters = Buffer.from(body);
      sawTp = true;
    }
  }
  if (!sawTp) out.transportParameters = Buffer.alloc(0);
  return out;
}

export interface ServerFlight {
  /** ServerHello, sent in Initial packets */
  initial: Buffer;
  /** EncryptedExtensions .. Finished, sent in Handshake packets */
  handshake: Buffer;
  handshakeSecrets: Secrets;
  applicationSecrets: Secrets;
  clientHello: ClientHelloInfo;
}

/** One server-side TLS 1.3 handshake. */
export class TlsServerHandshake {
  private transcript: Buffer[] = [];
  private clientHandshakeSecret?: Buffer;
  private done = false;

  constructor(
    private readonly identity: ServerIdentity,
    private readonly alpnProtocols: readonly string[],
  ) {}

  get complete(): boolean {
    return this.done;
  }

  /**
   * Processes the ClientHello and produces the whole server flight. `transportParameters` is
   * called with the client's parameters and returns the server's encoded parameters (or an
   * alert number to refuse them).
   */
  onClientHello(
    msg: Buffer,
    transportParameters: (client: ClientHelloInfo) => Buffer | number,
  ): TlsResult<ServerFlight> {
    if (msg[0] !== HS_CLIENT_HELLO) return fail(TlsAlert.UNEXPECTED_MESSAGE, 'expected ClientHello');
    const ch = parseClientHello(msg);
    if (!ch) return fail(TlsAlert.DECODE_ERROR, 'malformed ClientHello');
    if (!ch.tls13) return fail(TlsAlert.PROTOCOL_VERSION, 'client does not offer TLS 1.3');
    if (!ch.cipherOk) return fail(TlsAlert.HANDSHAKE_FAILURE, 'client does not offer TLS_AES_128_GCM_SHA256');
    if (!ch.x25519Share)
      return fail(TlsAlert.HANDSHAKE_FAILURE, 'no x25519 key share (HelloRetryRequest not implemented)');
    if (ch.transportParameters.length === 0) return fail(TlsAlert.MISSING_EXTENSION, 'no quic_transport_parameters');
    const alpn = this.alpnProtocols.find((p) => ch.alpn.includes(p));
    if (!alpn) return fail(TlsAlert.NO_APPLICATION_PROTOCOL, `client ALPN ${ch.alpn.join(',')} not supported`);
    const tp = transportParameters(ch);
    if (typeof tp === 'number') return fail(tp, 'client transport parameters refused');

    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    const serverShare = publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length);
    let shared: Buffer;
    try {
      const peer = createPublicKey({
        key: Buffer.concat([X25519_SPKI_PREFIX, ch.x25519Share]),
        format: 'der',
        type: 'spki',
      });
      shared = diffieHellman({ privateKey, publicKey: peer });
    } catch {
      return fail(TlsAlert.ILLEGAL_PARAMETER, 'unusable x25519 key share'); // e.g. a small-order point
    }

    const serverHello = handshakeMessage(
      HS_SERVER_HELLO,
      Buffer.concat([
        u16(0x0303),
        randomBytes(32),
        Buffer.of(ch.sessionId.length),
        ch.sessionId,
        u16(CIPHER_TLS_AES_128_GCM_SHA256),
        Buffer.of(0),
        ((): Buffer => {
          const exts = Buffer.concat([
            extension(EXT_SUPPORTED_VERSIONS, u16(TLS13)),
            extension(EXT_KEY_SHARE, Buffer.concat([u16(GROUP_X25519), u16(32), serverShare])),
          ]);
          return Buffer.concat([u16(exts.length), exts]);
        })(),
      ]),
    );
    this.transcript.push(msg, serverHello);

    // RFC 8446 §7.1 key schedule.
    const zeros = Buffer.alloc(HASH_LEN);
    const emptyHash = sha256();
    const early = hkdfExtract(zeros, zeros);
    const handshakeSecret = hkdfExtract(hkdfExpandLabel(early, 'derived', emptyHash, HASH_LEN), shared);
    const thHello = sha256(...this.transcript);
    const cHs = hkdfExpandLabel(handshakeSecret, 'c hs traffic', thHello, HASH_LEN);
    const sHs = hkdfExpandLabel(handshakeSecret, 's hs traffic', thHello, HASH_LEN);
    const master = hkdfExtract(hkdfExpandLabel(handshakeSecret, 'derived', emptyHash, HASH_LEN), zeros);

    const alpnBody = Buffer.concat([Buffer.of(alpn.length), Buffer.from(alpn, 'latin1')]);
    const eeExts = Buffer.concat([
      extension(EXT_ALPN, Buffer.concat([u16(alpnBody.length), alpnBody])),
      extension(EXT_QUIC_TRANSPORT_PARAMETERS, tp),
    ]);
    const encryptedExtensions = handshakeMessage(HS_ENCRYPTED_EXTENSIONS, Buffer.concat([u16(eeExts.length), eeExts]));
    const certList = Buffer.concat(this.identity.certificates.map((c) => Buffer.concat([u24(c.length), c, u16(0)])));
    const certificate = handshakeMessage(HS_CERTIFICATE, Buffer.concat([Buffer.of(0), u24(certList.length), certList]));
    this.transcript.push(encryptedExtensions, certificate);

    // RFC 8446 §4.4.3: 64 spaces, context string, 0, transcript hash.
    const toSign = Buffer.concat([
      Buffer.alloc(64, 0x20),
      Buffer.from('TLS 1.3, server CertificateVerify', 'ascii'),
      Buffer.of(0),
      sha256(...this.transcript),
    ]);
    const signature = sign('sha256', toSign, this.identity.privateKey);
    const certificateVerify = handshakeMessage(
      HS_CERTIFICATE_VERIFY,
      Buffer.concat([u16(SIG_ECDSA_SECP256R1_SHA256), u16(signature.length), signature]),
    );
    this.transcript.push(certificateVerify);
    const serverFinishedKey = hkdfExpandLabel(sHs, 'finished', Buffer.alloc(0), HASH_LEN);
    const finished = handshakeMessage(HS_FINISHED, hmacSha256(serverFinishedKey, sha256(...this.transcript)));
    this.transcript.push(finished);

    const thServerFinished = sha256(...this.transcript);
    const cAp = hkdfExpandLabel(master, 'c ap traffic', thServerFinished, HASH_LEN);
    const sAp = hkdfExpandLabel(master, 's ap traffic', thServerFinished, HASH_LEN);
    this.clientHandshakeSecret = cHs;

    return {
      ok: true,
      value: {
        initial: serverHello,
        handshake: Buffer.concat([encryptedExtensions, certificate, certificateVerify, finished]),
        handshakeSecrets: { client: cHs, server: sHs },
        applicationSecrets: { client: cAp, server: sAp },
        clientHello: { serverName: ch.serverName, alpn: ch.alpn, transportParameters: ch.transportParameters },
      },
    };
  }

  /** Verifies the client's Finished message (RFC 8446 §4.4.4). */
  onClientFinished(msg: Buffer): TlsResult<true> {
    if (!this.clientHandshakeSecret || msg[0] !== HS_FINISHED)
      return fail(TlsAlert.UNEXPECTED_MESSAGE, 'expected Finished');
    const key = hkdfExpandLabel(this.clientHandshakeSecret, 'finished', Buffer.alloc(0), HASH_LEN);
    const expected = hmacSha256(key, sha256(...this.transcript));
    const got = msg.subarray(4);
    if (got.length !== expected.length || !timingSafeEqual(got, expected))
      return fail(TlsAlert.DECRYPT_ERROR, 'client Finished does not verify');
    this.transcript.push(msg);
    this.done = true;
    return { ok: true, value: true };
  }
}
