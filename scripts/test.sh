#!/usr/bin/env bash
# `npm test`: system packages (installed when missing, as root), build, types, lint, then vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
npm run --silent build
npm run --silent typecheck
npm run --silent lint
npx vitest run "$@"
