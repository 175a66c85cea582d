#!/usr/bin/env bash
# GPU benchmark of issue 13 item 6, run ON THE GPU MACHINE from the repo root: the default model and a
# full-width model (reduced depth) through ONNX Runtime's WebGPU EP, tokens/s against the CPU EP (16 cores) and
# against PyTorch on the same GPU. No Node.js there: bench/gpu/ort_capi.py drives onnxruntime-node's
# libonnxruntime.so.1 (which holds the WebGPU EP, Dawn on Vulkan) from Python.
#
# How a session with a GPU machine runs it (one call; ~5 min expected, hard stop at DEADLINE_S):
#   1. here, on the CPU machine:   bash bench/gpu/pack.sh        (writes the ignored .gpu/, checks the 64 MiB)
#   2. the device tool's run call:
#        run(command="bash bench/gpu/device.sh", carry=[".gpu"], timeout_s=540)
#   3. results: the files under files_at (summary.md first), and the summary at the end of output_tail; then
#      give_back (a second full run does not fit the 15 device minutes once a machine start is paid).
#
# Steps, each under its own `timeout`, each allowed to fail without stopping the rest:
#   setup     Vulkan/GL loaders (dpkg -x to /, ldconfig), VK_DRIVER_FILES, ORT library unpacked to /tmp/ort
#   default   tokens.py, default model (models/ixc-reward-tiny/1), CPU EP vs WebGPU EP, node placement
#   torch     torch_tokens.py on cuda: default config + full width at 2 and 4 layers (fp32/bf16, eager/sdpa) and
#             at the published 32 layers (bf16, sdpa: the figure a CUDA deployment would give)
#   fw-eager  export_full_width.py (2 layers, opset-17 eager attention, fp32, external data) + tokens.py
#   fw-fused  the same with com.microsoft GroupQueryAttention (import-hf's default graph), if time is left
# $OUT (at most 8 files come back): summary.md log.txt tokens-default.json torch.json export.jsonl
#   tokens-fw-eager.json tokens-fw-fused.json (tokens-fw-eager-v32k.json only if WebGPU refused the full vocab)
# DRY_RUN=1 OUT=/tmp/x FW_TMP=/tmp bash bench/gpu/device.sh   runs the same flow small on a CPU machine
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
KIT=${KIT:-.gpu}
PY=${PY:-python3}
DEADLINE_S=${DEADLINE_S:-480}   # the run call's 540 s, less a margin for the summary and the transfers
FW_LAYERS=${FW_LAYERS:-2}
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
say() { echo "[device.sh $(elapsed)s] $*" | tee -a "$LOG"; }

# step NAME CAP_S CMD...: runs CMD under timeout min(CAP_S, time left), stderr and stdout into the log
step() {
  local name=$1 cap=$2; shift 2
  local left=$((DEADLINE_S - $(elapsed)))
  if [ "$left" -lt 30 ]; then say "SKIP $name: ${left}s left"; return 1; fi
  local t=$((cap < left ? cap : left))
  say "START $name (timeout ${t}s)"
  timeout -k 10 "$t" "$@" >>"$LOG" 2>&1
  local rc=$?
  say "END $name rc=$rc"
  return $rc
}

[ -s "$KIT/ort.tar.xz" ] || { say "no $KIT/ort.tar.xz: run bash bench/gpu/pack.sh on the CPU machine and carry .gpu"; exit 2; }

# DRY_RUN=1: the same flow on a CPU machine, small and quick, touching nothing outside the repo and $OUT (checks
# this script before device minutes are spent on it)
DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ]; then
  TOKENS_ARGS="--shapes 1x32,2x64 --warmup 1 --runs 2"; FW_TOKENS_ARGS="--shapes-for cpu=1x32"
  TORCH_ARGS="--device cpu --quick"; FW_ARGS="--divisor 16"
else
  TOKENS_ARGS=""; FW_TOKENS_ARGS="--shapes-for cpu=1x256,8x512"
  TORCH_ARGS="--device cuda --configs default,full --full-layers 2,4,32:bf16:sdpa --dtypes fp32,bf16"
  TORCH_ARGS="$TORCH_ARGS --attention eager,sdpa --warmup 2 --runs 6 --max-seconds 8"
  FW_ARGS=""
fi

# ---------------------------------------------------------------------------------------------------- setup
ORT_DIR=/tmp/ort
if [ "$DRY_RUN" != 1 ]; then
  for f in "$KIT"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
else
  ORT_DIR=$OUT/.ort
fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mkdir -p "$ORT_DIR"
if command -v xz >/dev/null; then xz -dc "$KIT/ort.tar.xz" | tar -C "$ORT_DIR" -xf -
else "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$KIT/ort.tar.xz" "$ORT_DIR"; fi
[ -s "$ORT_DIR/libonnxruntime.so.1" ] || { say "ORT library not unpacked"; exit 3; }
export ORT_CAPI_LIB=$ORT_DIR/libonnxruntime.so.1
{
  echo "== environment"; date -u; nproc; free -g | head -2
  nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  ls -l "$VK_DRIVER_FILES" 2>&1; ldconfig -p | grep -E 'libvulkan|libGLdispatch' 2>&1
  "$PY" -c 'import sys, numpy, torch
print(sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1
  "$PY" bench/gpu/ort_capi.py 2>&1
} >>"$LOG" 2>&1
say "setup done"

# -------------------------------------------------------------------------------------------------- default
step default 120 "$PY" bench/gpu/tokens.py --providers cpu,webgpu --label default $TOKENS_ARGS \
  --out "$OUT/tokens-default.json"

# ---------------------------------------------------------------------------------------------------- torch
step torch 180 "$PY" bench/gpu/torch_tokens.py $TORCH_ARGS --out "$OUT/torch.json"

# ------------------------------------------------------------------------------------------ full width (ONNX)
# CPU EP: the two smaller shapes only (32 x 512 at full width is ~16 TFLOP, tens of seconds per run on 16 cores)
# fw ATTENTION NAME [export args]: export, then both EPs on it
fw() {
  local att=$1 name=$2; shift 2
  local dir=${FW_TMP:-/tmp}/fw-$name
  rm -rf "$dir"
  step "fw-$name-export" 180 "$PY" bench/gpu/export_full_width.py --out "$dir" --layers "$FW_LAYERS" \
    --attention "$att" $FW_ARGS "$@" || { rm -rf "$dir"; return 1; }
  grep -h '"tool": "bench/gpu/export_full_width.py"' "$LOG" | tail -n 1 >>"$OUT/export.jsonl"
  step "fw-$name-tokens" 150 "$PY" bench/gpu/tokens.py --model "$dir" --label "full-width L$FW_LAYERS $name" \
    --providers cpu,webgpu $FW_TOKENS_ARGS --warmup 1 --runs 5 --max-seconds 20 --out "$OUT/tokens-fw-$name.json"
  rm -rf "$dir"
}
webgpu_session_failed() {  # a WebGPU session error in a tokens JSON (e.g. a buffer past the adapter's limits)
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(0 if any(s["provider"] == "WebGPU" and "error" in s for m in d["models"] for s in m["sessions"]) else 1)' "$1"
}
fw eager eager
# the 1.5 GB embedding table is the one buffer that could exceed the adapter's binding limit; the vocabulary does
# not change the arithmetic per token (one Gather), so a smaller table keeps the width's measurement
# (only when WebGPU ran the default model: no adapter at all is not a size problem)
if [ "$DRY_RUN" != 1 ] && [ -s "$OUT/tokens-fw-eager.json" ] && webgpu_session_failed "$OUT/tokens-fw-eager.json" \
   && [ -s "$OUT/tokens-default.json" ] && ! webgpu_session_failed "$OUT/tokens-default.json"; then
  say "WebGPU failed on the full-vocabulary graph: again with vocab 32768"
  fw eager eager-v32k --vocab 32768
fi
# the fused graph (import-hf's default) only when it can still finish: eager's export + both EPs took about this
if [ "$(elapsed)" -lt $((DEADLINE_S - 150)) ]; then fw fused fused; else say "SKIP fw-fused: time"; fi

# -------------------------------------------------------------------------------------------------- summary
"$PY" bench/gpu/summarize.py "$OUT" >"$OUT/summary.md" 2>>"$LOG"
say "total $(elapsed)s"
cat "$OUT/summary.md"
