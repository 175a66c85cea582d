#!/usr/bin/env bash
# Builds .gpu/ (ignored; the `run` call carries it) for bench/gpu/device.sh, on this (CPU) machine:
#   .gpu/ort.tar.xz  libonnxruntime.so.1 of onnxruntime-node (its WebGPU EP; the Python wheels have none)
#   .gpu/debs/*.deb  Debian amd64 Vulkan/GL loaders (libvulkan1 alone gives VK_ERROR_INCOMPATIBLE_DRIVER: the
#                    NVIDIA ICD also needs libglvnd; shared/reference/gpu-webgpu.md)
# then checks that what a `run` call sends (tracked files + untracked files git does not ignore + .gpu) stays
# under the device's 64 MiB with MARGIN_MIB to spare, and fails otherwise.
#
#   bash bench/gpu/pack.sh            # from anywhere inside the repo
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
LIB=node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
DEST=.gpu
LIMIT_MIB=64
MARGIN_MIB=${MARGIN_MIB:-3}
DEBS="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"

[ -f "$LIB" ] || { echo "pack.sh: $LIB missing (npm install first)" >&2; exit 1; }
git check-ignore -q "$DEST/x" || { echo "pack.sh: $DEST/ is not ignored by git: it would travel twice" >&2; exit 1; }
# the WebGPU EP must be inside this build, or the whole kit measures nothing
grep -qaF WebGpuExecutionProvider "$LIB" || { echo "pack.sh: no WebGPU EP in $LIB" >&2; exit 1; }
mkdir -p "$DEST/debs"

if [ ! -s "$DEST/ort.tar.xz" ] || [ "$LIB" -nt "$DEST/ort.tar.xz" ]; then
  echo "pack.sh: compressing $(basename "$LIB") ($(du -h "$LIB" | cut -f1)) ..." >&2
  # one thread, low priority: this host's other cores are busy
  tar -C "$(dirname "$LIB")" -cf - "$(basename "$LIB")" | nice xz -6 -T1 > "$DEST/ort.tar.xz.tmp"
  mv "$DEST/ort.tar.xz.tmp" "$DEST/ort.tar.xz"
fi

missing=""
for p in $DEBS; do ls "$DEST/debs/${p}_"*_amd64.deb >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  # apt-get download needs the amd64 package lists; on an arm64 host use the device README's -oAPT::Architecture
  # recipe instead
  (cd "$DEST/debs" && apt-get download $missing) || {
    echo "pack.sh: apt-get download failed; trying /var/cache/apt/archives" >&2
    for p in $missing; do cp /var/cache/apt/archives/"${p}"_*_amd64.deb "$DEST/debs/" ; done
  }
fi
for p in $DEBS; do ls "$DEST/debs/${p}_"*_amd64.deb >/dev/null || { echo "pack.sh: $p.deb missing" >&2; exit 1; }; done

bytes() { du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1; }
tracked=$(git ls-files -z | bytes)
untracked=$(git ls-files -z --others --exclude-standard | bytes)
kit=$(du -sb "$DEST" | cut -f1)
total=$((tracked + untracked + kit))
limit=$(((LIMIT_MIB - MARGIN_MIB) * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo "tracked $(mib "$tracked") + untracked-not-ignored $(mib "$untracked") + $DEST $(mib "$kit") = $(mib "$total")" \
     "(limit ${LIMIT_MIB} MiB, margin ${MARGIN_MIB} MiB)"
ls -l "$DEST" "$DEST/debs"
if [ "$total" -gt "$limit" ]; then
  echo "pack.sh: $(mib "$total") exceeds $((LIMIT_MIB - MARGIN_MIB)) MiB: the run call would be refused" >&2
  exit 1
fi
