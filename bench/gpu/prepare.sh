#!/bin/bash
# Builds the pack that bench/gpu/run.sh needs on a GPU machine without Node or network:
#   bench/out/gpu-pack/ (git-ignored): node.xz (this machine's Node), ort.tar.xz (onnxruntime-node
#   + onnxruntime-common with the linux-x64 binding), debs/ (Debian's Vulkan loader and GL
#   dispatch libraries, fetched with apt-get download), gpuResident.js (esbuild bundle).
# Then on the device:  run(command="bash bench/gpu/run.sh", carry=["bench/out/gpu-pack"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
P=bench/out/gpu-pack
rm -rf "$P"; mkdir -p "$P/debs"
xz -T2 -6 -c "$(command -v node)" > "$P/node.xz"
tar -C node_modules -cJf "$P/ort.tar.xz" --exclude='onnxruntime-node/bin/napi-v*/darwin' --exclude='onnxruntime-node/bin/napi-v*/win32' --exclude='onnxruntime-node/bin/napi-v*/linux/arm64' onnxruntime-node onnxruntime-common
(cd "$P/debs" && apt-get download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2 2>&1 | tail -1)
npx esbuild bench/gpu/gpuResident.ts --bundle --platform=node --target=node20 --external:onnxruntime-node --outfile="$P/gpuResident.js" --log-level=warning
du -sh "$P" "$P"/*
