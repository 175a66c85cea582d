#!/usr/bin/env bash
# The README's start command: installs what is missing, then serves the embedded default model on $PORT (8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh service
exec node --import tsx src/server.ts
