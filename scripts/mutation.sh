#!/usr/bin/env bash
# Mutation testing (StrykerJS, command runner) of the core modules, one module at a time (see stryker.config.mjs).
#   npm run test:mutation                      all modules
#   npm run test:mutation -- batcher encode    some
#   MUTATION_BASELINE=1 npm run test:mutation  without test/mutation/ (the "before" scores)
#   MUTATION_MUTATE=src/x.ts:10-12,... npm run test:mutation -- x   only those lines (re-checking survivors)
# Not part of scripts/test.sh: a long check (over an hour for all modules on a loaded 2-core host); scores go in
# test/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(batch-policy batcher errors hd-transform encode query-template get-reward auth)
mods=("$@")
[ ${#mods[@]} -eq 0 ] && mods=("${all[@]}")
mkdir -p reports/mutation
for m in "${mods[@]}"; do
  echo "=== mutation: $m"
  # the sandbox is .stryker-tmp-<module>/sandbox-*/: tests that read ../shared (fixtures) must find it there too
  mkdir -p ".stryker-tmp-$m"
  [ -d ../shared ] && ln -sfn "$(cd .. && pwd)/shared" ".stryker-tmp-$m/shared"
  MUTATION_MODULE="$m" nice -n 10 npx stryker run stryker.config.mjs
done
# one line per module: score, killed, survived, timeout, no-coverage (from the JSON reports)
node -e '
const fs = require("fs")
for (const m of process.argv.slice(1)) {
  const f = `reports/mutation/${m}${process.env.MUTATION_BASELINE === "1" ? ".before" : ""}${process.env.MUTATION_MUTATE ? ".partial" : ""}.json`
  if (!fs.existsSync(f)) continue
  const r = JSON.parse(fs.readFileSync(f, "utf8"))
  const n = {}
  for (const file of Object.values(r.files)) for (const x of file.mutants) n[x.status] = (n[x.status] ?? 0) + 1
  const det = (n.Killed ?? 0) + (n.Timeout ?? 0)
  const valid = det + (n.Survived ?? 0) + (n.NoCoverage ?? 0)
  console.log(`${m}: score ${(100 * det / valid).toFixed(1)}% (killed ${n.Killed ?? 0}, timeout ${n.Timeout ?? 0}, survived ${n.Survived ?? 0}, no coverage ${n.NoCoverage ?? 0}, errors ${(n.CompileError ?? 0) + (n.RuntimeError ?? 0)})`)
}' "${mods[@]}"
