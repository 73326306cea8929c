#!/usr/bin/env bash
# Builds the XDP program (xdp/quic_lb.bpf.c -> OUT_DIR/quic_lb.bpf.o) and its agent (xdp/agent.c
# -> OUT_DIR/quic-lb-xdp, linked with libbpf). OUT_DIR = the argument, default .tmp/xdp. Nothing
# built is committed.
#
#   xdp/build.sh [--optional] [OUT_DIR]
#
# Needs clang, cc and libbpf (scripts/system-deps.sh installs them as root). Without them it
# names what is missing and exits 1, or, with --optional (what `npm run build` passes), says
# that `datapath: xdp` will be unavailable and exits 0: the Node data path needs none of it.
set -euo pipefail
optional=0
if [ "${1:-}" = "--optional" ]; then
  optional=1
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.tmp/xdp}
cd "$root"
missing=()
command -v clang >/dev/null 2>&1 || missing+=("clang (Debian package clang)")
command -v cc >/dev/null 2>&1 || missing+=("cc (Debian package gcc)")
[ -e /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf headers (Debian package libbpf-dev)")
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$optional" -eq 1 ]; then
    echo "build:xdp: not built (datapath: xdp unavailable), missing: ${missing[*]}; scripts/system-deps.sh installs them" >&2
    exit 0
  fi
  echo "build:xdp: cannot build the XDP program, missing: ${missing[*]}; run scripts/system-deps.sh as root" >&2
  exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
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
cc -O2 -Wall -Werror -o "$out/quic-lb-xdp" xdp/agent.c -lbpf
echo "build:xdp: $out/quic_lb.bpf.o $out/quic-lb-xdp"
