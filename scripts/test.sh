#!/usr/bin/env bash
# The README's test command: installs everything, then runs every test (TypeScript and Python).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh all
npx tsc -p tsconfig.json --noEmit
status=0
npx tap || status=1
# Debian's python3 (/usr/bin/python3) carries torch/onnx/sentencepiece; a python3 earlier on PATH may not.
/usr/bin/python3 -m pytest trainer/tests -q -p no:cacheprovider || status=1
exit $status
