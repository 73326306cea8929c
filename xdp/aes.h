/* AES-128 for BPF (FIPS-197), T-table form: the encryption and the equivalent inverse cipher of
 * src/cid/aes.ts, on four 32-bit column words (row-0 octet most significant, FIPS-197 §3.5). The
 * tables are read-only global data (aes_tables.h, generated from the library's); the round keys
 * come from user space (struct qlb_config ek/dk in quic_lb.h), so no key schedule runs here.
 *
 * Each block is one BPF-to-BPF call of 10 unrolled rounds, so the program holds one copy of each
 * direction whatever the number of passes. Not constant-time: the table
 * index depends on key and data (cache timing), as the library's 'table' cipher. */
#ifndef QUIC_LB_XDP_AES_H
#define QUIC_LB_XDP_AES_H

#include "quic_lb.h"
#include "aes_tables.h"

#define QLB_B0(w) ((w) >> 24)
#define QLB_B1(w) (((w) >> 16) & 0xff)
#define QLB_B2(w) (((w) >> 8) & 0xff)
#define QLB_B3(w) ((w) & 0xff)

/* One full round of the cipher (FIPS-197 §5.1: SubBytes, ShiftRows, MixColumns, AddRoundKey):
 * column c takes row r from column c + r. */
#define QLB_ENC_ROUND(d0, d1, d2, d3, s0, s1, s2, s3, k)                                            \
	do {                                                                                        \
		d0 = qlb_te0[QLB_B0(s0)] ^ qlb_te1[QLB_B1(s1)] ^ qlb_te2[QLB_B2(s2)] ^              \
		     qlb_te3[QLB_B3(s3)] ^ (k)[0];                                                  \
		d1 = qlb_te0[QLB_B0(s1)] ^ qlb_te1[QLB_B1(s2)] ^ qlb_te2[QLB_B2(s3)] ^              \
		     qlb_te3[QLB_B3(s0)] ^ (k)[1];                                                  \
		d2 = qlb_te0[QLB_B0(s2)] ^ qlb_te1[QLB_B1(s3)] ^ qlb_te2[QLB_B2(s0)] ^              \
		     qlb_te3[QLB_B3(s1)] ^ (k)[2];                                                  \
		d3 = qlb_te0[QLB_B0(s3)] ^ qlb_te1[QLB_B1(s0)] ^ qlb_te2[QLB_B2(s1)] ^              \
		     qlb_te3[QLB_B3(s2)] ^ (k)[3];                                                  \
	} while (0)

/* One full round of the equivalent inverse cipher (FIPS-197 §5.3.5: InvSubBytes, InvShiftRows,
 * InvMixColumns, AddRoundKey with the transformed schedule): column c takes row r from c - r. */
#define QLB_DEC_ROUND(d0, d1, d2, d3, s0, s1, s2, s3, k)                                            \
	do {                                                                                        \
		d0 = qlb_td0[QLB_B0(s0)] ^ qlb_td1[QLB_B1(s3)] ^ qlb_td2[QLB_B2(s2)] ^              \
		     qlb_td3[QLB_B3(s1)] ^ (k)[0];                                                  \
		d1 = qlb_td0[QLB_B0(s1)] ^ qlb_td1[QLB_B1(s0)] ^ qlb_td2[QLB_B2(s3)] ^              \
		     qlb_td3[QLB_B3(s2)] ^ (k)[1];                                                  \
		d2 = qlb_td0[QLB_B0(s2)] ^ qlb_td1[QLB_B1(s1)] ^ qlb_td2[QLB_B2(s0)] ^              \
		     qlb_td3[QLB_B3(s3)] ^ (k)[2];                                                  \
		d3 = qlb_td0[QLB_B0(s3)] ^ qlb_td1[QLB_B1(s2)] ^ qlb_td2[QLB_B2(s1)] ^              \
		     qlb_td3[QLB_B3(s0)] ^ (k)[3];                                                  \
	} while (0)

/* Last round (no MixColumns): S-box octets in the same row order as the full round. */
static __always_inline __u32 qlb_last_word(const __u8 *sbox, __u32 a, __u32 b, __u32 c, __u32 d,
					   __u32 k)
{
	return ((__u32)sbox[QLB_B0(a)] << 24 | (__u32)sbox[QLB_B1(b)] << 16 |
		(__u32)sbox[QLB_B2(c)] << 8 | (__u32)sbox[QLB_B3(d)]) ^ k;
}

/* One AES block, four column words. */
struct qlb_aes_block {
	__u32 w[4];
};

/* The two directions are global functions: the verifier checks each once, on its own, instead of
 * once per call site and caller state (four passes would otherwise cost ~600k verified
 * instructions). Their pointer arguments may then be NULL as far as it knows: checked first.
 * Both return 0 (a global function returns a scalar). */

/* Encrypts b in place with cfg->ek (FIPS-197 §5.1). Two rounds per iteration, so the state
 * ping-pongs between two sets of registers. */
__attribute__((noinline)) int qlb_aes_encrypt(const struct qlb_config *cfg, struct qlb_aes_block *b)
{
	const __u32 *ek;
	__u32 s0, s1, s2, s3, t0, t1, t2, t3;

	if (!cfg || !b)
		return 0;
	ek = cfg->ek;
	s0 = b->w[0] ^ ek[0], s1 = b->w[1] ^ ek[1], s2 = b->w[2] ^ ek[2], s3 = b->w[3] ^ ek[3];
#pragma unroll
	for (int r = 1; r < QLB_AES_ROUNDS - 1; r += 2) {
		QLB_ENC_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, ek + 4 * r);
		QLB_ENC_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, ek + 4 * (r + 1));
	}
	QLB_ENC_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, ek + 4 * (QLB_AES_ROUNDS - 1));
	ek += 4 * QLB_AES_ROUNDS;
	b->w[0] = qlb_last_word(qlb_sbox, t0, t1, t2, t3, ek[0]);
	b->w[1] = qlb_last_word(qlb_sbox, t1, t2, t3, t0, ek[1]);
	b->w[2] = qlb_last_word(qlb_sbox, t2, t3, t0, t1, ek[2]);
	b->w[3] = qlb_last_word(qlb_sbox, t3, t0, t1, t2, ek[3]);
	return 0;
}

/* Decrypts b in place with cfg->dk, the equivalent inverse cipher (FIPS-197 §5.3.5; the schedule
 * of src/cid/aes.ts expandDecryptKey()). */
__attribute__((noinline)) int qlb_aes_decrypt(const struct qlb_config *cfg, struct qlb_aes_block *b)
{
	const __u32 *dk;
	__u32 s0, s1, s2, s3, t0, t1, t2, t3;

	if (!cfg || !b)
		return 0;
	dk = cfg->dk;
	s0 = b->w[0] ^ dk[0], s1 = b->w[1] ^ dk[1], s2 = b->w[2] ^ dk[2], s3 = b->w[3] ^ dk[3];
#pragma unroll
	for (int r = 1; r < QLB_AES_ROUNDS - 1; r += 2) {
		QLB_DEC_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, dk + 4 * r);
		QLB_DEC_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, dk + 4 * (r + 1));
	}
	QLB_DEC_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, dk + 4 * (QLB_AES_ROUNDS - 1));
	dk += 4 * QLB_AES_ROUNDS;
	b->w[0] = qlb_last_word(qlb_inv_sbox, t0, t3, t2, t1, dk[0]);
	b->w[1] = qlb_last_word(qlb_inv_sbox, t1, t0, t3, t2, dk[1]);
	b->w[2] = qlb_last_word(qlb_inv_sbox, t2, t1, t0, t3, dk[2]);
	b->w[3] = qlb_last_word(qlb_inv_sbox, t3, t2, t1, t0, dk[3]);
	return 0;
}

#endif
