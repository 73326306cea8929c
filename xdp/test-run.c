// SPDX-License-Identifier: Apache-2.0
/* Test runner of the XDP program (test/xdp/decide.test.ts builds it with cc ... -lbpf).
 *
 *   test-run OBJECT INPUT
 *
 * Loads OBJECT (.tmp/xdp/quic_lb.bpf.o) with libbpf, then reads INPUT line by line:
 *   config CP SID_LEN NONCE_LEN ENCRYPTED [EK DK]
 *                                           fills "configs"[CP]; EK, DK: an encrypted config's
 *                                           round keys, 44 words of 8 hex digits each (the values
 *                                           of src/cid/aes.ts expandEncryptKey(key) and
 *                                           expandDecryptKey(EK)), stored in host order (quic_lb.h)
 *   server CP SID_HEX BACKEND ROUTABLE      fills "servers" (an existing entry is replaced)
 *   vip 4|6 ADDR_HEX PORT                   fills "vips"
 *   fallback KEY_HEX TABLE_SIZE             sets "fallback": SipHash key (16 octets), table size
 *   maglev TABLE_HEX|-                      fills "maglev"[0 .. TABLE_SIZE) from TABLE_SIZE int32 in
 *                                           host order (an Int32Array's bytes), or "-": empty table
 *                                           (no backend to fall back to); sets "fallback" live
 *   info                                    prints "info maglev_max=N reasons=NAME,..." (map
 *                                           "maglev"'s max_entries, the reason names by value)
 *   backend INDEX 4|6 ADDR_HEX PORT         fills "backends"[INDEX] (family 0: clears it)
 *   source 4|6 ADDR_HEX PORT                fills "sources" (the outer source of that family)
 *   flags N                                 fills "flags"
 *   ingress IFNAME|-                        the ingress interface of the next frames (default -:
 *                                           the runner's loopback, what BPF_PROG_TEST_RUN picks)
 *   frame HEX                               runs the Ethernet frame through BPF_PROG_TEST_RUN and
 *                                           prints "REASON BACKEND OUTCOME VERDICT EGRESS OUT":
 *                                           the decision (BACKEND -1 unless routed), the outcome
 *                                           (xdp/quic_lb.h), pass|tx|redirect|drop|aborted, the
 *                                           egress interface name (- unless sent) and the output
 *                                           frame in hex, or - for an XDP_PASS frame left as it was
 * and ends with one line "counters NAME=N ..." (the per-CPU counters summed). One process for
 * every datagram; exits non-zero on the first error, saying why on stderr. The fib lookup of the
 * program uses the runner's network namespace (run it with `ip netns exec`). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "quic_lb.h"

#define MAX_FRAME 4096
#define HEADROOM 256 /* XDP_PACKET_HEADROOM: the most the program may grow a frame by */

static const char *reason_names[QLB_REASON_COUNT] = { QLB_REASON_NAME_LIST };
static const char *verdict_names[] = { "aborted", "drop", "pass", "tx", "redirect" };

static int fail(const char *what, const char *detail)
{
	fprintf(stderr, "test-run: %s: %s\n", what, detail);
	exit(1);
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Hex up to the end of the word -> out (at most cap octets); fails on odd or bad digits. */
static size_t unhex(const char *hex, __u8 *out, size_t cap)
{
	size_t n = 0;

	while (hex[0] && hex[0] != '\n' && hex[0] != ' ') {
		int hi = nibble(hex[0]), lo = nibble(hex[1]);

		if (n == cap || hi < 0 || lo < 0)
			fail("bad hex", hex);
		out[n++] = (__u8)(hi << 4 | lo);
		hex += 2;
	}
	return n;
}

static void printhex(const __u8 *b, __u32 n)
{
	for (__u32 i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

static int map_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);

	if (!m)
		fail("no map", name);
	return bpf_map__fd(m);
}

/* "maglev TABLE_HEX|-": the whole table in one batch update, then "fallback".live. */
static void fill_maglev(struct bpf_object *obj, const char *hex)
{
	int fd = map_fd(obj, "maglev"), fd_fb = map_fd(obj, "fallback");
	__u32 zero = 0, max = bpf_map__max_entries(bpf_object__find_map_by_name(obj, "maglev")), count;
	struct qlb_fallback fb;
	__s32 *table = calloc(max, sizeof(*table));
	__u32 *keys = calloc(max, sizeof(*keys));
	size_t n = 0;

	if (bpf_map_lookup_elem(fd_fb, &zero, &fb) || fb.table_size == 0)
		fail("maglev", "needs a fallback line first");
	if (hex[0] != '-')
		n = unhex(hex, (__u8 *)table, (size_t)max * sizeof(*table));
	if (n != 0 && n != (size_t)fb.table_size * sizeof(*table))
		fail("maglev", "table length is not fallback's TABLE_SIZE");
	count = n / sizeof(*table);
	for (__u32 i = 0; i < count; i++)
		keys[i] = i;
	if (count && bpf_map_update_batch(fd, keys, table, &count, NULL))
		fail("update maglev", strerror(errno));
	fb.live = n != 0;
	if (bpf_map_update_elem(fd_fb, &zero, &fb, BPF_ANY))
		fail("update fallback", strerror(errno));
	free(table);
	free(keys);
}

/* Parses QLB_AES_RK_WORDS words of 8 hex digits; returns the rest of the text. */
static const char *unwords(const char *hex, __u32 *out)
{
	while (*hex == ' ')
		hex++;
	for (int i = 0; i < QLB_AES_RK_WORDS; i++, hex += 8) {
		char word[9] = {};

		if (strspn(hex, "0123456789abcdefABCDEF") < 8)
			fail("bad round-key hex", hex);
		memcpy(word, hex, 8);
		out[i] = (__u32)strtoul(word, NULL, 16);
	}
	return hex;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	int ncpu, prog_fd, fd_vips, fd_configs, fd_servers, fd_last, fd_counters;
	int fd_backends, fd_sources, fd_flags;
	struct qlb_decision *decisions;
	char *line = NULL;
	size_t cap = 0;
	static __u8 frame[MAX_FRAME], out[MAX_FRAME + HEADROOM];
	unsigned ingress = 0;
	FILE *in;
	cpu_set_t cpus;

	if (argc != 3)
		fail("usage", "test-run OBJECT INPUT");
	/* One CPU: each run's per-CPU "last" entry is then the one this CPU wrote. */
	CPU_ZERO(&cpus);
	CPU_SET(sched_getcpu(), &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		fail("open", argv[1]);
	if (bpf_object__load(obj))
		fail("load (verifier log above)", argv[1]);
	prog = bpf_object__find_program_by_name(obj, "quic_lb");
	if (!prog)
		fail("no program", "quic_lb");
	prog_fd = bpf_program__fd(prog);
	fd_vips = map_fd(obj, "vips");
	fd_configs = map_fd(obj, "configs");
	fd_servers = map_fd(obj, "servers");
	fd_last = map_fd(obj, "last");
	fd_counters = map_fd(obj, "counters");
	fd_backends = map_fd(obj, "backends");
	fd_sources = map_fd(obj, "sources");
	fd_flags = map_fd(obj, "flags");
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		fail("cpus", "libbpf_num_possible_cpus");
	decisions = calloc(ncpu, sizeof(*decisions));
	in = fopen(argv[2], "r");
	if (!in)
		fail("open", argv[2]);
	while (getline(&line, &cap, in) > 0) {
		char word[16], hex[64];
		unsigned a, b, c, d;
		__u32 zero = 0;

		if (sscanf(line, "%15s", word) != 1)
			continue;
		if (!strcmp(word, "config")) {
			struct qlb_config cfg = { .present = 1 };
			int keys = 0;

			if (sscanf(line, "config %u %u %u %u %n", &a, &b, &c, &d, &keys) != 4 ||
			    a >= QLB_CODEPOINTS)
				fail("bad line", line);
			cfg.server_id_len = b, cfg.nonce_len = c, cfg.encrypted = d;
			if (d)
				unwords(unwords(line + keys, cfg.ek), cfg.dk);
			if (bpf_map_update_elem(fd_configs, &a, &cfg, BPF_ANY))
				fail("update configs", strerror(errno));
		} else if (!strcmp(word, "server")) {
			struct qlb_server_key key = {};
			struct qlb_server s = {};

			if (sscanf(line, "server %u %63s %u %u", &a, hex, &c, &d) != 4)
				fail("bad line", line);
			key.config_id = a;
			unhex(hex, key.server_id, QLB_MAX_SERVER_ID);
			s.backend = c, s.routable = d;
			if (bpf_map_update_elem(fd_servers, &key, &s, BPF_ANY))
				fail("update servers", strerror(errno));
		} else if (!strcmp(word, "vip")) {
			struct qlb_vip_key key = {};
			__u8 one = 1;

			if (sscanf(line, "vip %u %63s %u", &a, hex, &c) != 3)
				fail("bad line", line);
			key.family = a;
			unhex(hex, key.addr, 16);
			key.port = htons(c);
			if (bpf_map_update_elem(fd_vips, &key, &one, BPF_ANY))
				fail("update vips", strerror(errno));
		} else if (!strcmp(word, "fallback")) {
			struct qlb_fallback fb = {};

			if (bpf_map_lookup_elem(map_fd(obj, "fallback"), &zero, &fb))
				fail("read fallback", strerror(errno));
			if (sscanf(line, "fallback %63s %u", hex, &a) != 2 || a == 0 ||
			    unhex(hex, fb.key, sizeof(fb.key)) != sizeof(fb.key))
				fail("bad line", line);
			if (a != fb.table_size)
				fb.live = 0; /* the table of another size is no table: a maglev line follows */
			fb.table_size = a;
			if (bpf_map_update_elem(map_fd(obj, "fallback"), &zero, &fb, BPF_ANY))
				fail("update fallback", strerror(errno));
		} else if (!strcmp(word, "maglev")) {
			fill_maglev(obj, line + 7);
		} else if (!strcmp(word, "info")) {
			map_fd(obj, "maglev"); /* fails when there is no such map */
			printf("info maglev_max=%u reasons=",
			       bpf_map__max_entries(bpf_object__find_map_by_name(obj, "maglev")));
			for (__u32 r = 0; r < QLB_REASON_COUNT; r++)
				printf("%s%s", r ? "," : "", reason_names[r]);
			printf("\n");
		} else if (!strcmp(word, "backend") || !strcmp(word, "source")) {
			struct qlb_endpoint e = {};
			int backend = word[0] == 'b';
			unsigned index = 0;

			if (backend ? sscanf(line, "backend %u %u %63s %u", &index, &a, hex, &c) != 4
				    : sscanf(line, "source %u %63s %u", &a, hex, &c) != 3)
				fail("bad line", line);
			e.family = a;
			unhex(hex, e.addr, 16);
			e.port = htons(c);
			if (!backend)
				index = a == 4 ? 0 : 1;
			if (bpf_map_update_elem(backend ? fd_backends : fd_sources, &index, &e, BPF_ANY))
				fail("update backends/sources", strerror(errno));
		} else if (!strcmp(word, "flags")) {
			if (sscanf(line, "flags %u", &a) != 1)
				fail("bad line", line);
			if (bpf_map_update_elem(fd_flags, &zero, &a, BPF_ANY))
				fail("update flags", strerror(errno));
		} else if (!strcmp(word, "ingress")) {
			if (sscanf(line, "ingress %63s", hex) != 1)
				fail("bad line", line);
			ingress = strcmp(hex, "-") ? if_nametoindex(hex) : 0;
			if (strcmp(hex, "-") && !ingress)
				fail("no interface", hex);
		} else if (!strcmp(word, "frame")) {
			size_t n = unhex(line + 6, frame, sizeof(frame));
			struct xdp_md ctx = { .data_end = n, .ingress_ifindex = ingress };
			LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = n,
				    .data_out = out, .data_size_out = sizeof(out), .repeat = 1);
			char egress[IF_NAMESIZE] = "-";
			int found = -1;

			if (ingress) {
				opts.ctx_in = &ctx;
				opts.ctx_size_in = sizeof(ctx);
			}

			for (int i = 0; i < ncpu; i++)
				decisions[i] = (struct qlb_decision){ .backend = -2, .reason = 0xffffffff,
								      .outcome = 0xffffffff };
			if (bpf_map_update_elem(fd_last, &zero, decisions, BPF_ANY))
				fail("reset last", strerror(errno));
			if (bpf_prog_test_run_opts(prog_fd, &opts))
				fail("BPF_PROG_TEST_RUN", strerror(errno));
			if (opts.retval > XDP_REDIRECT)
				fail("verdict", "unknown XDP action");
			if (bpf_map_lookup_elem(fd_last, &zero, decisions))
				fail("read last", strerror(errno));
			for (int i = 0; i < ncpu; i++)
				if (decisions[i].reason != 0xffffffff) {
					if (found >= 0)
						fail("last", "two CPUs wrote a decision");
					found = i;
				}
			if (found < 0 || decisions[found].reason >= QLB_REASON_COUNT ||
			    decisions[found].outcome >= QLB_REASON_COUNT)
				fail("last", "no decision recorded");
			if (decisions[found].ifindex && !if_indextoname(decisions[found].ifindex, egress))
				fail("egress", "if_indextoname");
			printf("%s %d %s %s %s ", reason_names[decisions[found].reason],
			       decisions[found].backend, reason_names[decisions[found].outcome],
			       verdict_names[opts.retval], egress);
			if (opts.retval == XDP_PASS && opts.data_size_out == n && !memcmp(out, frame, n))
				printf("-\n");
			else
				printhex(out, opts.data_size_out);
		} else {
			fail("unknown line", line);
		}
	}
	free(line);
	printf("counters");
	for (__u32 r = 0; r < QLB_REASON_COUNT; r++) {
		__u64 *v = calloc(ncpu, sizeof(__u64)), sum = 0;

		if (bpf_map_lookup_elem(fd_counters, &r, v))
			fail("read counters", strerror(errno));
		for (int i = 0; i < ncpu; i++)
			sum += v[i];
		printf(" %s=%llu", reason_names[r], (unsigned long long)sum);
		free(v);
	}
	printf("\n");
	return 0;
}
