#!/usr/bin/env bash
# Builds the XDP program (xdp/quic_lb.bpf.c) into OUT_DIR/quic_lb.bpf.o, OUT_DIR = $1 or .tmp/xdp
# (never committed). Usage: scripts/build-xdp.sh [OUT_DIR]
# Needs clang and libbpf's headers (scripts/system-deps.sh installs them as root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.tmp/xdp}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
missing=()
command -v clang >/dev/null 2>&1 || missing+=("clang (Debian package clang)")
[ -e /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf headers (Debian package libbpf-dev)")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build:xdp: cannot build the XDP program, missing: ${missing[*]}; run scripts/system-deps.sh as root" >&2
  exit 1
fi
# The asm/ headers the kernel UAPI headers include live under the host triplet on Debian.
triplet=$(cc -print-multiarch 2>/dev/null || true)
inc=()
[ -n "$triplet" ] && [ -d "/usr/include/$triplet" ] && inc=(-I "/usr/include/$triplet")
clang -O2 -g -target bpf -Wall -Werror "${inc[@]}" -c xdp/quic_lb.bpf.c -o "$out/quic_lb.bpf.o"
echo "build:xdp: $out/quic_lb.bpf.o"
