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
#define QLB_MAX_BACKENDS 4096
/* QLB_MAX_MAGLEV_TABLE (max_entries of map "maglev") is not defined here: it is
 * MAX_MAGLEV_TABLE_SIZE of src/lb/maglev.ts, the limit of the config's fallback.tableSize, and
 * xdp/build.sh passes it (-D) from there, so the TS source stays its one source. User
 * space reads it back as the map's max_entries. */

/* Why the program decided what it decided. Values 0 .. QLB_NO_BACKEND are decide()'s reasons:
 * same index and same name as src/lb/reasons.ts Reason / REASON_NAMES (test/xdp checks the
 * names), so the control plane adds these counters to the Node ones index by index. A fallback
 * reason (QLB_INITIAL .. QLB_VERSION_NEGOTIATION, see qlb_is_fallback()) carries the Maglev
 * backend (xdp/fallback.h). The values after QLB_NO_BACKEND are the packet shapes this program
 * leaves to the Node forwarder, then why a datagram with a backend could not be sent from XDP
 * (xdp/encap.h): all XDP_PASS, so the Node forwarder on the same VIP decides and sends them (the
 * kernel then resolves neighbours, fragments; Node signs). Map "counters" counts each datagram
 * once, by its outcome. */
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
	QLB_NO_BACKEND,          /* fallback needed, but no `up` backend with a weight > 0 */
	QLB_NOT_VIP,             /* not IPv4/IPv6 UDP to a VIP address and port */
	QLB_FRAGMENT,            /* IPv4 fragment or IPv6 fragment header */
	QLB_IP_OPTIONS,          /* IPv4 options or IPv6 extension headers */
	/* Outcomes of a routed datagram that XDP does not send itself (xdp/encap.h) */
	QLB_SIGN_FORWARD,        /* returnPath.signForward: the HMAC TLV is Node's */
	QLB_NO_BACKEND_ADDRESS,  /* no "backends" entry for the backend index */
	QLB_NO_SOURCE_ADDRESS,   /* no "sources" entry for the backend's family */
	QLB_NO_UDP_CHECKSUM,     /* incoming UDP checksum 0 (or IPv6 0) and an IPv6 backend */
	QLB_FIB_NO_ROUTE,        /* bpf_fib_lookup: blackhole, unreachable, prohibit, local... */
	QLB_FIB_FORWARDING_OFF,  /* bpf_fib_lookup: forwarding disabled on the ingress interface */
	QLB_FIB_NO_NEIGHBOUR,    /* bpf_fib_lookup: next hop not resolved yet */
	QLB_TOO_BIG,             /* encapsulated datagram above the egress MTU (or 65535) */
	QLB_NO_HEADROOM,         /* bpf_xdp_adjust_head/tail refused */
	QLB_RETRY_OFFLOAD,       /* a client Initial while the LB's Retry offload is on: Node's */
	QLB_REASON_COUNT
};

#define QLB_REASON_NAME_LIST                                                                       \
	"routed", "fallback_initial", "fallback_unroutable_0b111", "fallback_unknown_config",      \
		"fallback_unknown_server_id", "fallback_too_short", "fallback_backend_down",       \
		"fallback_unknown_version", "fallback_version_negotiation", "dropped_malformed",   \
		"dropped_no_backend", "not_vip", "fragment", "ip_options", "sign_forward",         \
		"no_backend_address", "no_source_address", "no_udp_checksum", "fib_no_route",      \
		"fib_forwarding_off", "fib_no_neighbour", "too_big", "no_headroom", "retry_offload"

/* Generations (src/lb/xdp-maps.ts): every map that describes the config holds two, 0 and 1, side
 * by side; map "active" (one __u32) names the one the program reads, read once per datagram.
 * The control plane rewrites the inactive generation, then flips "active": a reload or a health
 * change is atomic for every datagram. Arrays hold generation g at [g * size + i]; hash keys
 * carry g. */
#define QLB_GENERATIONS 2

/* Map "vips": key -> 1. family 4 uses addr[0..4), the rest zero; port in network order. */
struct qlb_vip_key {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 gen;
};

/* AES-128 (FIPS-197 §5): 10 rounds, 44 round-key words. */
#define QLB_AES_ROUNDS 10
#define QLB_AES_RK_WORDS 44

/* Map "configs": array indexed by gen * QLB_CODEPOINTS + codepoint 0..7.
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

/* Map "servers": (slot = gen * QLB_CODEPOINTS + codepoint, server ID zero-padded to 15) ->
 * backend. */
struct qlb_server_key {
	__u8 slot;
	__u8 server_id[QLB_MAX_SERVER_ID];
};

struct qlb_server {
	__u32 backend;
	__u8 routable; /* 0: backend `down` (src/lb/router.ts BACKEND_STATES) */
	__u8 pad[3];
};

/* Map "fallback": 1 entry per generation, the draft-21 §4.3 baseline fallback of
 * src/lb/router.ts. The Maglev table itself is map "maglev" (gen * QLB_MAX_MAGLEV_TABLE + slot ->
 * backend index). */
struct qlb_fallback {
	__u8 key[16];      /* SipHash-2-4 key: config fallback.key, its 16 octets in order */
	__u32 table_size;  /* config fallback.tableSize (a prime); 0: not filled yet */
	__u32 live;        /* 1 when "maglev"[0 .. table_size) holds a table; 0: no `up` backend
			    * with a weight > 0 (decide()'s table is empty): dropped_no_backend */
};

/* Map "last": per-CPU, the decision of the last datagram this CPU saw (tests read it). */
struct qlb_decision {
	__s32 backend;   /* -1 unless QLB_ROUTED or a fallback reason with a backend */
	__u32 reason;    /* the routing decision (decide()'s) */
	__u32 outcome;   /* = reason when sent by XDP (routed or fallback) or dropped; else the
			  * pass-up reason */
	__u32 ifindex;   /* egress interface when sent (XDP_TX: the ingress one), else 0 */
};

/* Map "backends": array indexed by gen * QLB_MAX_BACKENDS + backend index (src/lb config
 * order): the forwarding address.
 * Map "sources": the same index: the outer source address and port, the local end of the Node
 * forwarder's connected upstream socket to that backend (src/lb/forwarder.ts Upstream). The
 * backend sees what it sees from the Node path (its --allow-lb list holds), and its replies
 * reach that socket, which handles them as it handles replies to Node-forwarded datagrams.
 * family 0: no entry (pass-up). family 4 uses addr[0..4); port in network order. */
struct qlb_endpoint {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* Map "flags": array of one __u32 per generation. */
#define QLB_FLAG_SIGN_FORWARD 1u /* returnPath.signForward: pass routed datagrams up */
#define QLB_FLAG_RETRY 2u        /* retry.mode is not off: pass client Initials up (docs/retry.md) */

#endif
