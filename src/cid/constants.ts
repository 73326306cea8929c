// Named constants of the QUIC-LB scheme. Every offset, mask and limit the codecs use lives here.
// References: draft-ietf-quic-load-balancers-21 (cited as "draft-21 §x"), RFC 9000.

/** Bits 7..5 of a CID's first octet are the config rotation (CR) codepoint (draft-21 §3). */
export const CONFIG_ROTATION_SHIFT = 5;
/** Low 5 bits of the first octet: self-encoded length or random bits (draft-21 §3.3). */
export const LENGTH_BITS_MASK = 0x1f;
/** Codepoint 0b111 is reserved: it marks a CID unroutable and no config may use it (draft-21 §3.2). */
export const UNROUTABLE_CONFIG_ID = 0b111;
/** Lowest codepoint a config may use (draft-21 §3.1). */
export const MIN_CONFIG_ID = 0;
/** Highest codepoint a config may use (draft-21 §3.1: up to 7 configs, 0..6). */
export const MAX_CONFIG_ID = 6;
/** Number of CR codepoints, 0..7, including the reserved 0b111 (table size for codepoint lookups, draft-21 §3). */
export const CONFIG_ROTATION_CODEPOINTS = 8;

/** Server ID is at least one octet (draft-21 §5.3). */
export const MIN_SERVER_ID_LENGTH = 1;
/** Nonce is at least four octets (draft-21 §5.3). */
export const MIN_NONCE_LENGTH = 4;
/** serverIdLength + nonceLength <= 19, so the CID fits QUIC v1's 20 octets (draft-21 §5.3). */
export const MAX_PLAINTEXT_LENGTH = 19;
/** The longest server ID a config can have: the plaintext less the shortest nonce (draft-21 §5.3). */
export const MAX_SERVER_ID_LENGTH = MAX_PLAINTEXT_LENGTH - MIN_NONCE_LENGTH;
/** The longest nonce a config can have: the plaintext less the shortest server ID (draft-21 §5.3). */
export const MAX_NONCE_LENGTH = MAX_PLAINTEXT_LENGTH - MIN_SERVER_ID_LENGTH;
/** QUIC v1/v2 connection IDs are at most 20 octets (RFC 9000 §17.2). */
export const MAX_CID_LENGTH = 20;
/** The self-encoded length field is 5 bits: CIDs of at most 32 octets (draft-21 §3.3). */
export const MAX_SELF_ENCODED_CID_LENGTH = 32;
/** Octets before the plaintext/ciphertext block: the first octet (draft-21 §5.2). */
export const FIRST_OCTET_LENGTH = 1;
/** 0b111 CIDs SHOULD be at least 8 octets (draft-21 §3.2). */
export const MIN_UNROUTABLE_CID_LENGTH = 8;

/** AES-128 key and block size in octets (draft-21 §5.4.2: AES-128-ECB). */
export const AES_KEY_LENGTH = 16;
export const AES_BLOCK_LENGTH = 16;
/** Single-pass is used exactly when the plaintext fills one AES block (draft-21 §5.4.1). */
export const SINGLE_PASS_PLAINTEXT_LENGTH = AES_BLOCK_LENGTH;

/** Four-pass: odd plaintexts share the middle octet; L keeps its high nibble, R its low one (draft-21 §5.4.2.2). */
export const LEFT_SHARED_OCTET_MASK = 0xf0;
export const RIGHT_SHARED_OCTET_MASK = 0x0f;
/** Four-pass: expand() puts n in octet 15 and the pass number in octet 16 of the block (draft-21 §5.4.2.2). */
export const EXPAND_LENGTH_SHIFT = 8;
/** Four-pass pass numbers (draft-21 §5.4.2.3). */
export const PASS_1 = 1;
export const PASS_2 = 2;
export const PASS_3 = 3;
export const PASS_4 = 4;

/** Stateless reset tokens are 16 octets (RFC 9000 §10.3). */
export const STATELESS_RESET_TOKEN_LENGTH = 16;

/**
 * Results of `QuicLbDecoder.decode` for a CID it cannot route (draft-21 §4.1); every one is
 * negative, a config ID never is. UNROUTABLE: the codepoint is 0b111 (§3.2).
 */
export const UNROUTABLE = -1;
/** decode(): the CID's codepoint has no config on this decoder (§4.1: unknown config). */
export const UNKNOWN_CONFIG = -2;
/** decode(): fewer octets than the config's CID (1 + serverIdLength + nonceLength), or none at all. */
export const TOO_SHORT = -3;

/** Octets per 32-bit word and the shifts that place an octet in a big-endian word. */
export const WORD_OCTETS = 4;
export const BITS_PER_OCTET = 8;
/** Distinct values of one octet. */
export const OCTET_VALUES = 256;
export const BYTE_MASK = 0xff;
export const SHIFT_OCTET_0 = 24;
export const SHIFT_OCTET_1 = 16;
export const SHIFT_OCTET_2 = 8;
