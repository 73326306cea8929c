/* Shared definitions of the native bench tools (udp-blast, udp-sink).
 *
 * Native trailer: the last 24 octets of every datagram (big endian), at the end so a sink finds
 * it behind any encapsulation header:
 *   -24 magic u16 (0xB16B) | -22 trial u16 | -20 flow u32 | -16 seq u32 | -12 length u16
 *   | -10 reserved u16 | -8 send time u64 (CLOCK_MONOTONIC ns)
 * `length` is the datagram's size as sent, so the sink can tell whether the QUIC part behind a
 * PROXY v2 header arrived untouched.
 */
#ifndef QLB_BENCH_COMMON_H
#define QLB_BENCH_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NT_LEN 24
#define NT_MAGIC 0xB16Bu

static inline uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static inline uint32_t get16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t get32(const uint8_t *p) { return (get16(p) << 16) | get16(p + 2); }
static inline uint64_t get64(const uint8_t *p) { return ((uint64_t)get32(p) << 32) | get32(p + 4); }

/* "a.b.c.d:port" -> sockaddr_in; returns 0 on success. */
static inline int parse_endpoint(const char *s, struct sockaddr_in *out) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) return -1;
  out->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static inline void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(2);
}

#endif
