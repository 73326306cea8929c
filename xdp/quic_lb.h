/* Shared between the XDP program (quic_lb.bpf.c) and its control side (test-run.c, later the TS
 * control plane): map layouts and decision reasons. Every struct is fixed-size with explicit
 * padding so user space and BPF agree on the bytes. */
#ifndef QUIC_LB_XDP_H
#define QUIC_LB_XDP_H

/* draft-21 §3: 3 config rotation bits; codepoint 7 (0b111) is always unroutable. */
#define QLB_CODEPOINTS 8
#define QLB_UNROUTABLE_CODEPOINT 7
/* draft-21 §5.3: serverIdLength + nonceLength <= 19, nonce >= 4, so a server ID is <= 15 octets. */
#define QLB_MAX_SERVER_ID 15
#define QLB_MAX_VIPS 64
#define QLB_MAX_SERVERS 65536

/* Why the program decided what it decided. The names (QLB_REASON_NAMES) are those of
 * src/lb/reasons.ts without their fallback_/dropped_ prefix where a reason mirrors decide(); the
 * others are the packet shapes this program leaves to the Node forwarder. Everything but
 * QLB_ROUTED is a pass-up (XDP_PASS): the Node forwarder on the same VIP decides it. */
enum qlb_reason {
	QLB_ROUTED = 0,
	QLB_INITIAL,             /* v1/v2 Initial or 0-RTT with an unroutable DCID (RFC 9000 §7.2) */
	QLB_UNROUTABLE_0B111,    /* codepoint 0b111 (draft-21 §3.2) */
	QLB_UNKNOWN_CONFIG,      /* codepoint names no config (draft-21 §4.1 item 1) */
	QLB_UNKNOWN_SERVER_ID,   /* server ID maps to no backend (§4.1 item 3) */
	QLB_TOO_SHORT,           /* DCID shorter than the config's CID (§4.1 item 2) */
	QLB_BACKEND_DOWN,        /* server ID of a backend marked not routable */
	QLB_UNKNOWN_VERSION,     /* long header of another version, unroutable DCID (draft-21 §8) */
	QLB_VERSION_NEGOTIATION, /* version 0 long header, unroutable DCID */
	QLB_MALFORMED,           /* RFC 8999 header does not parse, or the UDP length is wrong */
	QLB_ENCRYPTED_CONFIG,    /* retired: encrypted CIDs are decoded (aes.h); never produced */
	QLB_NOT_VIP,             /* not IPv4/IPv6 UDP to a VIP address and port */
	QLB_FRAGMENT,            /* IPv4 fragment or IPv6 fragment header */
	QLB_IP_OPTIONS,          /* IPv4 options or IPv6 extension headers */
	QLB_REASON_COUNT
};

#define QLB_REASON_NAME_LIST                                                                       \
	"routed", "initial", "unroutable_0b111", "unknown_config", "unknown_server_id", "too_short", \
		"backend_down", "unknown_version", "version_negotiation", "malformed",               \
		"encrypted_config", "not_vip", "fragment", "ip_options"

/* Map "vips": key -> 1. family 4 uses addr[0..4), the rest zero; port in network order. */
struct qlb_vip_key {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* AES-128 (FIPS-197 §5): 10 rounds, 44 round-key words. */
#define QLB_AES_ROUNDS 10
#define QLB_AES_RK_WORDS 44

/* Map "configs": array indexed by codepoint 0..7.
 * ek, dk: AES-128 round keys of an encrypted config, the words src/cid/aes.ts returns
 * (expandEncryptKey(key): FIPS-197 §5.2 KeyExpansion; expandDecryptKey(ek): the equivalent
 * inverse cipher's schedule, §5.3.5), each word in host byte order, row-0 octet most significant:
 * the bytes of those Int32Arrays as they are. ek serves four-pass (encryption only, draft-21
 * §5.4.2), dk single-pass (§5.4.1). All zero for a plaintext config. */
struct qlb_config {
	__u8 present;
	__u8 server_id_len;
	__u8 nonce_len;
	__u8 encrypted;
	__u32 ek[QLB_AES_RK_WORDS];
	__u32 dk[QLB_AES_RK_WORDS];
};

/* Map "servers": (codepoint, server ID zero-padded to 16) -> backend. */
struct qlb_server_key {
	__u8 config_id;
	__u8 server_id[QLB_MAX_SERVER_ID];
};

struct qlb_server {
	__u32 backend;
	__u8 routable; /* 0: backend `down` (src/lb/router.ts BACKEND_STATES) */
	__u8 pad[3];
};

/* Map "last": per-CPU, the decision of the last datagram this CPU saw (tests read it). */
struct qlb_decision {
	__s32 backend; /* -1 unless QLB_ROUTED */
	__u32 reason;
};

#endif
