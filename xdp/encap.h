// SPDX-License-Identifier: Apache-2.0
/* Encapsulation and transmit of a routed datagram (issue 15), included by quic_lb.bpf.c.
 *
 * What the Node forwarder sends (src/lb/forwarder.ts forward()), built in place:
 *
 *   Ethernet | outer IPv4/IPv6 (LB -> backend) | UDP (Node upstream socket port -> backend port)
 *   | PROXY v2 header, PROXY/DGRAM, src = client, dst = VIP, no TLV (src/wire/proxy-v2.ts)
 *   | the QUIC datagram, untouched and unmoved
 *
 * The head grows with bpf_xdp_adjust_head (the old Ethernet/IP/UDP headers are overwritten, the
 * datagram stays where it is); Ethernet padding after the UDP payload is cut. The outer family is
 * the backend's, the PROXY header's the client's (they may differ).
 *
 * Choices (xdp/README.md): TTL / hop limit 64 and DSCP/ECN 0 (a new datagram of the LB, as the
 * kernel sends Node's); IPv4 ID 0 with DF (RFC 6864 §4.1: atomic datagram); flow label 0. The UDP
 * checksum is derived from the incoming one (bpf_csum_diff: minus the old pseudo header and UDP
 * header, plus the new ones and the PROXY header; the PROXY header has an even length so the
 * datagram's 16-bit words keep their alignment), so a corrupted datagram stays detectable by the
 * backend. An incoming IPv4 checksum of 0 (none, RFC 768) gives an outer IPv4 checksum of 0 too,
 * and a pass-up (QLB_NO_UDP_CHECKSUM) for an IPv6 backend, where a checksum is mandatory
 * (RFC 8200 §8.1); an IPv6 datagram with checksum 0 is invalid and passes up the same way.
 *
 * Nothing is written before every check passed: a pass-up leaves the frame as it came. */
#ifndef QUIC_LB_ENCAP_H
#define QUIC_LB_ENCAP_H

#define QLB_AF_INET 2   /* AF_INET, AF_INET6 of the bpf_fib_lookup family field */
#define QLB_AF_INET6 10
#define QLB_OUTER_TTL 64
#define QLB_IP4_DF 0x4000
/* proxy-protocol.txt §2.2: 16 fixed octets, then the address block */
#define QLB_PP2_FIXED 16
#define QLB_PP2_LEN4 (QLB_PP2_FIXED + 12)
#define QLB_PP2_LEN6 (QLB_PP2_FIXED + 36)
#define QLB_PP2_VER_CMD 0x21 /* version 2, PROXY */
#define QLB_PP2_INET_DGRAM 0x12
#define QLB_PP2_INET6_DGRAM 0x22

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct qlb_endpoint);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct qlb_endpoint);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS);
	__type(key, __u32);
	__type(value, __u32);
} flags SEC(".maps");

/* The incoming datagram, read before the head moves. */
struct qlb_inner {
	__u8 client[16];
	__u8 vip[16];
	__u16 client_port; /* network order, as every port and checksum here */
	__u16 vip_port;
	__u16 check;
	__u16 len;         /* QUIC datagram octets */
	__u8 family;
	__u8 hdr_len;      /* Ethernet + IP + UDP octets in front of the datagram */
};

/* Pseudo header (RFC 768, RFC 8200 §8.1) and UDP header with a zero checksum, as summed. */
struct qlb_sum4 {
	__u8 src[4];
	__u8 dst[4];
	__u8 zero;
	__u8 proto;
	__u16 len;
	struct udphdr udp;
};

struct qlb_sum6 {
	__u8 src[16];
	__u8 dst[16];
	__u32 len;
	__u8 zero[3];
	__u8 next;
	struct udphdr udp;
};

/* Reads the frame quic_lb() parsed as a VIP datagram (Ethernet, IPv4 without options or IPv6
 * with UDP next, a consistent UDP length). 0 when it is not that after all. */
static __always_inline int read_inner(void *data, void *end, struct qlb_inner *in)
{
	struct ethhdr *eth = data;
	struct udphdr *udp;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl != 5)
			return 0;
		__builtin_memcpy(in->client, &ip->saddr, 4);
		__builtin_memcpy(in->vip, &ip->daddr, 4);
		in->family = 4;
		udp = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return 0;
		__builtin_memcpy(in->client, &ip6->saddr, 16);
		__builtin_memcpy(in->vip, &ip6->daddr, 16);
		in->family = 6;
		udp = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if ((void *)(udp + 1) > end || bpf_ntohs(udp->len) < sizeof(*udp))
		return 0;
	in->client_port = udp->source;
	in->vip_port = udp->dest;
	in->check = udp->check;
	in->len = bpf_ntohs(udp->len) - sizeof(*udp);
	in->hdr_len = (void *)(udp + 1) - data;
	if ((void *)(udp + 1) + in->len > end)
		return 0;
	return 1;
}

static __always_inline __u32 pp2_len(__u8 family)
{
	return family == 4 ? QLB_PP2_LEN4 : QLB_PP2_LEN6;
}

/* bpf_fib_lookup -> the pass-up reason, or QLB_ROUTED. */
static __always_inline __u32 fib_reason(long rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		return QLB_ROUTED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return QLB_FIB_FORWARDING_OFF;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return QLB_FIB_NO_NEIGHBOUR;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return QLB_TOO_BIG;
	default:
		return QLB_FIB_NO_ROUTE;
	}
}

/* Next hop toward `be` for an outer packet of `l3_len` octets (MTU check by the kernel). */
static __always_inline __u32 next_hop(struct xdp_md *ctx, const struct qlb_endpoint *be,
				      const struct qlb_endpoint *src, __u32 l3_len,
				      struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = src->port;
	fib->dport = be->port;
	fib->tot_len = l3_len;
	fib->ifindex = ctx->ingress_ifindex;
	if (be->family == 4) {
		fib->family = QLB_AF_INET;
		__builtin_memcpy(&fib->ipv4_src, src->addr, 4);
		__builtin_memcpy(&fib->ipv4_dst, be->addr, 4);
	} else {
		fib->family = QLB_AF_INET6;
		__builtin_memcpy(fib->ipv6_src, src->addr, 16);
		__builtin_memcpy(fib->ipv6_dst, be->addr, 16);
	}
	return fib_reason(bpf_fib_lookup(ctx, fib, sizeof(*fib), 0));
}

/* The PROXY v2 header at pp: exactly src/wire/proxy-v2.ts writeProxyHeader(client, VIP, no TLV).
 * `family` = in->family, a constant at each call so that the verifier sees constant sizes. */
static __always_inline int write_pp2(__u8 *pp, void *end, const struct qlb_inner *in, __u8 family)
{
	static const __u8 sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

	if ((void *)(pp + QLB_PP2_FIXED) > end)
		return 0;
	__builtin_memcpy(pp, sig, sizeof(sig));
	pp[12] = QLB_PP2_VER_CMD;
	pp[14] = 0;
	if (family == 4) {
		if ((void *)(pp + QLB_PP2_LEN4) > end)
			return 0;
		pp[13] = QLB_PP2_INET_DGRAM;
		pp[15] = QLB_PP2_LEN4 - QLB_PP2_FIXED;
		__builtin_memcpy(pp + 16, in->client, 4);
		__builtin_memcpy(pp + 20, in->vip, 4);
		__builtin_memcpy(pp + 24, &in->client_port, 2);
		__builtin_memcpy(pp + 26, &in->vip_port, 2);
	} else {
		if ((void *)(pp + QLB_PP2_LEN6) > end)
			return 0;
		pp[13] = QLB_PP2_INET6_DGRAM;
		pp[15] = QLB_PP2_LEN6 - QLB_PP2_FIXED;
		__builtin_memcpy(pp + 16, in->client, 16);
		__builtin_memcpy(pp + 32, in->vip, 16);
		__builtin_memcpy(pp + 48, &in->client_port, 2);
		__builtin_memcpy(pp + 50, &in->vip_port, 2);
	}
	return 1;
}

static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Outer UDP checksum: the incoming one minus `old` (pseudo + UDP header, old_len octets) plus
 * `new` (new_len) and the PROXY header at pp. 0 stays 0 (IPv4 only: checked by the caller). */
static __always_inline __u16 udp_check(__u16 incoming, void *old, __u32 old_len, void *new,
				       __u32 new_len, __u8 *pp, __u32 pp_len)
{
	__s64 s;
	__u16 c;

	if (incoming == 0)
		return 0;
	s = bpf_csum_diff(old, old_len, new, new_len, (__u16)~incoming);
	if (s < 0)
		return 0;
	s = bpf_csum_diff(0, 0, (void *)pp, pp_len, (__u32)s);
	if (s < 0)
		return 0;
	c = ~csum_fold(s);
	return c ? c : 0xffff; /* RFC 768: a computed 0 is sent as all ones */
}

/* The UDP header at udp and the sums' UDP copy: return port -> backend port. */
static __always_inline void fill_udp(struct udphdr *u, const struct qlb_endpoint *be,
				     const struct qlb_endpoint *src, __u16 udp_len)
{
	u->source = src->port;
	u->dest = be->port;
	u->len = bpf_htons(udp_len);
	u->check = 0;
}

/* The incoming pseudo + UDP header (checksum zeroed), family 4: 20 octets, 6: 48. */
static __always_inline void old_sums(const struct qlb_inner *in, struct qlb_sum4 *s4,
				     struct qlb_sum6 *s6)
{
	__u16 udp_len = bpf_htons(in->len + sizeof(struct udphdr));

	if (in->family == 4) {
		__builtin_memcpy(s4->src, in->client, 4);
		__builtin_memcpy(s4->dst, in->vip, 4);
		s4->zero = 0;
		s4->proto = IPPROTO_UDP;
		s4->len = udp_len;
		s4->udp = (struct udphdr){ in->client_port, in->vip_port, udp_len, 0 };
	} else {
		__builtin_memcpy(s6->src, in->client, 16);
		__builtin_memcpy(s6->dst, in->vip, 16);
		s6->len = bpf_htonl(in->len + sizeof(struct udphdr));
		__builtin_memset(s6->zero, 0, sizeof(s6->zero));
		s6->next = IPPROTO_UDP;
		s6->udp = (struct udphdr){ in->client_port, in->vip_port, udp_len, 0 };
	}
}

/* Ethernet + IPv4 + UDP + PROXY at data; 0 if the frame is too short (cannot be). */
static __always_inline int write_outer4(void *data, void *end, const struct qlb_inner *in,
					const struct qlb_endpoint *be, const struct qlb_endpoint *src,
					const struct bpf_fib_lookup *fib, __u8 in_family, void *old,
					__u32 old_len)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *pp = (__u8 *)(udp + 1);
	__u32 pp_n = pp2_len(in_family);
	__u16 udp_len = sizeof(*udp) + pp_n + in->len;
	struct qlb_sum4 sum = {};
	__u16 *w = (__u16 *)ip;
	__u32 s = 0;

	if ((void *)(udp + 1) > end || !write_pp2(pp, end, in, in_family))
		return 0;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	*ip = (struct iphdr){ .version = 4, .ihl = 5, .ttl = QLB_OUTER_TTL, .protocol = IPPROTO_UDP };
	ip->tot_len = bpf_htons(sizeof(*ip) + udp_len);
	ip->frag_off = bpf_htons(QLB_IP4_DF);
	__builtin_memcpy(&ip->saddr, src->addr, 4);
	__builtin_memcpy(&ip->daddr, be->addr, 4);
	for (int i = 0; i < (int)sizeof(*ip) / 2; i++)
		s += w[i];
	ip->check = ~csum_fold(s);
	fill_udp(udp, be, src, udp_len);
	__builtin_memcpy(sum.src, src->addr, 4);
	__builtin_memcpy(sum.dst, be->addr, 4);
	sum.proto = IPPROTO_UDP;
	sum.len = udp->len;
	sum.udp = *udp;
	udp->check = udp_check(in->check, old, old_len, &sum, sizeof(sum), pp, pp_n);
	return 1;
}

/* Ethernet + IPv6 + UDP + PROXY at data. The caller refused an incoming checksum of 0. */
static __always_inline int write_outer6(void *data, void *end, const struct qlb_inner *in,
					const struct qlb_endpoint *be, const struct qlb_endpoint *src,
					const struct bpf_fib_lookup *fib, __u8 in_family, void *old,
					__u32 old_len)
{
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip6 + 1);
	__u8 *pp = (__u8 *)(udp + 1);
	__u32 pp_n = pp2_len(in_family);
	__u16 udp_len = sizeof(*udp) + pp_n + in->len;
	struct qlb_sum6 sum = {};

	if ((void *)(udp + 1) > end || !write_pp2(pp, end, in, in_family))
		return 0;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*ip6 = (struct ipv6hdr){ .version = 6, .nexthdr = IPPROTO_UDP, .hop_limit = QLB_OUTER_TTL };
	ip6->payload_len = bpf_htons(udp_len);
	__builtin_memcpy(&ip6->saddr, src->addr, 16);
	__builtin_memcpy(&ip6->daddr, be->addr, 16);
	fill_udp(udp, be, src, udp_len);
	__builtin_memcpy(sum.src, src->addr, 16);
	__builtin_memcpy(sum.dst, be->addr, 16);
	sum.len = bpf_htonl(udp_len);
	sum.next = IPPROTO_UDP;
	sum.udp = *udp;
	udp->check = udp_check(in->check, old, old_len, &sum, sizeof(sum), pp, pp_n);
	return 1;
}

/* Cuts what follows the UDP payload (Ethernet padding), then grows the head to `hdr_len`
 * octets in front of the datagram. Reason QLB_ROUTED when done. */
static __always_inline __u32 make_room(struct xdp_md *ctx, const struct qlb_inner *in, __u32 hdr_len)
{
	__s32 excess = (__s32)(ctx->data_end - ctx->data) - (__s32)(in->hdr_len + in->len);

	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -excess))
		return QLB_NO_HEADROOM;
	if (bpf_xdp_adjust_head(ctx, (__s32)in->hdr_len - (__s32)hdr_len))
		return QLB_NO_HEADROOM;
	return QLB_ROUTED;
}

/* Sends the datagram quic_lb() parsed (a VIP datagram) to backend `backend`, as the Node
 * forwarder would. Returns the XDP verdict and sets d->outcome (d->reason when sent, else the
 * pass-up reason) and d->ifindex (egress when sent). Contract: on XDP_PASS the frame is as it came
 * (but for Ethernet padding cut when only the head could not grow). Called for every backend the
 * program decided: CID-routed and fallback. */
static __always_inline int qlb_forward(struct xdp_md *ctx, __u32 backend, struct qlb_decision *d,
				       __u32 gen)
{
	struct qlb_endpoint *be, *src;
	struct qlb_inner in = {};
	struct bpf_fib_lookup fib;
	struct qlb_sum4 old4 = {};
	struct qlb_sum6 old6 = {};
	__u32 *f, ip_len, hdr_len, l3_len, reason, index;
	void *data, *end;
	int ok;

	d->outcome = QLB_NO_BACKEND_ADDRESS;
	d->ifindex = 0;
	f = bpf_map_lookup_elem(&flags, &gen);
	if (f && (*f & QLB_FLAG_SIGN_FORWARD)) {
		d->outcome = QLB_SIGN_FORWARD;
		return XDP_PASS;
	}
	if (backend >= QLB_MAX_BACKENDS)
		return XDP_PASS;
	index = gen * QLB_MAX_BACKENDS + backend;
	be = bpf_map_lookup_elem(&backends, &index);
	if (!be || (be->family != 4 && be->family != 6))
		return XDP_PASS;
	src = bpf_map_lookup_elem(&sources, &index);
	if (!src || src->family != be->family) {
		d->outcome = QLB_NO_SOURCE_ADDRESS;
		return XDP_PASS;
	}
	if (!read_inner((void *)(long)ctx->data, (void *)(long)ctx->data_end, &in)) {
		d->outcome = QLB_MALFORMED;
		return XDP_PASS;
	}
	if (in.check == 0 && (be->family == 6 || in.family == 6)) {
		d->outcome = QLB_NO_UDP_CHECKSUM;
		return XDP_PASS;
	}
	ip_len = be->family == 4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	l3_len = ip_len + sizeof(struct udphdr) + pp2_len(in.family) + in.len;
	if (l3_len - (be->family == 4 ? 0 : ip_len) > 0xffff) {
		d->outcome = QLB_TOO_BIG;
		return XDP_PASS;
	}
	reason = next_hop(ctx, be, src, l3_len, &fib);
	if (reason == QLB_ROUTED) {
		old_sums(&in, &old4, &old6);
		hdr_len = sizeof(struct ethhdr) + l3_len - in.len;
		reason = make_room(ctx, &in, hdr_len);
	}
	if (reason != QLB_ROUTED) {
		d->outcome = reason;
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	/* Four copies, each with constant header sizes for the verifier. */
	if (be->family == 4 && in.family == 4)
		ok = write_outer4(data, end, &in, be, src, &fib, 4, &old4, sizeof(old4));
	else if (be->family == 4)
		ok = write_outer4(data, end, &in, be, src, &fib, 6, &old6, sizeof(old6));
	else if (in.family == 4)
		ok = write_outer6(data, end, &in, be, src, &fib, 4, &old4, sizeof(old4));
	else
		ok = write_outer6(data, end, &in, be, src, &fib, 6, &old6, sizeof(old6));
	if (!ok)
		return XDP_ABORTED; /* cannot happen: make_room gave hdr_len octets before the datagram */
	d->outcome = d->reason; /* sent: routed, or the fallback reason it was hashed for */
	d->ifindex = fib.ifindex;
	if (fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib.ifindex, 0);
}

#endif
