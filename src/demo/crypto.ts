// QUIC v1 packet protection (RFC 9001 §5) and the TLS 1.3 HKDF helpers (RFC 8446 §7.1),
// node:crypto only. Cipher suite: TLS_AES_128_GCM_SHA256 (the one every QUIC client offers).
import { createCipheriv, createDecipheriv, createHash, createHmac, type Cipher } from 'node:crypto';

/** RFC 9001 §5.2: the QUIC v1 Initial salt. */
export const INITIAL_SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
export const HASH_LEN = 32;
export const AEAD_KEY_LEN = 16;
export const AEAD_IV_LEN = 12;
export const AEAD_TAG_LEN = 16;
/** RFC 9001 §5.4.2: header protection samples 16 octets. */
export const HP_SAMPLE_LEN = 16;

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** RFC 5869 HKDF-Extract with SHA-256. */
export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return hmacSha256(salt, ikm);
}

/** RFC 5869 HKDF-Expand with SHA-256. */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  let prev: Buffer = Buffer.alloc(0);
  let filled = 0;
  for (let i = 1; filled < length; i++) {
    prev = hmacSha256(prk, prev, info, Uint8Array.of(i));
    prev.copy(out, filled, 0, Math.min(prev.length, length - filled));
    filled += prev.length;
  }
  return out;
}

/** RFC 8446 §7.1 HKDF-Expand-Label (the "tls13 " prefix is added here). */
export function hkdfExpandLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.alloc(2 + 1 + fullLabel.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = fullLabel.length;
  fullLabel.copy(info, 3);
  info[3 + fullLabel.length] = context.length;
  Buffer.from(context).copy(info, 4 + fullLabel.length);
  return hkdfExpand(secret, info, length);
}

/** Keys of one direction at one encryption level (RFC 9001 §5.1). */
export class PacketKeys {
  readonly key: Buffer;
  readonly iv: Buffer;
  private readonly hp: Cipher;
  private readonly nonce = Buffer.alloc(AEAD_IV_LEN);

  /** `hpFrom`: keep the header-protection key of these keys (key update, RFC 9001 §6). */
  constructor(
    readonly secret: Buffer,
    hpFrom?: PacketKeys,
  ) {
    this.key = hkdfExpandLabel(secret, 'quic key', Buffer.alloc(0), AEAD_KEY_LEN);
    this.iv = hkdfExpandLabel(secret, 'quic iv', Buffer.alloc(0), AEAD_IV_LEN);
    if (hpFrom) {
      this.hp = hpFrom.hp;
    } else {
      const hpKey = hkdfExpandLabel(secret, 'quic hp', Buffer.alloc(0), AEAD_KEY_LEN);
      // AES-128-ECB of one block per packet; one cipher object reused (ECB keeps no chaining state).
      this.hp = createCipheriv('aes-128-ecb', hpKey, null);
      this.hp.setAutoPadding(false);
    }
  }

  /** RFC 9001 §6.1: the next generation of 1-RTT keys ("quic ku"); header protection unchanged. */
  next(): PacketKeys {
    return new PacketKeys(hkdfExpandLabel(this.secret, 'quic ku', Buffer.alloc(0), HASH_LEN), this);
  }

  /** RFC 9001 §5.4.1: the 5-octet header-protection mask for a 16-octet sample. */
  mask(sample: Uint8Array): Buffer {
    return this.hp.update(sample);
  }

  private nonceFor(pn: number): Buffer {
    this.iv.copy(this.nonce);
    // RFC 9001 §5.3: the packet number, left-padded to the IV length, XORed with the IV.
    let v = pn;
    for (let i = AEAD_IV_LEN - 1; i >= AEAD_IV_LEN - 6 && v > 0; i--) {
      this.nonce[i] ^= v & 0xff;
      v = Math.floor(v / 256);
    }
    return this.nonce;
  }

  seal(pn: number, header: Uint8Array, plaintext: Uint8Array): Buffer {
    const c = createCipheriv('aes-128-gcm', this.key, this.nonceFor(pn));
    c.setAAD(header);
    const body = c.update(plaintext);
    c.final();
    return Buffer.concat([body, c.getAuthTag()]);
  }

  /** Returns undefined when authentication fails (a bad packet is dropped, never thrown). */
  open(pn: number, header: Uint8Array, ciphertext: Uint8Array): Buffer | undefined {
    if (ciphertext.length < AEAD_TAG_LEN) return undefined;
    const d = createDecipheriv('aes-128-gcm', this.key, this.nonceFor(pn));
    d.setAAD(header);
    d.setAuthTag(ciphertext.subarray(ciphertext.length - AEAD_TAG_LEN));
    const body = d.update(ciphertext.subarray(0, ciphertext.length - AEAD_TAG_LEN));
    try {
      d.final();
    } catch {
      return undefined;
    }
    return body;
  }
}

/** Both directions at one level, from the server's point of view. */
export interface KeyPair {
  /** keys to open packets from the client */
  rx: PacketKeys;
  /** keys to seal packets to the client */
  tx: PacketKeys;
}

/** RFC 9001 §5.2: Initial keys derived from the client's first Destination Connection ID. */
export function initialKeys(clientDcid: Uint8Array): KeyPair {
  const initialSecret = hkdfExtract(INITIAL_SALT_V1, clientDcid);
  return {
    rx: new PacketKeys(hkdfExpandLabel(initialSecret, 'client in', Buffer.alloc(0), HASH_LEN)),
    tx: new PacketKeys(hkdfExpandLabel(initialSecret, 'server in', Buffer.alloc(0), HASH_LEN)),
  };
}
