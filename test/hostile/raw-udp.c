/* raw-udp: the hostile harness's attacker and its octet counter (test/hostile, root only).
 *
 *   raw-udp send  --file PAYLOADS --dst IP:PORT [--src IP | --src-prefix NET/LEN --sources N]
 *                 [--sport N|random] --count N --rate PPS [--seed S]
 *   raw-udp count --if IFNAME --prefix NET/LEN [--prefix NET/LEN ...] [--port N]
 *
 * send: writes whole IP packets itself (IPv4: AF_INET SOCK_RAW + IP_HDRINCL; IPv6: AF_INET6
 * SOCK_RAW IPPROTO_RAW, which implies the header is included, with the UDP checksum computed over
 * the RFC 8200 §8.1 pseudo-header), so the source address and port are anything: port 0, 1, 65535
 * or random, one address or N distinct random hosts of a prefix. PAYLOADS (written by
 * test/hostile/native.ts): "QLBH", u32 count, then per record u16 length + the UDP payload; they
 * are sent in turn, datagram i from source i % N. Paced (sleeps when ahead of COUNT/RATE), bounded
 * by --count. Prints one JSON line: {"sent":N,"ip_octets":O,"payload_octets":P,"errors":E}.
 *
 * count: an AF_PACKET socket on IFNAME sees every IPv4/IPv6 packet arriving there before the
 * kernel routes it; it sums the packets whose destination is inside one of the prefixes (the
 * spoofed sources and forged victims, which the topology routes to this interface; --port: only
 * UDP datagrams to that destination port): packets, IP
 * octets, UDP payload octets, ICMP packets, IP octets per prefix, IP octets and packets per sending address
 * (first 32 addresses seen). stdin commands: "report" prints one JSON line, "reset" zeroes and prints {"ok":true}.
 * Kernel-level drops of this socket are reported as "socket_drops" (the accounting is only
 * trustworthy when that is 0).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "raw-udp: %s: %s\n", what, strerror(errno));
  exit(2);
}
static void usage(void) {
  fprintf(stderr, "usage: raw-udp send --file F --dst IP:PORT [--src IP | --src-prefix NET/LEN --sources N] [--sport N|random] --count N --rate PPS [--seed S]\n"
                  "       raw-udp count --if IFNAME --prefix NET/LEN [...] [--port N]\n");
  exit(2);
}

/* An address of either family as 16 octets (IPv4 in the first 4). */
typedef struct {
  int family;
  uint8_t a[16];
} addr_t;

static int parse_addr(const char *s, addr_t *out) {
  memset(out, 0, sizeof *out);
  if (inet_pton(AF_INET, s, out->a) == 1) return out->family = AF_INET, 0;
  if (inet_pton(AF_INET6, s, out->a) == 1) return out->family = AF_INET6, 0;
  return -1;
}

/* "NET/LEN" */
static int parse_prefix(const char *s, addr_t *net, int *len) {
  char buf[64];
  const char *slash = strchr(s, '/');
  if (!slash || (size_t)(slash - s) >= sizeof buf) return -1;
  memcpy(buf, s, (size_t)(slash - s));
  buf[slash - s] = 0;
  *len = atoi(slash + 1);
  if (parse_addr(buf, net)) return -1;
  return *len < 0 || *len > (net->family == AF_INET ? 32 : 128) ? -1 : 0;
}

static int in_prefix(const uint8_t *a, const addr_t *net, int len) {
  for (int i = 0; i < len; i++) {
    int bit = 0x80 >> (i % 8);
    if ((a[i / 8] & bit) != (net->a[i / 8] & bit)) return 0;
  }
  return 1;
}

/* xorshift64*: seeded, so a run can be repeated. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* Internet checksum (RFC 1071) over a sequence of parts. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += (uint32_t)p[n - 1] << 8;
  return sum;
}
static uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
  uint16_t len;
  uint8_t *data;
} payload_t;

static payload_t *read_payloads(const char *file, uint32_t *count) {
  FILE *f = fopen(file, "rb");
  if (!f) die(file);
  uint8_t head[8];
  if (fread(head, 1, 8, f) != 8 || memcmp(head, "QLBH", 4)) die("payload file header");
  *count = (uint32_t)head[4] << 24 | head[5] << 16 | head[6] << 8 | head[7];
  if (*count == 0 || *count > 1000000) die("payload count");
  payload_t *p = calloc(*count, sizeof *p);
  for (uint32_t i = 0; i < *count; i++) {
    uint8_t l[2];
    if (fread(l, 1, 2, f) != 2) die("payload length");
    p[i].len = (uint16_t)(l[0] << 8 | l[1]);
    if (p[i].len > 65000) die("payload too long");
    p[i].data = malloc(p[i].len + 1);
    if (fread(p[i].data, 1, p[i].len, f) != p[i].len) die("payload data");
  }
  fclose(f);
  return p;
}

/* Builds IP header + UDP header + payload into pkt; returns the packet length. */
static size_t build_packet(uint8_t *pkt, const addr_t *src, uint16_t sport, const addr_t *dst, uint16_t dport, const payload_t *pl) {
  size_t ulen = 8 + pl->len;
  uint8_t *udp;
  uint32_t sum = 0;
  size_t hl;
  if (dst->family == AF_INET) {
    hl = 20;
    memset(pkt, 0, hl);
    pkt[0] = 0x45;
    pkt[2] = (uint8_t)((hl + ulen) >> 8), pkt[3] = (uint8_t)(hl + ulen);
    pkt[6] = 0x40; /* DF */
    pkt[8] = 64, pkt[9] = IPPROTO_UDP;
    memcpy(pkt + 12, src->a, 4), memcpy(pkt + 16, dst->a, 4);
    uint16_t ic = csum_fold(csum_add(0, pkt, hl));
    pkt[10] = (uint8_t)(ic >> 8), pkt[11] = (uint8_t)ic;
    sum = csum_add(sum, pkt + 12, 8); /* pseudo-header: addresses, zero+proto, UDP length */
    sum += IPPROTO_UDP + (uint32_t)ulen;
  } else {
    hl = 40;
    memset(pkt, 0, hl);
    pkt[0] = 0x60;
    pkt[4] = (uint8_t)(ulen >> 8), pkt[5] = (uint8_t)ulen;
    pkt[6] = IPPROTO_UDP, pkt[7] = 64;
    memcpy(pkt + 8, src->a, 16), memcpy(pkt + 24, dst->a, 16);
    sum = csum_add(sum, pkt + 8, 32);
    sum += IPPROTO_UDP + (uint32_t)ulen;
  }
  udp = pkt + hl;
  udp[0] = (uint8_t)(sport >> 8), udp[1] = (uint8_t)sport;
  udp[2] = (uint8_t)(dport >> 8), udp[3] = (uint8_t)dport;
  udp[4] = (uint8_t)(ulen >> 8), udp[5] = (uint8_t)ulen;
  udp[6] = udp[7] = 0;
  memcpy(udp + 8, pl->data, pl->len);
  uint16_t uc = csum_fold(csum_add(sum, udp, ulen));
  if (uc == 0) uc = 0xffff; /* RFC 768: a computed zero is sent as all ones */
  udp[6] = (uint8_t)(uc >> 8), udp[7] = (uint8_t)uc;
  return hl + ulen;
}

static int cmd_send(int argc, char **argv) {
  const char *file = NULL, *dst_s = NULL, *src_s = NULL, *prefix_s = NULL, *sport_s = "random";
  long count = -1, sources = 1;
  double rate = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--file")) file = v;
    else if (!strcmp(a, "--dst")) dst_s = v;
    else if (!strcmp(a, "--src")) src_s = v;
    else if (!strcmp(a, "--src-prefix")) prefix_s = v;
    else if (!strcmp(a, "--sources")) sources = atol(v);
    else if (!strcmp(a, "--sport")) sport_s = v;
    else if (!strcmp(a, "--count")) count = atol(v);
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--seed")) rng_state ^= (uint64_t)strtoull(v, NULL, 10) * 0x9e3779b97f4a7c15ull;
    else usage();
  }
  if (!file || !dst_s || count < 1 || count > 10000000 || rate <= 0 || (!src_s == !prefix_s) || sources < 1 || sources > 1000000) usage();
  /* destination "IP:PORT" or "[IPv6]:PORT" */
  char host[64];
  const char *colon = strrchr(dst_s, ':');
  if (!colon || (size_t)(colon - dst_s) >= sizeof host) usage();
  size_t hl = (size_t)(colon - dst_s);
  const char *h = dst_s;
  if (h[0] == '[') h++, hl -= 2;
  memcpy(host, h, hl), host[hl] = 0;
  addr_t dst;
  if (parse_addr(host, &dst)) usage();
  uint16_t dport = (uint16_t)atoi(colon + 1);

  /* the source pool: one address, or `sources` random hosts of the prefix (may repeat when the prefix is small) */
  addr_t *pool = calloc((size_t)sources, sizeof *pool);
  if (src_s) {
    if (parse_addr(src_s, &pool[0])) usage();
    sources = 1;
  } else {
    addr_t net;
    int len;
    if (parse_prefix(prefix_s, &net, &len)) usage();
    int bits = (net.family == AF_INET ? 32 : 128);
    for (long s = 0; s < sources; s++) {
      pool[s] = net;
      for (int b = len; b < bits; b++) {
        int bit = 0x80 >> (b % 8);
        if (rnd() & 1) pool[s].a[b / 8] |= (uint8_t)bit;
        else pool[s].a[b / 8] &= (uint8_t)~bit;
      }
      if (net.family == AF_INET && bits - len >= 2 && (pool[s].a[3] == 0 || pool[s].a[3] == 255)) pool[s].a[3] = 1; /* not .0/.255 */
    }
  }
  if (pool[0].family != dst.family) usage();
  int fd = dst.family == AF_INET ? socket(AF_INET, SOCK_RAW, IPPROTO_RAW) : socket(AF_INET6, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) die("raw socket (root needed)");
  if (dst.family == AF_INET) {
    int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on)) die("IP_HDRINCL");
  }
  struct sockaddr_storage to;
  socklen_t tolen;
  memset(&to, 0, sizeof to);
  if (dst.family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&to;
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, dst.a, 4);
    tolen = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&to;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, dst.a, 16);
    tolen = sizeof *s6;
  }
  uint32_t npl;
  payload_t *pl = read_payloads(file, &npl);
  uint8_t *pkt = malloc(65536 + 64);
  long sent = 0, errors = 0;
  unsigned long long ip_octets = 0, payload_octets = 0;
  double t0 = now_s();
  for (long i = 0; i < count; i++) {
    double due = t0 + (double)i / rate; /* pacing: never ahead of i / rate */
    double now = now_s();
    if (due > now) {
      struct timespec ts = {(time_t)(due - now), (long)((due - now - (double)(time_t)(due - now)) * 1e9)};
      nanosleep(&ts, NULL);
    }
    uint16_t sport = !strcmp(sport_s, "random") ? (uint16_t)(1024 + rnd() % 64511) : (uint16_t)atoi(sport_s);
    const payload_t *p = &pl[i % npl];
    size_t n = build_packet(pkt, &pool[i % sources], sport, &dst, dport, p);
    if (sendto(fd, pkt, n, 0, (struct sockaddr *)&to, tolen) == (ssize_t)n) {
      sent++;
      ip_octets += n;
      payload_octets += p->len;
    } else {
      errors++;
    }
  }
  printf("{\"sent\":%ld,\"ip_octets\":%llu,\"payload_octets\":%llu,\"errors\":%ld,\"elapsed_ms\":%.0f}\n", sent, ip_octets, payload_octets, errors, (now_s() - t0) * 1000);
  return 0;
}

#define MAX_PREFIXES 8
#define MAX_SENDERS 32
static struct {
  unsigned long long packets, ip_octets, payload_octets, icmp;
  int senders;
  addr_t sender[MAX_SENDERS];
  unsigned long long sender_octets[MAX_SENDERS], sender_packets[MAX_SENDERS];
  unsigned long long prefix_octets[MAX_PREFIXES];
} st;
static int nprefix;

static void count_sender(const addr_t *a, unsigned long long n) {
  int i = 0;
  while (i < st.senders && memcmp(&st.sender[i], a, sizeof *a)) i++;
  if (i == MAX_SENDERS) return;
  if (i == st.senders) st.sender[st.senders++] = *a;
  st.sender_octets[i] += n;
  st.sender_packets[i]++;
}

static void report(int fd) {
  printf("{\"by_prefix\":[");
  for (int p = 0; p < nprefix; p++) printf("%s%llu", p ? "," : "", st.prefix_octets[p]);
  printf("],");
  struct tpacket_stats ps;
  socklen_t l = sizeof ps;
  static unsigned long long drops;
  if (!getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ps, &l)) drops += ps.tp_drops; /* reading resets the kernel's counters */
  printf("\"packets\":%llu,\"ip_octets\":%llu,\"payload_octets\":%llu,\"icmp\":%llu,\"socket_drops\":%llu,\"by_sender\":{", st.packets, st.ip_octets, st.payload_octets, st.icmp, drops);
  for (int i = 0; i < st.senders; i++) {
    char s[INET6_ADDRSTRLEN];
    inet_ntop(st.sender[i].family, st.sender[i].a, s, sizeof s);
    printf("%s\"%s\":%llu", i ? "," : "", s, st.sender_octets[i]);
  }
  printf("},\"by_sender_packets\":{");
  for (int i = 0; i < st.senders; i++) {
    char s[INET6_ADDRSTRLEN];
    inet_ntop(st.sender[i].family, st.sender[i].a, s, sizeof s);
    printf("%s\"%s\":%llu", i ? "," : "", s, st.sender_packets[i]);
  }
  printf("}}\n");
  fflush(stdout);
}

static int cmd_count(int argc, char **argv) {
  const char *ifname = NULL;
  long port = -1;
  addr_t net[MAX_PREFIXES];
  int plen[MAX_PREFIXES];
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--if")) ifname = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--prefix") && nprefix < MAX_PREFIXES) {
      if (parse_prefix(argv[i + 1], &net[nprefix], &plen[nprefix])) usage();
      nprefix++;
    } else usage();
  }
  if (!ifname || !nprefix) usage();
  int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL)); /* SOCK_DGRAM: link header removed */
  if (fd < 0) die("AF_PACKET socket (root needed)");
  int rcv = 32 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex(ifname)};
  if (!sll.sll_ifindex) die(ifname);
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll)) die("bind AF_PACKET");
  printf("READY\n");
  fflush(stdout);
  uint8_t buf[65536];
  char line[64];
  size_t linelen = 0;
  struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
  for (;;) {
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (pf[0].revents & POLLIN) {
      struct sockaddr_ll from;
      socklen_t fl = sizeof from;
      ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
      if (n > 0 && from.sll_pkttype != PACKET_OUTGOING) {
        addr_t src = {0}, dst = {0};
        int proto, hl;
        if ((buf[0] >> 4) == 4 && n >= 20) {
          src.family = dst.family = AF_INET;
          memcpy(src.a, buf + 12, 4), memcpy(dst.a, buf + 16, 4);
          proto = buf[9], hl = (buf[0] & 15) * 4;
        } else if ((buf[0] >> 4) == 6 && n >= 40) {
          src.family = dst.family = AF_INET6;
          memcpy(src.a, buf + 8, 16), memcpy(dst.a, buf + 24, 16);
          proto = buf[6], hl = 40;
        } else {
          continue;
        }
        if (port >= 0 && (proto != IPPROTO_UDP || n < hl + 8 || (long)(buf[hl + 2] << 8 | buf[hl + 3]) != port)) continue;
        for (int p = 0; p < nprefix; p++) {
          if (net[p].family != dst.family || !in_prefix(dst.a, &net[p], plen[p])) continue;
          st.packets++;
          st.ip_octets += (unsigned long long)n;
          st.prefix_octets[p] += (unsigned long long)n;
          if (proto == IPPROTO_UDP && n >= hl + 8) st.payload_octets += (unsigned long long)(n - hl - 8);
          if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) st.icmp++;
          count_sender(&src, (unsigned long long)n);
          break;
        }
      }
    }
    if (pf[1].revents & (POLLIN | POLLHUP)) {
      ssize_t r = read(0, line + linelen, sizeof line - 1 - linelen);
      if (r <= 0) return 0; /* stdin closed: the harness is gone */
      linelen += (size_t)r;
      char *nl;
      while ((nl = memchr(line, '\n', linelen))) {
        *nl = 0;
        if (!strcmp(line, "report")) report(fd);
        else if (!strcmp(line, "reset")) {
          memset(&st, 0, sizeof st);
          printf("{\"ok\":true}\n");
          fflush(stdout);
        }
        linelen -= (size_t)(nl + 1 - line);
        memmove(line, nl + 1, linelen);
      }
      if (linelen == sizeof line - 1) linelen = 0;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "send")) return cmd_send(argc, argv);
  if (!strcmp(argv[1], "count")) return cmd_count(argc, argv);
  usage();
  return 2;
}
