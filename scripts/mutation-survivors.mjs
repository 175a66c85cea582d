// Re-checking survivors without re-running a whole module (scripts/mutation.sh, test/README.md):
//   node scripts/mutation-survivors.mjs ranges <module>   MUTATION_MUTATE value: the places of the survived and
//                                                         uncovered mutants of reports/mutation/<module>[.before].json
//   node scripts/mutation-survivors.mjs merge <module>    that report with reports/mutation/<module>.partial.json laid
//                                                         over it (same mutant = same place, mutator and replacement):
//                                                         the score after the new tests, and the survivors left
// The full report read is <module>.before.json when it exists (MUTATION_BASELINE=1 run), else <module>.json.
import { existsSync, readFileSync } from 'node:fs'

const [cmd, mod] = process.argv.slice(2)
if (!['ranges', 'merge'].includes(cmd) || !mod) {
  console.error('usage: node scripts/mutation-survivors.mjs ranges|merge <module>')
  process.exit(2)
}
const dir = 'reports/mutation'
const fullPath = existsSync(`${dir}/${mod}.before.json`) ? `${dir}/${mod}.before.json` : `${dir}/${mod}.json`
const full = JSON.parse(readFileSync(fullPath, 'utf8'))
const LIVE = new Set(['Survived', 'NoCoverage'])
const key = (file, m) => `${file}:${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}:${m.mutatorName}:${m.replacement}`

if (cmd === 'ranges') {
  // one range per mutant (report columns are 1-based, Stryker's range columns 0-based): the re-run tests those
  // mutants and any nested inside them, not every mutant of their lines
  const out = new Set()
  for (const [file, f] of Object.entries(full.files)) {
    for (const m of f.mutants.filter((x) => LIVE.has(x.status))) {
      const { start, end } = m.location
      out.add(`${file}:${start.line}:${start.column - 1}-${end.line}:${end.column - 1}`)
    }
  }
  console.log([...out].join(','))
} else {
  const partial = JSON.parse(readFileSync(`${dir}/${mod}.partial.json`, 'utf8'))
  const later = new Map()
  for (const [file, f] of Object.entries(partial.files)) for (const m of f.mutants) later.set(key(file, m), m.status)
  // only live mutants take the re-run's status: one the full run detected stays detected (a re-run may use fewer
  // test files, and nested mutants inside a survivor's range are re-run too)
  const n = {}
  const left = []
  for (const [file, f] of Object.entries(full.files)) {
    for (const m of f.mutants) {
      const status = LIVE.has(m.status) ? (later.get(key(file, m)) ?? m.status) : m.status
      n[status] = (n[status] ?? 0) + 1
      if (LIVE.has(status)) left.push(`${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName} -> ${JSON.stringify(m.replacement).slice(0, 80)}`)
    }
  }
  const det = (n.Killed ?? 0) + (n.Timeout ?? 0)
  const valid = det + (n.Survived ?? 0) + (n.NoCoverage ?? 0)
  console.log(`${mod} (${fullPath} + partial): score ${(100 * det / valid).toFixed(1)}% (killed ${n.Killed ?? 0}, timeout ${n.Timeout ?? 0}, survived ${n.Survived ?? 0}, no coverage ${n.NoCoverage ?? 0}; ${valid} valid)`)
  for (const l of left) console.log(`  left: ${l}`)
}
