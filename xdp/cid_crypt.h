/* Server ID of an encrypted QUIC-LB CID (draft-21 §5.4.1 single-pass, §5.4.2 four-pass), the LB
 * side of src/cid/codec.ts on 32-bit words: a block of up to 16 octets is four big-endian words
 * (octet 0 most significant), zero past its length. The caller reads the CID's octets out of the
 * packet (bounds-checked) and looks the server ID up; nothing here touches the packet. */
#ifndef QUIC_LB_XDP_CID_CRYPT_H
#define QUIC_LB_XDP_CID_CRYPT_H

#include "quic_lb.h"
#include "aes.h"

/* draft-21 §5.4.2.2 expand(): AES input octet 15 is the plaintext length, octet 16 the pass. */
#define QLB_EXPAND_LENGTH_SHIFT 8

/* Octet j (0..11) of the big-endian words w0 w1 w2. */
static __always_inline __u8 qlb_octet(__u32 w0, __u32 w1, __u32 w2, __u32 j)
{
	__u32 w = j < 4 ? w0 : j < 8 ? w1 : w2;

	return (w >> (24 - 8 * (j & 3))) & 0xff;
}

/* Mask keeping the first len (0..4) octets of a big-endian word. */
static __always_inline __u32 qlb_octet_mask(__s32 len)
{
	if (len >= 4)
		return 0xffffffff;
	if (len <= 0)
		return 0;
	return 0xffffffff << (32 - 8 * len);
}

/* Single-pass (draft-21 §5.4.1, §5.5.1): the 16 octets after the first octet are one AES-128-ECB
 * block; decrypting it gives server ID || nonce. b in, plaintext out. */
static __always_inline void qlb_single_pass(const struct qlb_config *cfg, struct qlb_aes_block *b)
{
	qlb_aes_decrypt(cfg, b);
}

/* dst ^= truncate(AES(expand(n, pass, x)), half), under the masks m (draft-21 §5.4.2.2-3). */
static __always_inline void qlb_round(const struct qlb_config *cfg, __u32 n, __u32 pass,
				      const struct qlb_aes_block *x, struct qlb_aes_block *dst,
				      const struct qlb_aes_block *m)
{
	struct qlb_aes_block b = { { x->w[0], x->w[1], x->w[2], n << QLB_EXPAND_LENGTH_SHIFT | pass } };

	qlb_aes_encrypt(cfg, &b);
	dst->w[0] ^= b.w[0] & m->w[0];
	dst->w[1] ^= b.w[1] & m->w[1];
	dst->w[2] ^= b.w[2] & m->w[2];
}

/* Four-pass decode (draft-21 §5.5.2, with the codec's erratum fix: right halves lose the shared
 * octet's high nibble). In: l, r = the split CID halves (octets [0, half) and [n - half, n);
 * half <= 10 octets, so word 3 is zero), unmasked. Out: l, r such that qlb_four_pass_octet()
 * joins them into the plaintext. When server ID length <= nonce length the server ID lies within
 * left_0 and pass 1 is skipped. */
static __always_inline void qlb_four_pass(const struct qlb_config *cfg, struct qlb_aes_block *l,
					  struct qlb_aes_block *r)
{
	__u32 n = cfg->server_id_len + cfg->nonce_len, half = (n + 1) / 2;
	struct qlb_aes_block lm, rm;

	for (int k = 0; k < 3; k++) {
		lm.w[k] = qlb_octet_mask((__s32)half - 4 * k);
		rm.w[k] = lm.w[k];
	}
	if (n & 1) {
		/* Odd n: L keeps the shared octet's high nibble, R its low nibble (§5.4.2.2). */
		__u32 last = half - 1;

		for (int k = 0; k < 3; k++)
			if (last / 4 == k)
				lm.w[k] &= ~(0x0fu << (24 - 8 * (last & 3)));
		rm.w[0] &= 0x0fffffff;
	}
	for (int k = 0; k < 3; k++) {
		l->w[k] &= lm.w[k];
		r->w[k] &= rm.w[k];
	}
	qlb_round(cfg, n, 4, r, l, &lm);
	qlb_round(cfg, n, 3, l, r, &rm);
	qlb_round(cfg, n, 2, r, l, &lm);
	if (cfg->server_id_len > cfg->nonce_len)
		qlb_round(cfg, n, 1, l, r, &rm);
}

/* Octet i of join(L, R) (draft-21 §5.4.2.2) for i < server ID length: the left half, the shared
 * octet of an odd n (L's high nibble | R's low nibble), then the right half. */
static __always_inline __u8 qlb_four_pass_octet(const struct qlb_config *cfg,
						const struct qlb_aes_block *l, const struct qlb_aes_block *r,
						__u32 i)
{
	__u32 n = cfg->server_id_len + cfg->nonce_len, half = (n + 1) / 2, ro = n - half;

	if (i >= half)
		return qlb_octet(r->w[0], r->w[1], r->w[2], i - ro);
	if ((n & 1) && i == half - 1)
		return qlb_octet(l->w[0], l->w[1], l->w[2], i) | qlb_octet(r->w[0], r->w[1], r->w[2], 0);
	return qlb_octet(l->w[0], l->w[1], l->w[2], i);
}

#endif
