// SPDX-License-Identifier: Apache-2.0
/* quic-lb-xdp: the user-space side of the XDP program, driven by `quic-lb serve` (src/lb/xdp-*.ts)
 * and by the tests. It knows map names and sizes, never their layouts: the TypeScript control
 * plane encodes keys and values (src/lb/xdp-maps.ts, the one source of the bytes).
 *
 *   quic-lb-xdp OBJECT                          load only: BPF_PROG_TEST_RUN through `run`
 *   quic-lb-xdp OBJECT IFNAME auto|native|generic   load and attach to IFNAME
 *
 * The attachment is a BPF link owned by this process: when it exits, however it exits, the
 * program is detached and the interface's datagrams go up the stack again, to the Node forwarder
 * on the same VIP. First line on stdout: `ready MODE IFINDEX` (MODE native, generic or test).
 * On a failure before that: one line `quic-lb-xdp: WHAT: WHY` on stderr and exit status 2
 * (load: the verifier's log precedes it), 3 (no such interface) or 4 (attach refused).
 *
 * Then one command per stdin line, one reply line per command, in order:
 *   update MAP KEYHEX VALUEHEX   -> ok                   (a map that is not per-CPU)
 *   fill MAP START VALUESHEX     -> ok N                 (array: N values from index START)
 *   delete MAP KEYHEX            -> ok | ok absent
 *   sum MAP                      -> sum V0 V1 ...        (per-CPU array of __u64: each index
 *                                                          summed over the CPUs)
 *   info MAP                     -> info KEY_SIZE VALUE_SIZE MAX_ENTRIES   (the map as loaded:
 *                                   the control plane checks its layouts against it)
 *   reasons                      -> reasons NAME0 NAME1 ...  (the names of the decision reasons,
 *                                                          indexes of map "counters": quic_lb.h)
 *   run FRAMEHEX [IFNAME]        -> run VERDICT REASON OUTCOME BACKEND EGRESS OUT   (load-only
 *                                   mode: one BPF_PROG_TEST_RUN, with IFNAME as the ingress
 *                                   interface (default: the namespace's loopback); the decision
 *                                   from map "last" (quic_lb.h qlb_decision); OUT: the output
 *                                   frame in hex, or - when it is the input frame unchanged)
 * A bad command gets `error WHY` and changes nothing; the agent goes on. EOF on stdin: exit 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_link.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "quic_lb.h"

#define MAX_FRAME 4096
#define MAX_KEY 64

struct agent {
	struct bpf_object *obj;
	int prog_fd;
	int test_mode;
	int ncpu;
};

static void die(int status, const char *what, const char *why)
{
	fprintf(stderr, "quic-lb-xdp: %s: %s\n", what, why);
	exit(status);
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

/* Parses exactly `n` octets of hex from `hex` (no more, no less); 0 on success. */
static int unhex(const char *hex, size_t hexlen, __u8 *out, size_t n)
{
	if (hexlen != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (__u8)(hi << 4 | lo);
	}
	return 0;
}

static void print_hex(const __u8 *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

/* The next space-separated word of *s (advanced past it), or NULL. */
static char *word(char **s, size_t *len)
{
	char *w = *s;

	while (*w == ' ')
		w++;
	if (!*w)
		return NULL;
	*len = strcspn(w, " ");
	*s = w + *len;
	return w;
}

static struct bpf_map *map_named(struct agent *a, const char *name, size_t len)
{
	char buf[BPF_OBJ_NAME_LEN];

	if (len == 0 || len >= sizeof(buf))
		return NULL;
	memcpy(buf, name, len);
	buf[len] = 0;
	return bpf_object__find_map_by_name(a->obj, buf);
}

static int per_cpu(const struct bpf_map *m)
{
	enum bpf_map_type t = bpf_map__type(m);

	return t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static void cmd_update(struct agent *a, char *rest)
{
	size_t nl = 0, kl = 0, vl = 0;
	char *n = word(&rest, &nl), *k = word(&rest, &kl), *v = word(&rest, &vl);
	struct bpf_map *m = n ? map_named(a, n, nl) : NULL;
	__u8 key[MAX_KEY], *val;

	if (!m || !k || !v || word(&rest, &nl)) {
		printf("error usage: update MAP KEYHEX VALUEHEX (an existing map)\n");
		return;
	}
	if (per_cpu(m)) {
		printf("error %s is per-CPU: written by the program only\n", bpf_map__name(m));
		return;
	}
	val = malloc(bpf_map__value_size(m));
	if (bpf_map__key_size(m) > MAX_KEY || unhex(k, kl, key, bpf_map__key_size(m)) ||
	    unhex(v, vl, val, bpf_map__value_size(m)))
		printf("error %s takes %u-octet keys and %u-octet values, in hex\n", bpf_map__name(m),
		       bpf_map__key_size(m), bpf_map__value_size(m));
	else if (bpf_map_update_elem(bpf_map__fd(m), key, val, BPF_ANY))
		printf("error update %s: %s\n", bpf_map__name(m), strerror(errno));
	else
		printf("ok\n");
	free(val);
}

/* Array entries start .. start+count-1 = vals: one batch system call where the kernel has them
 * (Linux >= 5.6), else one update per entry. 0, or -1 with errno set. */
static int fill_array(int fd, __u32 start, __u32 count, const __u8 *vals, __u32 size)
{
	__u32 *keys = malloc((size_t)count * sizeof(*keys) + 1), n = count;
	int err;

	for (__u32 i = 0; i < count; i++)
		keys[i] = start + i;
	err = count ? bpf_map_update_batch(fd, keys, vals, &n, NULL) : 0;
	if (err && (errno == EINVAL || errno == EOPNOTSUPP || errno == 524 /* ENOTSUPP, kernel-internal */)) {
		err = 0;
		for (__u32 i = 0; i < count && !err; i++)
			err = bpf_map_update_elem(fd, &keys[i], vals + (size_t)i * size, BPF_ANY);
	}
	free(keys);
	return err ? -1 : 0;
}

static void cmd_fill(struct agent *a, char *rest)
{
	size_t nl = 0, sl = 0, vl = 0;
	char *n = word(&rest, &nl), *s = word(&rest, &sl), *v = word(&rest, &vl);
	struct bpf_map *m = n ? map_named(a, n, nl) : NULL;
	unsigned long start;
	__u32 size, count;
	__u8 *vals;

	if (!m || !s || !v || word(&rest, &nl) || bpf_map__type(m) != BPF_MAP_TYPE_ARRAY) {
		printf("error usage: fill MAP START VALUESHEX (an array map)\n");
		return;
	}
	size = bpf_map__value_size(m);
	start = strtoul(s, NULL, 10);
	count = vl / 2 / size;
	if (vl != (size_t)count * size * 2 || start + count > bpf_map__max_entries(m)) {
		printf("error %s: whole %u-octet values from START within %u entries\n", bpf_map__name(m), size,
		       bpf_map__max_entries(m));
		return;
	}
	vals = malloc((size_t)count * size + 1);
	if (unhex(v, vl, vals, (size_t)count * size)) {
		printf("error %s: values are not hex\n", bpf_map__name(m));
	} else if (fill_array(bpf_map__fd(m), start, count, vals, size)) {
		printf("error fill %s: %s\n", bpf_map__name(m), strerror(errno));
	} else {
		printf("ok %u\n", count);
	}
	free(vals);
}

static void cmd_delete(struct agent *a, char *rest)
{
	size_t nl = 0, kl = 0;
	char *n = word(&rest, &nl), *k = word(&rest, &kl);
	struct bpf_map *m = n ? map_named(a, n, nl) : NULL;
	__u8 key[MAX_KEY];

	if (!m || !k || word(&rest, &nl)) {
		printf("error usage: delete MAP KEYHEX (an existing map)\n");
		return;
	}
	if (bpf_map__key_size(m) > MAX_KEY || unhex(k, kl, key, bpf_map__key_size(m)))
		printf("error %s takes %u-octet keys, in hex\n", bpf_map__name(m), bpf_map__key_size(m));
	else if (!bpf_map_delete_elem(bpf_map__fd(m), key))
		printf("ok\n");
	else if (errno == ENOENT)
		printf("ok absent\n");
	else
		printf("error delete %s: %s\n", bpf_map__name(m), strerror(errno));
}

static void cmd_info(struct agent *a, char *rest)
{
	size_t nl = 0;
	char *n = word(&rest, &nl);
	struct bpf_map *m = n ? map_named(a, n, nl) : NULL;

	if (!m || word(&rest, &nl))
		printf("error usage: info MAP (an existing map)\n");
	else
		printf("info %u %u %u\n", bpf_map__key_size(m), bpf_map__value_size(m), bpf_map__max_entries(m));
}

static void cmd_reasons(void)
{
	static const char *names[QLB_REASON_COUNT] = { QLB_REASON_NAME_LIST };

	printf("reasons");
	for (int i = 0; i < QLB_REASON_COUNT; i++)
		printf(" %s", names[i]);
	printf("\n");
}

static void cmd_sum(struct agent *a, char *rest)
{
	size_t nl = 0;
	char *n = word(&rest, &nl);
	struct bpf_map *m = n ? map_named(a, n, nl) : NULL;
	__u64 *v;

	if (!m || word(&rest, &nl) || bpf_map__type(m) != BPF_MAP_TYPE_PERCPU_ARRAY ||
	    bpf_map__value_size(m) != sizeof(__u64)) {
		printf("error usage: sum MAP (a per-CPU array of __u64)\n");
		return;
	}
	v = calloc(a->ncpu, sizeof(*v));
	printf("sum");
	for (__u32 i = 0; i < bpf_map__max_entries(m); i++) {
		__u64 total = 0;

		if (bpf_map_lookup_elem(bpf_map__fd(m), &i, v))
			memset(v, 0, a->ncpu * sizeof(*v));
		for (int c = 0; c < a->ncpu; c++)
			total += v[c];
		printf(" %llu", (unsigned long long)total);
	}
	printf("\n");
	free(v);
}

/* One BPF_PROG_TEST_RUN; the decision this CPU wrote into the per-CPU map "last". The agent is
 * pinned to one CPU in load-only mode, so exactly one entry changes. */
static void cmd_run(struct agent *a, char *rest)
{
	static __u8 in[MAX_FRAME], out[MAX_FRAME + 256];
	struct bpf_map *last = bpf_object__find_map_by_name(a->obj, "last");
	struct qlb_decision *d;
	size_t fl = 0, il = 0, nl = 0;
	char *f = word(&rest, &fl), *i = word(&rest, &il), ifname[IF_NAMESIZE] = "";
	struct xdp_md ctx = { .data_end = fl / 2 };
	__u32 zero = 0;
	int found = -1;

	if (!a->test_mode || !last || !f || word(&rest, &nl) || fl / 2 > MAX_FRAME || il >= IF_NAMESIZE ||
	    unhex(f, fl, in, fl / 2)) {
		printf("error usage: run FRAMEHEX [IFNAME] (load-only mode, at most %d octets)\n", MAX_FRAME);
		return;
	}
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = fl / 2, .data_out = out,
		    .data_size_out = sizeof(out), .repeat = 1);
	if (i) {
		memcpy(ifname, i, il);
		ctx.ingress_ifindex = if_nametoindex(ifname);
		if (!ctx.ingress_ifindex) {
			printf("error run: no interface %s\n", ifname);
			return;
		}
		opts.ctx_in = &ctx;
		opts.ctx_size_in = sizeof(ctx);
	}
	d = calloc(a->ncpu, sizeof(*d));
	for (int i = 0; i < a->ncpu; i++)
		d[i] = (struct qlb_decision){ .backend = -2, .reason = 0xffffffff };
	if (bpf_map_update_elem(bpf_map__fd(last), &zero, d, BPF_ANY) ||
	    bpf_prog_test_run_opts(a->prog_fd, &opts) || bpf_map_lookup_elem(bpf_map__fd(last), &zero, d)) {
		printf("error run: %s\n", strerror(errno));
		free(d);
		return;
	}
	for (int i = 0; i < a->ncpu; i++)
		if (d[i].reason != 0xffffffff)
			found = found < 0 ? i : -2;
	if (found < 0)
		printf("error run: %s\n", found == -1 ? "no decision recorded" : "two CPUs wrote a decision");
	else {
		char egress[IF_NAMESIZE] = "-";

		if (d[found].ifindex && !if_indextoname(d[found].ifindex, egress))
			snprintf(egress, sizeof(egress), "#%u", d[found].ifindex);
		printf("run %u %u %u %d %s ", opts.retval, d[found].reason, d[found].outcome, d[found].backend,
		       egress);
		if (opts.data_size_out == fl / 2 && !memcmp(out, in, fl / 2))
			printf("-");
		else
			print_hex(out, opts.data_size_out);
		printf("\n");
	}
	free(d);
}

static void attach(struct agent *a, const char *ifname, const char *mode)
{
	static const struct {
		const char *name;
		__u32 flags;
	} modes[] = { { "native", XDP_FLAGS_DRV_MODE }, { "generic", XDP_FLAGS_SKB_MODE } };
	int ifindex = if_nametoindex(ifname), fd = -1, err = 0;
	int want_native = !strcmp(mode, "auto") || !strcmp(mode, "native");
	int want_generic = !strcmp(mode, "auto") || !strcmp(mode, "generic");

	if (!want_native && !want_generic)
		die(2, "usage", "attach mode is auto, native or generic");
	if (!ifindex)
		die(3, ifname, "no such interface");
	for (int i = 0; i < 2 && fd < 0; i++) {
		if ((i == 0 && !want_native) || (i == 1 && !want_generic))
			continue;
		LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = modes[i].flags);
		fd = bpf_link_create(a->prog_fd, ifindex, BPF_XDP, &opts);
		if (fd < 0)
			err = errno;
		else
			printf("ready %s %d\n", modes[i].name, ifindex);
	}
	if (fd < 0)
		die(4, "attach", strerror(err));
	/* fd stays open until exit: the link, and the attachment, live as long as this process. */
}

int main(int argc, char **argv)
{
	struct agent a = {};
	struct bpf_program *prog;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (argc != 2 && argc != 4)
		die(2, "usage", "quic-lb-xdp OBJECT [IFNAME auto|native|generic]");
	a.test_mode = argc == 2;
	if (a.test_mode) {
		cpu_set_t cpus;

		CPU_ZERO(&cpus);
		CPU_SET(sched_getcpu(), &cpus);
		sched_setaffinity(0, sizeof(cpus), &cpus);
	}
	a.obj = bpf_object__open_file(argv[1], NULL);
	if (!a.obj)
		die(2, "open", argv[1]);
	if (bpf_object__load(a.obj))
		die(2, "load (verifier log above)", argv[1]);
	prog = bpf_object__find_program_by_name(a.obj, "quic_lb");
	if (!prog)
		die(2, "load", "no program quic_lb in the object");
	a.prog_fd = bpf_program__fd(prog);
	a.ncpu = libbpf_num_possible_cpus();
	if (a.ncpu <= 0)
		die(2, "load", "cannot count the possible CPUs");
	if (a.test_mode)
		printf("ready test 0\n");
	else
		attach(&a, argv[2], argv[3]);
	fflush(stdout);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		char *rest = line;
		size_t wl;
		char *w;

		if (line[n - 1] == '\n')
			line[--n] = 0;
		w = word(&rest, &wl);
		if (!w)
			printf("error empty line\n");
		else if (wl == 6 && !strncmp(w, "update", 6))
			cmd_update(&a, rest);
		else if (wl == 4 && !strncmp(w, "fill", 4))
			cmd_fill(&a, rest);
		else if (wl == 6 && !strncmp(w, "delete", 6))
			cmd_delete(&a, rest);
		else if (wl == 3 && !strncmp(w, "sum", 3))
			cmd_sum(&a, rest);
		else if (wl == 3 && !strncmp(w, "run", 3))
			cmd_run(&a, rest);
		else if (wl == 4 && !strncmp(w, "info", 4))
			cmd_info(&a, rest);
		else if (wl == 7 && !strncmp(w, "reasons", 7) && !word(&rest, &wl))
			cmd_reasons();
		else
			printf("error unknown command (update, fill, delete, sum, info, reasons, run)\n");
		fflush(stdout);
	}
	return 0;
}
