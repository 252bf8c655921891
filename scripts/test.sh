#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is needed, builds, then runs unit tests
# and end-to-end tests in a real VS Code (code-server + headless Chromium) in ONE node:test run,
# so the closing summary covers everything. The @vscode/test-electron suite runs afterwards where a
# VS Code binary exists (it says so and skips otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/e2e-setup.sh
echo "test: build"
node scripts/build.mjs
npx tsc -p tsconfig.json
npx tsc -p webview/tsconfig.json
# The e2e tests run against the packaged extension as users install it (.vsix via code-server
# --install-extension, see test/e2e/harness.mjs); `npm start` keeps linking the development tree.
node scripts/package.mjs --target linux-x64
export E2E_VSIX=1
rm -rf demo-workspace  # generated; rebuilt from scratch each time
node dist/cli.js demo demo-workspace >/dev/null
mkdir -p test-artifacts
files=(out/test/unit/*.test.js test/e2e/*.e2e.mjs)
echo "test: node --test (${#files[@]} files)"
status=0
node --test --test-concurrency=1 --test-timeout=600000 "${files[@]}" || status=$?
node test/electron/runTest.mjs || status=$?
exit $status
