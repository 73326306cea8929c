/* SPDX-License-Identifier: Apache-2.0 */
/* The baseline fallback of src/lb/router.ts decide() step 4 (draft-21 §4.3) in BPF: SipHash-2-4
 * of the 4-tuple, keyed by the config's fallback.key, reduced modulo fallback.tableSize, then the
 * Maglev table built by the TS control plane from the healthy backends (src/lb/maglev.ts).
 * Included by quic_lb.bpf.c after its map definitions and headers; the entry point is
 * qlb_fallback(). Bit for bit the same as src/lb/siphash.ts and fallbackSlot() (test/xdp checks
 * slots and backends against them). */
#ifndef QUIC_LB_XDP_FALLBACK_H
#define QUIC_LB_XDP_FALLBACK_H

#ifndef QLB_MAX_MAGLEV_TABLE
#error "QLB_MAX_MAGLEV_TABLE: build with xdp/build.sh (it reads src/lb/maglev.ts)"
#endif

/* Hash input of fallbackSlot(): client address (4|16) | client port (2, big-endian) | VIP
 * address (4|16) | VIP port (2, big-endian): 12 or 36 octets. The buffer holds one more
 * zeroed 8-octet word, which qlb_siphash24() reads as the last block's padding. */
#define QLB_TUPLE_MAX 36
#define QLB_TUPLE_BUF 40

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS);
	__type(key, __u32);
	__type(value, struct qlb_fallback);
} fallback SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_MAGLEV_TABLE);
	__type(key, __u32);
	__type(value, __s32);
} maglev SEC(".maps");

/* True for the reasons decide() sends to its fallback (src/lb/reasons.ts FALLBACK_*). */
static __always_inline int qlb_is_fallback(__u32 reason)
{
	return reason >= QLB_INITIAL && reason <= QLB_VERSION_NEGOTIATION;
}

/* p[0..8) as a little-endian 64-bit word (SipHash reads its key and message little-endian). */
static __always_inline __u64 qlb_le64(const __u8 *p)
{
	__u64 v = 0;

#pragma unroll
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static __always_inline __u64 qlb_rotl(__u64 x, int b)
{
	return x << b | x >> (64 - b);
}

struct qlb_sip {
	__u64 v0, v1, v2, v3;
};

/* One SipRound (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012, §2). */
static __always_inline void qlb_sipround(struct qlb_sip *s)
{
	s->v0 += s->v1;
	s->v1 = qlb_rotl(s->v1, 13) ^ s->v0;
	s->v0 = qlb_rotl(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = qlb_rotl(s->v3, 16) ^ s->v2;
	s->v0 += s->v3;
	s->v3 = qlb_rotl(s->v3, 21) ^ s->v0;
	s->v2 += s->v1;
	s->v1 = qlb_rotl(s->v1, 17) ^ s->v2;
	s->v2 = qlb_rotl(s->v2, 32);
}

/* Two SipRounds on one message word (the "2" of SipHash-2-4). */
static __always_inline void qlb_sip_block(struct qlb_sip *s, __u64 m)
{
	s->v3 ^= m;
	qlb_sipround(s);
	qlb_sipround(s);
	s->v0 ^= m;
}

/* SipHash-2-4 of buf[0..len) under the 16-octet key. Contract: len <= QLB_TUPLE_MAX and buf
 * holds QLB_TUPLE_BUF octets, zero from len on, so the last block (the 0..7 remaining octets,
 * zero-padded, with len mod 256 in its top octet) is read as a whole word. The loop is unrolled
 * with constant offsets: at most QLB_TUPLE_BUF / 8 blocks. */
static __always_inline __u64 qlb_siphash24(const __u8 *buf, __u32 len, const __u8 *key)
{
	__u64 k0 = qlb_le64(key), k1 = qlb_le64(key + 8);
	/* The initialisation constants spell "somepseudorandomlygeneratedbytes". */
	struct qlb_sip s = {
		.v0 = k0 ^ 0x736f6d6570736575ull,
		.v1 = k1 ^ 0x646f72616e646f6dull,
		.v2 = k0 ^ 0x6c7967656e657261ull,
		.v3 = k1 ^ 0x7465646279746573ull,
	};

#pragma unroll
	for (__u32 i = 0; i < QLB_TUPLE_BUF / 8; i++) {
		__u64 m = qlb_le64(buf + 8 * i);

		if (8 * i + 8 > len) {
			qlb_sip_block(&s, m | (__u64)(len & 0xff) << 56);
			break;
		}
		qlb_sip_block(&s, m);
	}
	s.v2 ^= 0xff;
	qlb_sipround(&s);
	qlb_sipround(&s);
	qlb_sipround(&s);
	qlb_sipround(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* fallbackSlot()'s hash input from a frame that parse_ip_udp() accepted (Ethernet, IPv4 without
 * options or IPv6 without extension headers, UDP): writes buf[0..QLB_TUPLE_BUF) (zero past the
 * input) and returns the input length, or 0 when the headers are not there. */
static __always_inline __u32 qlb_tuple_of(void *data, void *end, __u8 *buf)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u32 n;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return 0;
		__builtin_memcpy(buf, &ip->saddr, 4);
		__builtin_memcpy(buf + 6, &ip->daddr, 4);
		n = 4;
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return 0;
		__builtin_memcpy(buf, &ip6->saddr, 16);
		__builtin_memcpy(buf + 18, &ip6->daddr, 16);
		n = 16;
	}
	/* Ports are in network order in the header: the big-endian octets fallbackSlot() hashes. */
	__builtin_memcpy(buf + n, &udp->source, 2);
	__builtin_memcpy(buf + 2 * n + 2, &udp->dest, 2);
	return 2 * n + 4;
}

/* decide() step 4 for a datagram whose reason is a fallback one (qlb_is_fallback()): sets
 * *backend to the Maglev backend of its 4-tuple and returns the reason unchanged, or returns
 * QLB_NO_BACKEND with *backend = -1 when the table is empty (as decide() does), not filled, or
 * the 4-tuple cannot be read. */
static __always_inline __u32 qlb_fallback(void *data, void *end, __u32 reason, __s32 *backend,
					  __u32 gen)
{
	__u8 buf[QLB_TUPLE_BUF] = {};
	struct qlb_fallback *fb;
	__u32 len, slot;
	__s32 *b;

	*backend = -1;
	fb = bpf_map_lookup_elem(&fallback, &gen);
	if (!fb || !fb->live || fb->table_size == 0)
		return QLB_NO_BACKEND;
	len = qlb_tuple_of(data, end, buf);
	if (len == 0)
		return QLB_NO_BACKEND;
	/* hashMod() of src/lb/siphash.ts: the 64-bit hash modulo the table size, exactly. */
	slot = qlb_siphash24(buf, len, fb->key) % fb->table_size;
	if (slot >= QLB_MAX_MAGLEV_TABLE)
		return QLB_NO_BACKEND;
	slot += gen * QLB_MAX_MAGLEV_TABLE;
	b = bpf_map_lookup_elem(&maglev, &slot);
	if (!b || *b < 0)
		return QLB_NO_BACKEND;
	*backend = *b;
	return reason;
}

#endif
