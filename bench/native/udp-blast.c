/* udp-blast: paced UDP sender for the forwarding benchmark (sendmmsg in batches).
 *
 *   udp-blast --file PACKETS --dest IP:PORT --rate PPS (--duration-ms MS | --count N)
 *             [--src IP[,IP...]] [--sockets K] [--batch B] [--trial T] [--sndbuf BYTES] [--tick-us US]
 *
 * PACKETS (written by the TypeScript harness, bench/native/native.ts): "QLBP", u32 count, then
 * `count` records of u16 length, u32 flow, `length` octets (a complete QUIC datagram whose last
 * 24 octets are the trailer, see common.h). Flow f is sent from socket f % K (K sockets bound to
 * the source addresses in turn, kernel-chosen ports, connected to DEST), so every flow keeps its
 * 4-tuple. Sending is paced: whenever elapsed * rate datagrams are due, batches of at most B go
 * out with one sendmmsg per socket turn; when nothing is due it sleeps (at least --tick-us, default
 * 200 µs, so it never spins). Each datagram is copied into a batch slot and gets its trailer (trial, flow, sequence
 * number 0.., length, send time) just before the batch leaves.
 * Prints one JSON line at the end: {"sent":N,"attempted":A,"elapsed_ms":X,"send_errors":E,"batches":M,"cpu_us":C}
 * (C: this process's user + system CPU, getrusage).
 * `sent` counts datagrams the kernel accepted; with --count it is exactly N unless errors.
 */
#include "common.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  uint8_t *data;
  uint32_t len;
  uint32_t flow;
} record_t;

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }

static void usage(void) {
  fprintf(stderr, "usage: udp-blast --file PACKETS --dest IP:PORT --rate PPS (--duration-ms MS | --count N) [--src IP,...] [--sockets K] [--batch B] [--trial T] [--sndbuf BYTES] [--tick-us US]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *file = NULL, *dest = NULL, *src = "127.0.0.1";
  double rate = 0;
  long duration_ms = -1, count = -1, sockets = 16, batch = 32, trial = 1, sndbuf = 4 << 20, tick_us = 200;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--file")) file = v;
    else if (!strcmp(a, "--dest")) dest = v;
    else if (!strcmp(a, "--src")) src = v;
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--duration-ms")) duration_ms = atol(v);
    else if (!strcmp(a, "--count")) count = atol(v);
    else if (!strcmp(a, "--sockets")) sockets = atol(v);
    else if (!strcmp(a, "--batch")) batch = atol(v);
    else if (!strcmp(a, "--trial")) trial = atol(v);
    else if (!strcmp(a, "--sndbuf")) sndbuf = atol(v);
    else if (!strcmp(a, "--tick-us")) tick_us = atol(v);
    else usage();
  }
  if (!file || !dest || rate <= 0 || (duration_ms < 0 && count < 0) || sockets < 1 || sockets > 4096 || batch < 1 || batch > 1024 || tick_us < 1 || tick_us > 100000) usage();
  if (count < 0) count = (long)(rate * (double)duration_ms / 1000.0);

  /* Packets file. */
  FILE *f = fopen(file, "rb");
  if (!f) die("open packets");
  uint8_t hdr[8];
  if (fread(hdr, 1, 8, f) != 8 || memcmp(hdr, "QLBP", 4)) { fprintf(stderr, "udp-blast: bad packets file\n"); return 2; }
  uint32_t nrec = get32(hdr + 4);
  if (nrec == 0) { fprintf(stderr, "udp-blast: no packets\n"); return 2; }
  record_t *recs = calloc(nrec, sizeof *recs);
  for (uint32_t r = 0; r < nrec; r++) {
    uint8_t rh[6];
    if (fread(rh, 1, 6, f) != 6) { fprintf(stderr, "udp-blast: truncated packets file\n"); return 2; }
    recs[r].len = get16(rh);
    recs[r].flow = get32(rh + 2);
    if (recs[r].len < NT_LEN) { fprintf(stderr, "udp-blast: record %u shorter than the trailer\n", r); return 2; }
    recs[r].data = malloc(recs[r].len);
    if (fread(recs[r].data, 1, recs[r].len, f) != recs[r].len) { fprintf(stderr, "udp-blast: truncated packets file\n"); return 2; }
    uint8_t *t = recs[r].data + recs[r].len - NT_LEN;
    put16(t, NT_MAGIC);
    put16(t + 2, (uint32_t)trial & 0xffff);
    put32(t + 4, recs[r].flow);
    put16(t + 8 + 4, recs[r].len);
    put16(t + 14, 0);
  }
  fclose(f);

  /* Sockets: K, bound to the source addresses in turn, connected to the destination. */
  struct sockaddr_in dst;
  if (parse_endpoint(dest, &dst)) { fprintf(stderr, "udp-blast: bad --dest %s\n", dest); return 2; }
  char srcbuf[4096];
  snprintf(srcbuf, sizeof srcbuf, "%s", src);
  struct in_addr srcs[256];
  int nsrc = 0;
  for (char *save, *tok = strtok_r(srcbuf, ",", &save); tok && nsrc < 256; tok = strtok_r(NULL, ",", &save)) {
    if (inet_pton(AF_INET, tok, &srcs[nsrc]) != 1) { fprintf(stderr, "udp-blast: bad --src %s\n", tok); return 2; }
    nsrc++;
  }
  if (nsrc == 0) usage();
  int *fds = calloc((size_t)sockets, sizeof *fds);
  for (long s = 0; s < sockets; s++) {
    fds[s] = socket(AF_INET, SOCK_DGRAM, 0);
    if (fds[s] < 0) die("socket");
    int sb = (int)sndbuf;
    setsockopt(fds[s], SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = 0, .sin_addr = srcs[s % nsrc] };
    if (bind(fds[s], (struct sockaddr *)&me, sizeof me)) die("bind");
    if (connect(fds[s], (struct sockaddr *)&dst, sizeof dst)) die("connect");
  }

  /* Records grouped by socket (flow % K); each socket cycles through its own list. */
  uint32_t **lists = calloc((size_t)sockets, sizeof *lists);
  uint32_t *lens = calloc((size_t)sockets, sizeof *lens);
  uint32_t *pos = calloc((size_t)sockets, sizeof *pos);
  for (long s = 0; s < sockets; s++) lists[s] = malloc(nrec * sizeof(uint32_t));
  for (uint32_t r = 0; r < nrec; r++) {
    long s = (long)(recs[r].flow % (uint32_t)sockets);
    lists[s][lens[s]++] = r;
  }
  long active = 0;
  long *order = calloc((size_t)sockets, sizeof *order);
  for (long s = 0; s < sockets; s++) if (lens[s]) order[active++] = s;

  /* A record may appear several times in one batch (few flows per socket): each datagram is
     copied into its own slot so its sequence number is its own. */
  uint32_t maxlen = 0;
  for (uint32_t r = 0; r < nrec; r++) if (recs[r].len > maxlen) maxlen = recs[r].len;
  uint8_t *slots = malloc((size_t)batch * maxlen);
  struct mmsghdr *msgs = calloc((size_t)batch, sizeof *msgs);
  struct iovec *iov = calloc((size_t)batch, sizeof *iov);
  for (long b = 0; b < batch; b++) {
    msgs[b].msg_hdr.msg_iov = &iov[b];
    msgs[b].msg_hdr.msg_iovlen = 1;
  }

  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  uint64_t sent = 0, errors = 0, batches = 0, seq = 0;
  long turn = 0;
  const uint64_t t0 = mono_ns();
  const double per_ns = rate / 1e9;
  while (seq < (uint64_t)count && !stop_flag) {
    uint64_t now = mono_ns();
    uint64_t due = (uint64_t)((double)(now - t0) * per_ns) + 1;
    if (due > (uint64_t)count) due = (uint64_t)count;
    if (due <= seq) {
      /* Ahead of schedule: sleep until the next datagram is due, but at least one tick (never
         spin: a spinning sender would take a core from the router under test) and at most 1 ms.
         At high rates the datagrams due after a tick leave together, in batches. */
      double wait_ns = ((double)(seq + 1) / per_ns) - (double)(now - t0);
      if (wait_ns > 1e6) wait_ns = 1e6;
      if (wait_ns < (double)tick_us * 1000.0) wait_ns = (double)tick_us * 1000.0;
      struct timespec ts = { 0, (long)wait_ns };
      nanosleep(&ts, NULL);
      continue;
    }
    uint64_t n = due - seq;
    if (n > (uint64_t)batch) n = (uint64_t)batch;
    long s = order[turn];
    turn = (turn + 1) % active;
    for (uint64_t b = 0; b < n; b++) {
      record_t *r = &recs[lists[s][pos[s]]];
      pos[s] = (pos[s] + 1) % lens[s];
      uint8_t *slot = slots + b * maxlen;
      memcpy(slot, r->data, r->len);
      uint8_t *t = slot + r->len - NT_LEN;
      put32(t + 8, (uint32_t)(seq + b));
      put64(t + 16, now);
      iov[b].iov_base = slot;
      iov[b].iov_len = r->len;
    }
    /* A datagram the kernel refuses (ENOBUFS, ECONNREFUSED) is counted and skipped; the same
       sequence numbers are not re-sent, so loss shows at the sink. */
    uint64_t done = 0;
    while (done < n) {
      int k = sendmmsg(fds[s], msgs + done, (unsigned)(n - done), 0);
      if (k < 0) {
        if (errno == EINTR) continue;
        errors++;
        done++;
        continue;
      }
      done += (uint64_t)k;
      sent += (uint64_t)k;
    }
    seq += n;
    batches++;
  }
  double elapsed_ms = (double)(mono_ns() - t0) / 1e6;
  /* Own CPU (user + system, including the loopback delivery the kernel does inside sendmmsg). */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
  printf("{\"sent\":%llu,\"attempted\":%llu,\"elapsed_ms\":%.3f,\"send_errors\":%llu,\"batches\":%llu,\"cpu_us\":%.0f}\n",
         (unsigned long long)sent, (unsigned long long)seq, elapsed_ms, (unsigned long long)errors, (unsigned long long)batches, cpu_us);
  for (long s2 = 0; s2 < sockets; s2++) close(fds[s2]);
  return 0;
}
