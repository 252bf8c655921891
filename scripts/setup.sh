#!/usr/bin/env bash
# Installs what LoRA Lens needs to build and run its unit tests, on a fresh Debian machine with
# Node 20 + npm. Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# onnxruntime-node's postinstall would fetch CUDA binaries from outside the npm registry, which
# fails here: skip it (the CPU and WebGPU providers ship inside the npm package).
export ONNXRUNTIME_NODE_INSTALL=skip
export ONNXRUNTIME_NODE_INSTALL_CUDA=skip
# node-llama-cpp (dev dependency, the llama.cpp judge of our GGUF files) ships prebuilt binaries in
# @node-llama-cpp/<platform> npm packages; its postinstall could otherwise fetch and build llama.cpp
# from GitHub when none fits. NODE_LLAMA_CPP_SKIP_DOWNLOAD is its documented switch to never do that.
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

stamp=node_modules/.lora-lens-setup
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  touch "$stamp"
fi

# Python peers for benchmarks and fixture generation (not needed by the tests themselves, so CI
# skips them).
if [ "${LORA_LENS_SKIP_PYTHON:-${CI:+1}}" != 1 ] && ! /usr/bin/python3 -c 'import numpy, scipy' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install python3-numpy python3-scipy python3-torch"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy python3-scipy python3-torch >/dev/null) \
      || echo "setup: warning: could not install the Python peers (benchmarks will not run)"
  fi
fi
