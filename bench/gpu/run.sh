#!/bin/bash
# GPU checks as ONE script (≤ 8 min) on a machine with a GPU and possibly no Node: unpacks the pack
# made by bench/gpu/prepare.sh (carried as bench/out/gpu-pack), the Vulkan loader from Debian's
# packages (no root needed: extracted with dpkg-deb), points Dawn at the NVIDIA Vulkan ICD and runs
# bench/gpu/gpuResident.ts for the CPU and WebGPU providers. Output also goes to $OUT/gpu.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
P=bench/out/gpu-pack
[ -f "$P/node.xz" ] || { echo "error: $P missing: run bench/gpu/prepare.sh here and carry bench/out/gpu-pack"; exit 2; }
W=$(mktemp -d)
xz -dc "$P/node.xz" > "$W/node" && chmod +x "$W/node"
mkdir -p "$W/nm" "$W/root" && tar -C "$W/nm" -xJf "$P/ort.tar.xz"
for d in "$P"/debs/*.deb; do dpkg-deb -x "$d" "$W/root"; done
export LD_LIBRARY_PATH="$W/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    [ -f "$f" ] && export VK_DRIVER_FILES="$f" && break
  done
fi
OUTF="${OUT:-$W}/gpu.txt"
{
  date -u; nvidia-smi -L 2>&1 | head -4; echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-none}"; "$W/node" --version
  NODE_PATH="$W/nm" timeout 420 "$W/node" "$P/gpuResident.js" 2>&1
  echo "exit $?"
} | tee "$OUTF"
