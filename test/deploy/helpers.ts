// Shared helpers of the deployment tests: file locations, a Dockerfile reader, .dockerignore
// matching, and the metric names PromQL expressions refer to.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const repoPath = (...p: string[]) => path.join(REPO, ...p)
export const readRepo = (...p: string[]) => readFileSync(repoPath(...p), 'utf8')

export interface Instruction {
  readonly cmd: string // upper-case keyword
  readonly args: string
  readonly stage: string // name (or index) of the stage the instruction belongs to
}

export interface Dockerfile {
  readonly args: Record<string, string> // global ARG defaults (before the first FROM)
  readonly stages: { name: string; from: string }[]
  readonly instructions: Instruction[]
}

/** Docker's logical lines: comments dropped (also inside continuations), `\` joins lines. */
export function parseDockerfile(text: string): Dockerfile {
  const logical: string[] = []
  let cur = ''
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd()
    if (/^\s*#/.test(line)) continue
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' '
      continue
    }
    cur += line
    if (cur.trim()) logical.push(cur.trim())
    cur = ''
  }
  const args: Record<string, string> = {}
  const stages: { name: string; from: string }[] = []
  const instructions: Instruction[] = []
  for (const l of logical) {
    const m = /^(\S+)\s*(.*)$/s.exec(l)!
    const cmd = m[1].toUpperCase()
    const rest = m[2]
    if (cmd === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!
      const from = f[1].replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? '')
      stages.push({ name: f[2] ?? String(stages.length), from })
    } else if (cmd === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=')
      args[k] = v
    }
    instructions.push({ cmd, args: rest, stage: stages.at(-1)?.name ?? '' })
  }
  return { args, stages, instructions }
}

/** ENV lines in the `KEY=value KEY2=value2` form (the only one the Dockerfiles use). */
export function envOf(ins: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const i of ins.filter((x) => x.cmd === 'ENV')) {
    for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '')
  }
  return env
}

function globToRegExp(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*'
      i++
      if (glob[i + 1] === '/') i++
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** .dockerignore semantics: the last matching pattern wins, `!` re-includes, a pattern that matches
 *  a directory matches everything below it. Returns whether `rel` is sent to the build. */
export function dockerignoreIncludes(ignoreText: string, rel: string): boolean {
  const rules = ignoreText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!')
      const pat = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, '')
      return { negate, re: globToRegExp(pat) }
    })
  const parts = rel.split('/')
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
  let included = true
  for (const r of rules) if (prefixes.some((p) => r.re.test(p))) included = r.negate
  return included
}

/** Metric names a PromQL expression selects. Every service metric has the scorer_ prefix, so a
 *  token scan is exact enough; label values in quotes are removed first. */
export function metricRefs(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  return [...new Set([...noStrings.matchAll(/\b(scorer_[a-z0-9_]+)\b/g)].map((m) => m[1]))]
}

/** Series names a Prometheus text exposition can carry, from its `# TYPE` lines (present even
 *  before the first observation): histograms expand to _bucket/_sum/_count. */
export function exportedSeries(exposition: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m
    out.set(name, type)
    if (type === 'histogram' || type === 'summary') {
      for (const s of ['_sum', '_count', ...(type === 'histogram' ? ['_bucket'] : [])]) out.set(name + s, type)
    }
  }
  return out
}

/** The environment variables src/config.ts reads (the keys of its zod EnvSchema). */
export function configEnvKeys(): Set<string> {
  const src = readRepo('src/config.ts')
  const body = /const EnvSchema = z\.object\(\{([\s\S]*?)\n\}\)/.exec(src)
  if (!body) throw new Error('EnvSchema not found in src/config.ts')
  return new Set([...body[1].matchAll(/^\s{2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]))
}

/** Label names a PromQL expression (or a Grafana legend) uses: by/without lists, selector matchers,
 *  label_values(metric, label), and {{label}} / $labels.label templates. */
export function labelRefs(text: string): string[] {
  const noStrings = text.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  const out = new Set<string>()
  for (const m of noStrings.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) for (const l of m[1]!.split(',')) if (l.trim()) out.add(l.trim())
  for (const m of noStrings.matchAll(/\{([^{}]*)\}/g)) for (const mm of m[1]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) out.add(mm[1]!)
  for (const m of noStrings.matchAll(/label_values\(\s*\w+\s*,\s*(\w+)\s*\)/g)) out.add(m[1]!)
  for (const m of text.matchAll(/\{\{\s*\.?(\w+)\s*\}\}|\$labels\.(\w+)/g)) out.add((m[1] ?? m[2])!)
  return [...out]
}

/** Labels every Prometheus target carries (added by the scrape, not by the service). */
export const TARGET_LABELS = new Set(['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint', '__name__'])
