#!/usr/bin/env bash
# Main job: set up, build, generate the demo workspace and open it in a real VS Code (code-server)
# with LoRA Lens installed. Prints the URL; stays in the foreground until Ctrl+C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/e2e-setup.sh
node scripts/build.mjs
rm -rf demo-workspace  # generated; rebuilt from scratch each time
node dist/cli.js demo demo-workspace
exec node scripts/serve.mjs demo-workspace
