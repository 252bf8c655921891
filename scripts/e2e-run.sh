#!/usr/bin/env bash
# Run the e2e suite: setup (idempotent) + node:test on test/e2e/*.e2e.mjs.
# Tests run on the project's Node (>= 20); only code-server runs on .e2e-tools' Node 24.
#
#   scripts/e2e-run.sh                      all e2e tests
#   scripts/e2e-run.sh test/e2e/smoke.e2e.mjs   selected files
#
# Env: E2E_SKIP_SETUP=1, E2E_SKIP_BUILD=1 (don't run `npm run build`/`npm run demo`), E2E_HEADED=1,
#      E2E_TIMEOUT_MS (per wait, default 30000). Artifacts: test-artifacts/e2e/ (screenshots, logs).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [ "${E2E_SKIP_SETUP:-0}" != 1 ]; then
  scripts/e2e-setup.sh
fi

has_script() { node -e "process.exit(require('./package.json').scripts?.['$1'] ? 0 : 1)"; }
if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  if has_script build; then echo "[e2e-run] npm run build"; npm run -s build; fi
  if [ ! -d demo-workspace ] && has_script demo; then echo "[e2e-run] npm run demo"; npm run -s demo; fi
fi

rm -rf test-artifacts/e2e
mkdir -p test-artifacts/e2e
if [ $# -gt 0 ]; then files=("$@"); else files=(test/e2e/*.e2e.mjs); fi
echo "[e2e-run] node $(node -v) --test ${files[*]}"
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
