#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks drive for real (third-party QUIC
# clients: ngtcp2's gtlsclient and Chromium for test/e2e/chromium.test.ts, Redis, nginx's UDP
# proxy, BIRD, iproute2, a C compiler for the raw-socket tools of test/hostile and
# bench/native, clang and libbpf's headers for the XDP program in xdp/ and its agent, ethtool for
# the native-XDP fleet test and bench:xdp), when they are missing.
# As root it installs them with apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

# binary -> Debian package
declare -A need=(
  [gtlsclient]=ngtcp2-client
  [chromium]=chromium
  [redis-server]=redis-server
  [nginx]=nginx
  [bird]=bird2
  [ip]=iproute2
  [openssl]=openssl
  [curl]=curl
  [systemd-analyze]=systemd
  [cc]=gcc
  [clang]=clang
  [ethtool]=ethtool
)
missing=()
for bin in "${!need[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${need[$bin]}")
done
# nginx's UDP proxy lives in a module package; nginx alone is not enough.
if command -v nginx >/dev/null 2>&1 && ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then
  missing+=(libnginx-mod-stream)
fi
# libbpf-dev has no binary: its headers build the XDP program and its test runner (-lbpf).
[ -e /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
# The C tools include libc headers (gcc only recommends them).
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
# libnginx-mod-stream always goes with nginx.
for p in "${missing[@]}"; do [ "$p" = nginx ] && missing+=(libnginx-mod-stream) && break; done
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need these system packages: ${missing[*]}" >&2
  echo "Install them as root with:" >&2
  echo "  $cmd" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
# Keep package post-install scripts from starting system services (nginx on :80, redis on
# :6379): tests start their own instances on free loopback ports and stop them by PID.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
