#!/usr/bin/env bash
# `npm test`: system packages (installed when missing, as root), build, types, lint, then vitest.
# Ends with "N passed, N failed, N skipped" and a line per failed test (scripts/test-summary.js).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
npm run --silent build
npm run --silent typecheck
npm run --silent lint
mkdir -p .tmp
rm -f .tmp/vitest-*.json
status=0
run() { # run <report name> <vitest args...>
  local report=".tmp/vitest-$1.json"
  shift
  npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
}
if [ "$#" -gt 0 ]; then
  run report "$@"
else
  # The fleet tests (network namespaces, real QUIC downloads through two LBs, health checks with
  # sub-second timeouts) run one file at a time after the rest, so the CPU-heavy tests of the
  # first pass do not starve them on a 2-core machine.
  run report --exclude 'test/netns/**'
  run fleet test/netns --no-file-parallelism
  # The hostile-internet cases (network namespaces, raw sockets, spoofed sources) need root; CI
  # runs as root. Their files end in .hostile.ts, so the runs above never include them.
  if [ "$(id -u)" -eq 0 ]; then
    run hostile --config test/hostile/vitest.config.ts
  else
    echo "test:hostile not run: it needs root (network namespaces, raw sockets); CI runs it" >&2
  fi
fi
node scripts/test-summary.js .tmp/vitest-report.json .tmp/vitest-fleet.json .tmp/vitest-hostile.json
exit "$status"
