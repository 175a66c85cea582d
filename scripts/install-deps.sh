#!/usr/bin/env bash
# Installs what the service and the tests need on a fresh Debian machine: Debian packages that are missing
# (ffmpeg for video; Debian's PyTorch stack for the trainer, with OpenBLAS — without it torch falls back to the
# reference BLAS, ~25x slower) and the npm dependencies (onnxruntime-node's CUDA download skipped: CPU binaries ship
# in the npm package; the CUDA Docker image sets ONNXRUNTIME_NODE_INSTALL=cuda12 instead).
# Usage: scripts/install-deps.sh [service|all]
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
# fonts-dejavu-core: the text of the CLI report charts (tick labels, legends; src/preprocess/image/sharp.ts).
# curl: the README examples, run as printed by test/docs/readme-examples.test.ts.
pkgs=(ffmpeg fonts-dejavu-core curl)
if [ "$mode" = all ]; then
  pkgs+=(python3-torch python3-onnx python3-numpy python3-pil python3-sentencepiece python3-jsonschema python3-pytest libopenblas0-pthread)
  # promtool (checks and unit-tests the Prometheus config and alert rules in test/deploy/). kubectl (kustomize
  # rendering in test/deploy/k8s.test.ts) comes with this machine image; Debian's kubernetes-client is too old.
  pkgs+=(prometheus)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "$mode" = all ]; then
  # The image test (test/deploy/docker-image.test.ts) runs its own dockerd and makes base images with debootstrap.
  # Only where no Docker engine is installed at all (Debian's docker.io conflicts with Docker's own packages).
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund
