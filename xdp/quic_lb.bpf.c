// SPDX-License-Identifier: Apache-2.0
/* The routing decision of src/lb/router.ts decide() as an XDP program: first piece of issue 15.
 *
 * For IPv4/IPv6 UDP datagrams to a VIP it parses the RFC 8999 invariant header, decodes the DCID
 * under its QUIC-LB config (draft-21 §5.2 plaintext, §5.4 single-pass and four-pass: cid_crypt.h) and looks
 * the server ID up; what decide() sends to its fallback gets its backend from SipHash-2-4 of the
 * 4-tuple and the Maglev table (fallback.h). A datagram with a backend (routed or fallback) is
 * encapsulated and sent (xdp/encap.h qlb_forward: XDP_TX or XDP_REDIRECT) unless it cannot be
 * (then it passes up, with its own reason). It records the decision and its outcome in the
 * per-CPU map "last" and counts the outcome in "counters". Everything else is a pass-up by
 * design, so the Node forwarder on the same VIP decides it (Retry, fragments, options...).
 *
 * Order of the checks = decide(): header -> DCID octets -> codepoint -> config -> length ->
 * server ID -> backend state; then a long-header packet class (Initial/0-RTT, Version
 * Negotiation, unknown version) names any non-routed reason but backend_down. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "quic_lb.h"
#include "cid_crypt.h"

#define QUIC_V1 0x00000001u
#define QUIC_V2 0x6b3343cfu
#define MAX_CID_LENGTH_V1 20  /* RFC 9000 §17.2, RFC 9369 */
#define LONG_DCIL_OFFSET 5    /* RFC 8999 §5.1 */
#define LONG_DCID_OFFSET 6
#define SHORT_DCID_OFFSET 1   /* RFC 8999 §5.2 */
/* Largest offset byte_at() reads: the header and CID octets it serves lie within the first 300. */
#define MAX_READ_OFFSET 0x3fff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_VIPS);
	__type(key, struct qlb_vip_key);
	__type(value, __u8);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_CODEPOINTS);
	__type(key, __u32);
	__type(value, struct qlb_config);
} configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_SERVERS);
	__type(key, struct qlb_server_key);
	__type(value, struct qlb_server);
} servers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qlb_decision);
} last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QLB_REASON_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#include "fallback.h"
#include "encap.h"

/* Reads buf[off] into *v when it lies before both `end` (the packet) and `len` (the UDP payload). */
static __always_inline int byte_at(const __u8 *buf, __u32 off, __u32 len, const void *end, __u8 *v)
{
	if (off >= len || off > MAX_READ_OFFSET)
		return 0;
	/* The verifier trusts a packet bounds check only when the offset register is known small
	 * (its max + the pointer's offset <= 0xffff); clang may add a copy of `off` it did not
	 * check, so bound the register it uses. */
	barrier_var(off);
	off &= MAX_READ_OFFSET;
	if ((const void *)(buf + off + 1) > end)
		return 0;
	*v = buf[off];
	return 1;
}

/* Long-header packet class that names a non-routed datagram (router.ts decide() step 4). */
static __always_inline __u32 long_class(__u32 version, __u8 first, __u32 reason)
{
	__u8 bits = (first >> 4) & 3;

	if (reason == QLB_BACKEND_DOWN)
		return reason;
	if (version == 0)
		return QLB_VERSION_NEGOTIATION;
	if (version == QUIC_V1)
		return bits == 0 || bits == 1 ? QLB_INITIAL : reason;
	if (version == QUIC_V2)
		return bits == 1 || bits == 2 ? QLB_INITIAL : reason;
	return QLB_UNKNOWN_VERSION;
}

/* Reads count (<= 16) octets at buf[at ..) into the big-endian words w[0..3], zero past count.
 * 0 when the packet ends first. */
static __always_inline int read_words(const __u8 *buf, __u32 at, __u32 count, __u32 len,
				      const void *end, __u32 *w)
{
	__u32 w0 = 0, w1 = 0, w2 = 0, w3 = 0, x;
	__u8 v;

	for (__u32 i = 0; i < 16; i++) {
		if (i >= count)
			break;
		if (!byte_at(buf, at + i, len, end, &v))
			return 0;
		x = (__u32)v << (24 - 8 * (i & 3));
		if (i < 4)
			w0 |= x;
		else if (i < 8)
			w1 |= x;
		else if (i < 12)
			w2 |= x;
		else
			w3 |= x;
	}
	w[0] = w0, w[1] = w1, w[2] = w2, w[3] = w3;
	return 1;
}

/* Server ID of an encrypted CID at buf[off ..) into key->server_id (draft-21 §5.4.1 when server
 * ID + nonce = 16 octets, else §5.4.2). 0 when the packet ends first. */
static __always_inline int encrypted_server_id(const __u8 *buf, __u32 off, __u32 len,
					       const void *end, const struct qlb_config *cfg,
					       struct qlb_server_key *key)
{
	__u32 n = cfg->server_id_len + cfg->nonce_len, half = (n + 1) / 2;
	struct qlb_aes_block l = {}, r = {};

	if (n == 16) {
		if (!read_words(buf, off + 1, 16, len, end, l.w))
			return 0;
		qlb_single_pass(cfg, &l);
#pragma unroll
		for (__u32 i = 0; i < QLB_MAX_SERVER_ID; i++)
			if (i < cfg->server_id_len)
				key->server_id[i] = qlb_octet(l.w[0], l.w[1], l.w[2], i);
		return 1;
	}
	if (!read_words(buf, off + 1, half, len, end, l.w) ||
	    !read_words(buf, off + 1 + n - half, half, len, end, r.w))
		return 0;
	qlb_four_pass(cfg, &l, &r);
#pragma unroll
	for (__u32 i = 0; i < QLB_MAX_SERVER_ID; i++)
		if (i < cfg->server_id_len)
			key->server_id[i] = qlb_four_pass_octet(cfg, &l, &r, i);
	return 1;
}

/* Server ID of config `cp` at buf[off+1 ..) -> decision: in the clear (draft-21 §5.2) or
 * decrypted (§5.4). */
static __always_inline __u32 lookup_server(const __u8 *buf, __u32 off, __u32 len, const void *end,
					   __u32 slot, const struct qlb_config *cfg, __s32 *backend)
{
	struct qlb_server_key key = { .slot = slot };
	struct qlb_server *s;

	if (cfg->encrypted) {
		if (!encrypted_server_id(buf, off, len, end, cfg, &key))
			return QLB_TOO_SHORT;
	} else {
		for (__u32 i = 0; i < QLB_MAX_SERVER_ID; i++) {
			if (i >= cfg->server_id_len)
				break;
			if (!byte_at(buf, off + 1 + i, len, end, &key.server_id[i]))
				return QLB_TOO_SHORT;
		}
	}
	s = bpf_map_lookup_elem(&servers, &key);
	if (!s)
		return QLB_UNKNOWN_SERVER_ID;
	if (!s->routable)
		return QLB_BACKEND_DOWN;
	*backend = s->backend;
	return QLB_ROUTED;
}

/* decide() on the UDP payload buf[0..len): the QUIC part. */
static __always_inline __u32 decide_quic(const __u8 *buf, __u32 len, const void *end, __s32 *backend,
					 __u32 gen)
{
	__u8 first, dcil = 0, scil, cid0;
	__u32 version = 0, off, available, reason, cp, slot;
	struct qlb_config *cfg;
	int is_long;

	if (!byte_at(buf, 0, len, end, &first))
		return QLB_MALFORMED;
	is_long = first & 0x80;
	if (is_long) {
		__u8 v[4];

		if (len < LONG_DCID_OFFSET || (const void *)(buf + LONG_DCID_OFFSET) > end)
			return QLB_MALFORMED;
		v[0] = buf[1], v[1] = buf[2], v[2] = buf[3], v[3] = buf[4];
		version = (__u32)v[0] << 24 | (__u32)v[1] << 16 | (__u32)v[2] << 8 | v[3];
		dcil = buf[LONG_DCIL_OFFSET];
		if (!byte_at(buf, LONG_DCID_OFFSET + dcil, len, end, &scil))
			return QLB_MALFORMED;
		if (LONG_DCID_OFFSET + dcil + 1 + scil > len)
			return QLB_MALFORMED;
		if ((version == QUIC_V1 || version == QUIC_V2) &&
		    (dcil > MAX_CID_LENGTH_V1 || scil > MAX_CID_LENGTH_V1))
			return QLB_MALFORMED;
		off = LONG_DCID_OFFSET;
		available = dcil;
	} else {
		off = SHORT_DCID_OFFSET;
		available = len - SHORT_DCID_OFFSET;
	}
	if (available == 0 || !byte_at(buf, off, len, end, &cid0)) {
		reason = QLB_TOO_SHORT;
		goto classify;
	}
	cp = cid0 >> 5;
	if (cp == QLB_UNROUTABLE_CODEPOINT) {
		reason = QLB_UNROUTABLE_0B111;
		goto classify;
	}
	slot = gen * QLB_CODEPOINTS + cp;
	cfg = bpf_map_lookup_elem(&configs, &slot);
	if (!cfg || !cfg->present) {
		reason = QLB_UNKNOWN_CONFIG;
		goto classify;
	}
	if (available < 1u + cfg->server_id_len + cfg->nonce_len) {
		reason = QLB_TOO_SHORT;
		goto classify;
	}
	reason = lookup_server(buf, off, len, end, slot, cfg, backend);
	if (reason == QLB_ROUTED)
		return reason;
classify:
	return is_long ? long_class(version, first, reason) : reason;
}

/* IP + UDP -> UDP payload, or a pass-up reason. Looks the destination up in "vips". */
static __always_inline __u32 parse_ip_udp(void *data, void *end, const __u8 **payload, __u32 *len,
					  __u32 gen)
{
	struct ethhdr *eth = data;
	struct qlb_vip_key vip = { .gen = gen };
	struct udphdr *udp;
	__u32 ip_payload;

	if ((void *)(eth + 1) > end)
		return QLB_NOT_VIP;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->version != 4)
			return QLB_NOT_VIP;
		if (ip->protocol != IPPROTO_UDP)
			return QLB_NOT_VIP;
		if (ip->ihl != 5)
			return QLB_IP_OPTIONS;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or a fragment offset */
			return QLB_FRAGMENT;
		__builtin_memcpy(vip.addr, &ip->daddr, 4);
		vip.family = 4;
		ip_payload = bpf_ntohs(ip->tot_len);
		if (ip_payload < sizeof(*ip))
			return QLB_MALFORMED;
		ip_payload -= sizeof(*ip);
		udp = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return QLB_NOT_VIP;
		if (ip6->nexthdr == IPPROTO_FRAGMENT)
			return QLB_FRAGMENT;
		if (ip6->nexthdr == IPPROTO_HOPOPTS || ip6->nexthdr == IPPROTO_ROUTING ||
		    ip6->nexthdr == IPPROTO_DSTOPTS)
			return QLB_IP_OPTIONS;
		if (ip6->nexthdr != IPPROTO_UDP)
			return QLB_NOT_VIP;
		__builtin_memcpy(vip.addr, &ip6->daddr, 16);
		vip.family = 6;
		ip_payload = bpf_ntohs(ip6->payload_len);
		udp = (void *)(ip6 + 1);
	} else {
		return QLB_NOT_VIP;
	}
	if ((void *)(udp + 1) > end)
		return QLB_NOT_VIP;
	vip.port = udp->dest;
	if (!bpf_map_lookup_elem(&vips, &vip))
		return QLB_NOT_VIP;
	*len = bpf_ntohs(udp->len);
	if (*len < sizeof(*udp) || *len > ip_payload)
		return QLB_MALFORMED;
	*len -= sizeof(*udp);
	*payload = (const __u8 *)(udp + 1);
	if ((const void *)(*payload + *len) > end)
		return QLB_MALFORMED;
	return QLB_ROUTED; /* meaning: go on to the QUIC part */
}

/* The LB's Retry offload (src/lb/retry-offload.ts) answers or checks client Initials whose DCID
 * routes nowhere; while it is configured, Node sees every one of them. */
static __always_inline int retry_offload(__u32 gen)
{
	__u32 *f = bpf_map_lookup_elem(&flags, &gen);

	return f && (*f & QLB_FLAG_RETRY);
}

SEC("xdp")
int quic_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct qlb_decision *d, dec;
	const __u8 *payload = 0;
	__u32 len = 0, reason, zero = 0, gen = 0, *g;
	__s32 backend = -1;
	int verdict = XDP_PASS;
	__u64 *count;

	/* The generation of every map this datagram reads, read once (quic_lb.h QLB_GENERATIONS). */
	g = bpf_map_lookup_elem(&active, &zero);
	if (g && *g < QLB_GENERATIONS)
		gen = *g;
	reason = parse_ip_udp(data, end, &payload, &len, gen);
	if (reason == QLB_ROUTED)
		reason = decide_quic(payload, len, end, &backend, gen);
	if (reason != QLB_ROUTED)
		backend = -1;
	if (qlb_is_fallback(reason))
		reason = qlb_fallback(data, end, reason, &backend, gen);
	dec = (struct qlb_decision){ .backend = backend, .reason = reason, .outcome = reason };
	if (reason == QLB_INITIAL && retry_offload(gen))
		dec.outcome = QLB_RETRY_OFFLOAD;
	else if (backend >= 0)
		verdict = qlb_forward(ctx, backend, &dec, gen);
	else if (reason == QLB_MALFORMED || reason == QLB_NO_BACKEND)
		verdict = XDP_DROP; /* what decide() drops: node:dgram would drop it too */
	d = bpf_map_lookup_elem(&last, &zero);
	if (d)
		*d = dec;
	count = bpf_map_lookup_elem(&counters, &dec.outcome);
	if (count)
		*count += 1;
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
