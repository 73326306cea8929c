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
# The Maglev map holds the largest table the config accepts: MAX_MAGLEV_TABLE_SIZE of
# src/lb/maglev.ts (fallback.tableSize's limit) is its one source.
maglev_max=$(sed -n 's/^export const MAX_MAGLEV_TABLE_SIZE = \([0-9][0-9]*\);.*/\1/p' src/lb/maglev.ts)
if [ -z "$maglev_max" ]; then
  echo "build:xdp: cannot read MAX_MAGLEV_TABLE_SIZE from src/lb/maglev.ts" >&2
  exit 1
fi
clang -O2 -g -target bpf -Wall -Werror "${inc[@]}" -DQLB_MAX_MAGLEV_TABLE="$maglev_max" \
  -c xdp/quic_lb.bpf.c -o "$out/quic_lb.bpf.o"
echo "build:xdp: $out/quic_lb.bpf.o"
