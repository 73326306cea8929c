/* udp-sink: recvmmsg-based backend sinks for the forwarding benchmark.
 *
 *   udp-sink --bind IP:PORT[,IP:PORT...] [--flows N] [--owners FILE] [--trial T] [--rcvbuf BYTES]
 *            [--per-flow] [--duration-ms MS]
 *
 * One socket per --bind endpoint; the endpoint's position is the backend index. Prints
 * `READY port,port,...` once bound. Every datagram: an optional PROXY v2 header is stripped
 * (12-octet signature, version/command, family, u16 length of the rest at octets 14-15), then
 * the native trailer (common.h) is read at the end. Counted: received (per backend, per flow),
 * wrong (a flow's datagram at a backend other than its owner: OWNERS holds one octet per flow,
 * the owning backend index, 255 = any, 254 = learn: the first backend that receives the flow in
 * this trial becomes its owner, for routers that choose a flow's backend themselves), corrupt (QUIC part not of the length sent, or a PROXY
 * header longer than the datagram), stale (another trial), foreign (no trailer), duplicates
 * (sequence numbers seen twice, below 2^24), one-way latency p50/p99 (send time in the trailer,
 * receive time per recvmmsg batch, both CLOCK_MONOTONIC). When a round brought 16 datagrams or
 * more it pauses 100 µs before polling again, so at high rates it wakes less often.
 *
 * Control: lines on stdin, `reset TRIAL [OWNERS_FILE]` (zero the counters, accept TRIAL only,
 * 0 = any; answers {"reset":TRIAL}) and `report` (one JSON line of the counters); SIGUSR1
 * prints the report too; SIGTERM, SIGINT, end of stdin or --duration-ms print it and exit.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SINKS 64
#define BATCH 64
#define DGRAM_MAX 2048
#define HIST_US 100000
#define SEQ_BITS (1u << 24)
#define OWNER_ANY 255
#define OWNER_LEARN 254

static const uint8_t PROXY_SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static volatile sig_atomic_t report_flag, stop_flag;
static void on_usr1(int sig) { (void)sig; report_flag = 1; }
static void on_stop(int sig) { (void)sig; stop_flag = 1; }

static int nsinks;
static uint32_t flows = 65536, trial;
static int per_flow_out;
static uint8_t *owners;
static uint64_t received, wrong, corrupt, stale, foreign, dups, per_backend[MAX_SINKS];
static uint32_t *per_flow, *hist, hist_over;
static uint8_t *seen;
static uint64_t max_seq;

static void reset_counters(void) {
  received = wrong = corrupt = stale = foreign = dups = max_seq = 0;
  memset(per_backend, 0, sizeof per_backend);
  memset(per_flow, 0, flows * sizeof *per_flow);
  memset(hist, 0, HIST_US * sizeof *hist);
  hist_over = 0;
  memset(seen, 0, SEQ_BITS / 8);
}

static int load_owners(const char *path) {
  memset(owners, 255, flows);
  if (!path || !*path) return 0;
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = fread(owners, 1, flows, f);
  fclose(f);
  (void)n;
  return 0;
}

static double percentile(double q) {
  uint64_t total = hist_over;
  for (uint32_t i = 0; i < HIST_US; i++) total += hist[i];
  if (total == 0) return -1;
  uint64_t rank = (uint64_t)((double)total * q);
  if (rank >= total) rank = total - 1;
  uint64_t acc = 0;
  for (uint32_t i = 0; i < HIST_US; i++) {
    acc += hist[i];
    if (acc > rank) return i;
  }
  return HIST_US;
}

static void report(void) {
  double p50 = percentile(0.5), p99 = percentile(0.99);
  uint32_t flows_seen = 0;
  for (uint32_t i = 0; i < flows; i++) flows_seen += per_flow[i] != 0;
  printf("{\"trial\":%u,\"received\":%llu,\"per_backend\":[", trial, (unsigned long long)received);
  for (int i = 0; i < nsinks; i++) printf("%s%llu", i ? "," : "", (unsigned long long)per_backend[i]);
  printf("],\"wrong\":%llu,\"corrupt\":%llu,\"stale\":%llu,\"foreign\":%llu,\"duplicates\":%llu,\"max_seq\":%llu,\"flows_seen\":%u",
         (unsigned long long)wrong, (unsigned long long)corrupt, (unsigned long long)stale, (unsigned long long)foreign,
         (unsigned long long)dups, (unsigned long long)max_seq, flows_seen);
  if (p50 < 0) printf(",\"p50_us\":null,\"p99_us\":null");
  else printf(",\"p50_us\":%.0f,\"p99_us\":%.0f", p50, p99);
  if (per_flow_out) {
    printf(",\"per_flow\":[");
    for (uint32_t i = 0; i < flows; i++) printf("%s%u", i ? "," : "", per_flow[i]);
    printf("]");
  }
  printf("}\n");
  fflush(stdout);
}

static void account(int sink, const uint8_t *p, size_t len, uint64_t now) {
  const uint8_t *q = p;
  size_t qlen = len;
  if (len >= 16 && !memcmp(p, PROXY_SIG, 12)) {
    size_t hl = 16 + get16(p + 14);
    if (hl > len) { corrupt++; return; }
    q = p + hl;
    qlen = len - hl;
  }
  if (qlen < NT_LEN) { foreign++; return; }
  const uint8_t *t = q + qlen - NT_LEN;
  if (get16(t) != NT_MAGIC) { foreign++; return; }
  if (trial != 0 && get16(t + 2) != trial) { stale++; return; }
  uint32_t flow = get32(t + 4), seq = get32(t + 8);
  received++;
  per_backend[sink]++;
  if (get16(t + 12) != qlen) corrupt++;
  if (flow < flows) {
    per_flow[flow]++;
    if (owners[flow] == OWNER_LEARN) owners[flow] = (uint8_t)sink;
    else if (owners[flow] != OWNER_ANY && owners[flow] != sink) wrong++;
  }
  if (seq < SEQ_BITS) {
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (seen[seq >> 3] & bit) dups++;
    seen[seq >> 3] |= bit;
  }
  if (seq > max_seq) max_seq = seq;
  uint64_t sent_ns = get64(t + 16);
  if (now >= sent_ns) {
    uint64_t us = (now - sent_ns) / 1000;
    if (us < HIST_US) hist[us]++;
    else hist_over++;
  }
}

/* One stdin line; returns -1 at end of input. */
static int control(char *buf, size_t *fill, size_t cap) {
  ssize_t n = read(0, buf + *fill, cap - 1 - *fill);
  if (n == 0) return -1;
  if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
  *fill += (size_t)n;
  buf[*fill] = 0;
  char *nl;
  while ((nl = strchr(buf, '\n'))) {
    *nl = 0;
    unsigned t;
    char path[1024] = "";
    if (!strncmp(buf, "reset", 5)) {
      int k = sscanf(buf + 5, "%u %1023s", &t, path);
      if (k >= 1) {
        trial = t & 0xffff;
        if (load_owners(k == 2 ? path : NULL)) fprintf(stderr, "udp-sink: cannot read owners %s\n", path);
        reset_counters();
        printf("{\"reset\":%u}\n", trial);
        fflush(stdout);
      }
    } else if (!strcmp(buf, "report")) {
      report();
    }
    size_t used = (size_t)(nl + 1 - buf);
    memmove(buf, nl + 1, *fill - used + 1);
    *fill -= used;
  }
  if (*fill >= cap - 1) *fill = 0;
  return 0;
}

int main(int argc, char **argv) {
  const char *binds = NULL, *owners_path = NULL;
  long rcvbuf = 4 << 20, duration_ms = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--per-flow")) { per_flow_out = 1; continue; }
    if (i + 1 >= argc) goto usage;
    const char *v = argv[++i];
    if (!strcmp(a, "--bind")) binds = v;
    else if (!strcmp(a, "--flows")) flows = (uint32_t)atol(v);
    else if (!strcmp(a, "--owners")) owners_path = v;
    else if (!strcmp(a, "--trial")) trial = (uint32_t)atol(v) & 0xffff;
    else if (!strcmp(a, "--rcvbuf")) rcvbuf = atol(v);
    else if (!strcmp(a, "--duration-ms")) duration_ms = atol(v);
    else goto usage;
  }
  if (!binds || flows == 0 || flows > (1u << 24)) goto usage;
  owners = malloc(flows);
  per_flow = calloc(flows, sizeof *per_flow);
  hist = calloc(HIST_US, sizeof *hist);
  seen = calloc(SEQ_BITS / 8, 1);
  if (load_owners(owners_path)) die("owners");

  struct pollfd pfd[MAX_SINKS + 1];
  char bindbuf[4096];
  snprintf(bindbuf, sizeof bindbuf, "%s", binds);
  char ready[1024] = "READY ";
  for (char *save, *tok = strtok_r(bindbuf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (nsinks == MAX_SINKS) goto usage;
    struct sockaddr_in sa;
    if (parse_endpoint(tok, &sa)) { fprintf(stderr, "udp-sink: bad --bind %s\n", tok); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int rb = (int)rcvbuf;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) die("bind");
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(ready + strlen(ready), sizeof ready - strlen(ready), "%s%u", nsinks ? "," : "", ntohs(sa.sin_port));
    pfd[nsinks].fd = fd;
    pfd[nsinks].events = POLLIN;
    nsinks++;
  }
  pfd[nsinks].fd = 0;
  pfd[nsinks].events = POLLIN;
  printf("%s\n", ready);
  fflush(stdout);

  struct sigaction sa_usr = { .sa_handler = on_usr1 }, sa_stop = { .sa_handler = on_stop };
  sigaction(SIGUSR1, &sa_usr, NULL); /* no SA_RESTART: poll returns EINTR */
  sigaction(SIGTERM, &sa_stop, NULL);
  sigaction(SIGINT, &sa_stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  static uint8_t bufs[BATCH][DGRAM_MAX];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (int b = 0; b < BATCH; b++) {
    iov[b].iov_base = bufs[b];
    iov[b].iov_len = DGRAM_MAX;
    memset(&msgs[b], 0, sizeof msgs[b]);
    msgs[b].msg_hdr.msg_iov = &iov[b];
    msgs[b].msg_hdr.msg_iovlen = 1;
  }
  char line[4096];
  size_t fill = 0;
  int stdin_open = 1;
  const uint64_t t0 = mono_ns();
  while (!stop_flag) {
    if (report_flag) { report_flag = 0; report(); }
    if (duration_ms >= 0 && mono_ns() - t0 >= (uint64_t)duration_ms * 1000000ull) break;
    int r = poll(pfd, (nfds_t)(nsinks + stdin_open), 50);
    if (r < 0) { if (errno == EINTR) continue; die("poll"); }
    if (r == 0) continue;
    int got = 0;
    for (int i = 0; i < nsinks; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      /* Drain in rounds, at most 16 batches before the other sockets get their turn. */
      for (int round = 0; round < 16; round++) {
        int k = recvmmsg(pfd[i].fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (k <= 0) break;
        got += k;
        uint64_t now = mono_ns();
        for (int b = 0; b < k; b++) {
          if (msgs[b].msg_hdr.msg_flags & MSG_TRUNC) { corrupt++; continue; }
          account(i, bufs[b], msgs[b].msg_len, now);
        }
        if (k < BATCH) break;
      }
    }
    /* Under load, let datagrams gather for 100 µs instead of waking for every few (fewer
       wakeups: the CPU goes to the router under test). At low rates (latency trials) no pause. */
    if (got >= 16) {
      struct timespec ts = { 0, 100000 };
      nanosleep(&ts, NULL);
    }
    if (stdin_open && (pfd[nsinks].revents & (POLLIN | POLLHUP))) {
      if (control(line, &fill, sizeof line) < 0) {
        stdin_open = 0;
        if (duration_ms < 0) break; /* the controlling process went away */
      }
    }
  }
  report();
  return 0;
usage:
  fprintf(stderr, "usage: udp-sink --bind IP:PORT[,IP:PORT...] [--flows N] [--owners FILE] [--trial T] [--rcvbuf BYTES] [--per-flow] [--duration-ms MS]\n");
  return 2;
}
