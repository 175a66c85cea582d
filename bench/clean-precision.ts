// Data cleaning, measured (npm run bench:clean): how well `clean`'s flag rules find mislabelled pairs.
//
// Two preference sets with known-correct labels:
//   procedural  a held-out set made by the trainer's generator (`python3 -m reward_trainer generate`) from a seed
//               the default model never saw (labels from validator functions, so they are correct by construction);
//   hh-rlhf     a seeded subsample of ../shared/fixtures/preference/hh-rlhf-harmless-base-test.jsonl.gz with its
//               original human labels (taken as correct; they carry the crowd's own noise).
// For each flip rate (5 %, 10 %, 20 %) a seeded subset of the pairs gets chosen and rejected swapped; the real
// `clean` CLI (src/cli/clean.ts, a child process) scores the flipped file against the real service (bench/server.ts
// starts src/server.ts on the embedded default model) and flags pairs. Rerunning the CLI on the same --out resumes
// (nothing is rescored) with other rule parameters, so every point of the sweep is a real `clean` run.
// Flagged pairs (by reason, from flagged.jsonl) vs flipped pairs -> precision and recall per rule:
//   lowest_pct       --lowest-pct k      the k % lowest margins (chosen - rejected)
//   below_threshold  --threshold t       margin < t
//   zscore_outlier   --zscore z          |margin - mean| / std > z (both tails: that is what the CLI offers)
// Chance baseline: flagging at random gives precision = flip rate.
// Writes OUT/report.md (tables) and OUT/pr-curve.png (precision-recall curves, SVG rendered with sharp).
//
// Env: CLEAN_OUT (tmp/bench-clean), CLEAN_HH_PAIRS (600), CLEAN_PROC_PAIRS (480), CLEAN_RATES (5,10,20),
// CLEAN_SEED (1), CLEAN_GEN_SEED (20260; the default model was trained on seed 1234), and the server's knobs.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import sharp from 'sharp'
import { scoreFlags } from './flag-score.ts'
import { startServer } from './server.ts'
import { mulberry32, shuffled } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const OUT = path.resolve(root, process.env.CLEAN_OUT ?? 'tmp/bench-clean')
const HH_PAIRS = Number(process.env.CLEAN_HH_PAIRS ?? 600)
const PROC_PAIRS = Number(process.env.CLEAN_PROC_PAIRS ?? 480)
const RATES = (process.env.CLEAN_RATES ?? '5,10,20').split(',').map(Number)
const SEED = Number(process.env.CLEAN_SEED ?? 1)
const GEN_SEED = Number(process.env.CLEAN_GEN_SEED ?? 20260)
const RULES = ['lowest_pct', 'below_threshold', 'zscore_outlier'] as const
type Rule = (typeof RULES)[number]
const RULE_FLAG: Record<Rule, string> = { lowest_pct: '--lowest-pct', below_threshold: '--threshold', zscore_outlier: '--zscore' }
// Sweep grids (index i of each grid goes into the same `clean` run). Thresholds are in margin units, spread over
// the observed margins of the run (equal steps, not quantiles).
const LOWEST = [1, 2, 3, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50]
const ZSCORE = [4, 3, 2.5, 2, 1.75, 1.5, 1.25, 1, 0.75, 0.5, 0.25, 0.1, 0]
// Operating points for the table: the CLI's defaults (lowest 5 %, |z| > 3), lowest k % = the flip rate (needs the
// rate known), margin < 0 (the RM disagrees with the label: needs nothing known), and |z| > 2.
const TABLE_POINTS = (rate: number) =>
  [
    { rule: 'lowest_pct' as Rule, param: 5, label: `lowest 5 % (default${rate === 5 ? ' = flip rate' : ''})` },
    { rule: 'lowest_pct' as Rule, param: rate, label: `lowest ${rate} % (= flip rate)` },
    { rule: 'lowest_pct' as Rule, param: 2 * rate, label: `lowest ${2 * rate} %` },
    { rule: 'below_threshold' as Rule, param: 0, label: 'margin < 0' },
    { rule: 'zscore_outlier' as Rule, param: 3, label: '\\|z\\| > 3 (default)' },
    { rule: 'zscore_outlier' as Rule, param: 2, label: '\\|z\\| > 2' },
    { rule: 'zscore_outlier' as Rule, param: 1, label: '\\|z\\| > 1' },
  ].filter((p, i, all) => all.findIndex((q) => q.rule === p.rule && q.param === p.param) === i)

interface Dataset {
  name: string
  /** Writes the set with the given record indices flipped; returns the file and the ids `clean` gives them. */
  write(flip: Set<number>, file: string): void
  n: number
  dir: string
  ext: string
  idOf(index: number): string
}

function proceduralSet(): Dataset {
  const dir = path.join(OUT, 'procedural')
  fs.rmSync(dir, { recursive: true, force: true })
  // The trainer's own generator; --train-pairs 0: only the held-out split (seed GEN_SEED + 1_000_003).
  execFileSync('/usr/bin/python3', ['-m', 'reward_trainer', 'generate', '--out', dir, '--train-pairs', '0', '--heldout-pairs', String(PROC_PAIRS), '--seed', String(GEN_SEED)], {
    cwd: path.join(root, 'trainer'),
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const lines = fs.readFileSync(path.join(dir, 'heldout.jsonl'), 'utf8').split('\n').filter(Boolean)
  const recs = lines.map((l) => JSON.parse(l) as { id: string; chosen: string; rejected: string })
  return {
    name: 'procedural',
    n: recs.length,
    dir,
    ext: 'jsonl',
    idOf: (i) => recs[i]!.id,
    write: (flip, file) =>
      fs.writeFileSync(file, recs.map((r, i) => JSON.stringify(flip.has(i) ? { ...r, chosen: r.rejected, rejected: r.chosen } : r)).join('\n') + '\n'),
  }
}

function hhSet(): Dataset {
  const dir = path.join(OUT, 'hh-rlhf')
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  const src = path.join(root, '..', 'shared', 'fixtures', 'preference', 'hh-rlhf-harmless-base-test.jsonl.gz')
  const all = gunzipSync(fs.readFileSync(src)).toString('utf8').split('\n').filter(Boolean)
  // Seeded subsample, kept in file order.
  const pick = shuffled(all.map((_, i) => i), SEED * 1000 + 17)
    .slice(0, HH_PAIRS)
    .sort((a, b) => a - b)
  const recs = pick.map((i) => JSON.parse(all[i]!) as { chosen: string; rejected: string })
  return {
    name: 'hh-rlhf',
    n: recs.length,
    dir,
    ext: 'jsonl',
    // The CLI's id for an hh-rlhf record without an id: "<format>-<0-based index>".
    idOf: (i) => `hh-rlhf-${i}`,
    write: (flip, file) =>
      fs.writeFileSync(file, recs.map((r, i) => JSON.stringify(flip.has(i) ? { chosen: r.rejected, rejected: r.chosen } : r)).join('\n') + '\n'),
  }
}

async function clean(base: string, input: string, out: string, rules: Record<Rule, number | 'off'>): Promise<void> {
  const args = ['--import', 'tsx', path.join(root, 'src/cli/clean.ts'), '--input', input, '--out', out, '--url', base, '--no-progress']
  args.push('--batch-size', '16', '--concurrency', '4', '--report-examples', '0')
  // `--threshold=-1.5`: the = form, so a negative value is not read as an option.
  for (const r of RULES) args.push(`${RULE_FLAG[r]}=${rules[r]}`)
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  const [code] = (await once(child, 'exit')) as [number]
  if (code !== 0) throw new Error(`clean exited ${code}: ${args.join(' ')}`)
}

interface Point {
  rule: Rule
  param: number
  flagged: number
  tp: number
  precision: number | null
  recall: number
  /** z-score flags on the high side (confident, correct-looking pairs): false positives by construction. */
  above?: number
}

interface RunResult {
  dataset: string
  rate: number
  n: number
  flipped: number
  skipped: number
  /** Fraction of pairs where the RM agrees with the true (pre-flip) label. */
  agreeTrue: number
  scoreSeconds: number
  margins: { min: number; max: number; mean: number }
  points: Point[]
}

function readJsonl<T>(file: string): T[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T)
}

async function measure(base: string, ds: Dataset, rate: number): Promise<RunResult> {
  const rnd = mulberry32(SEED * 7919 + rate)
  const k = Math.round((rate / 100) * ds.n)
  const flipIdx = new Set(shuffled(Array.from({ length: ds.n }, (_, i) => i), Math.floor(rnd() * 2 ** 31)).slice(0, k))
  const input = path.join(ds.dir, `flip-${rate}.${ds.ext}`)
  ds.write(flipIdx, input)
  const out = path.join(OUT, 'runs', `${ds.name}-flip-${rate}`)
  fs.rmSync(out, { recursive: true, force: true })
  const flipped = new Set([...flipIdx].map((i) => ds.idOf(i)))

  // 1. The scoring run (CLI defaults for the rules plus margin < 0).
  const t0 = performance.now()
  await clean(base, input, out, { lowest_pct: 5, below_threshold: 0, zscore_outlier: 3 })
  const scoreSeconds = (performance.now() - t0) / 1000
  const scores = readJsonl<{ id: string; value?: number; skipped?: string; error?: unknown }>(path.join(out, 'scores.jsonl'))
  const scored = scores.filter((s) => s.value !== undefined)
  if (scored.length === 0) throw new Error(`${ds.name}: nothing scored`)
  const present = new Set(scored.map((s) => s.id))
  const flippedScored = new Set([...flipped].filter((id) => present.has(id)))
  const vals = scored.map((s) => s.value!)
  const mean = vals.reduce((a, b) => a + b, 0) / vals.length
  const margins = { min: Math.min(...vals), max: Math.max(...vals), mean }
  const agreeTrue = scored.filter((s) => (s.value! > 0) !== flipped.has(s.id)).length / scored.length

  // 2. The sweep: each grid index is one resumed `clean` run with all three rules set.
  const lo = margins.min
  const hi = mean + 0.25 * (margins.max - mean)
  const thresholds = LOWEST.map((_, i) => lo + ((hi - lo) * (i + 1)) / LOWEST.length)
  const grid: Array<Record<Rule, number>> = LOWEST.map((l, i) => ({ lowest_pct: l, below_threshold: thresholds[i]!, zscore_outlier: ZSCORE[i]! }))
  // Table operating points that the grid lacks: run j takes the j-th extra parameter of every rule.
  const extra = RULES.map((r) => TABLE_POINTS(rate).filter((p) => p.rule === r && !grid.some((g) => g[r] === p.param)).map((p) => p.param))
  for (let j = 0; j < Math.max(...extra.map((e) => e.length)); j++) {
    grid.push({ lowest_pct: extra[0]![j] ?? 5, below_threshold: extra[1]![j] ?? 0, zscore_outlier: extra[2]![j] ?? 3 })
  }
  const points: Point[] = []
  for (const g of grid) {
    await clean(base, input, out, g)
    const flagged = readJsonl<{ id: string; value: number; reasons: Rule[] }>(path.join(out, 'flagged.jsonl'))
    for (const r of RULES) {
      if (points.some((p) => p.rule === r && p.param === g[r])) continue
      const ids = flagged.filter((l) => l.reasons.includes(r))
      points.push({
        rule: r,
        param: g[r],
        ...scoreFlags(
          ids.map((l) => l.id),
          flippedScored,
        ),
        ...(r === 'zscore_outlier' ? { above: ids.filter((l) => l.value > mean).length } : {}),
      })
    }
  }
  return {
    dataset: ds.name,
    rate,
    n: scored.length,
    flipped: flippedScored.size,
    skipped: scores.length - scored.length,
    agreeTrue,
    scoreSeconds,
    margins,
    points,
  }
}

// ------------------------------------------------------------------------------------------------ report
const f = (x: number | null, d = 3) => (x === null ? '–' : x.toFixed(d))

function table(results: RunResult[]): string {
  const out = [
    '| set | flip rate | pairs (flipped) | RM agrees with true label | rule | flagged | true positives | precision | recall | chance precision |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const r of results) {
    for (const tp of TABLE_POINTS(r.rate)) {
      const p = r.points.find((x) => x.rule === tp.rule && x.param === tp.param)!
      const note = p.above ? ` (${p.above} above the mean)` : ''
      out.push(
        `| ${r.dataset} | ${r.rate} % | ${r.n} (${r.flipped}) | ${f(r.agreeTrue)} | ${tp.label} | ${p.flagged}${note} | ${p.tp} | ${f(p.precision)} | ${f(p.recall)} | ${f(r.flipped / r.n)} |`,
      )
    }
  }
  return out.join('\n')
}

/** Best F1 along each rule's sweep, a one-line summary per run. */
function bestF1(results: RunResult[]): string {
  const out = ['| set | flip rate | rule | best F1 | at | precision | recall |', '|---|---|---|---|---|---|---|']
  for (const r of results) {
    for (const rule of RULES) {
      let best: Point | undefined
      let bf = -1
      for (const p of r.points.filter((x) => x.rule === rule)) {
        const f1 = p.precision && p.recall ? (2 * p.precision * p.recall) / (p.precision + p.recall) : 0
        if (f1 > bf) [bf, best] = [f1, p]
      }
      out.push(`| ${r.dataset} | ${r.rate} % | ${rule} | ${f(bf)} | ${RULE_FLAG[rule]}=${best!.param.toFixed(rule === 'below_threshold' ? 2 : 2)} | ${f(best!.precision)} | ${f(best!.recall)} |`)
    }
  }
  return out.join('\n')
}

const RATE_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd']
const RULE_DASH: Record<Rule, string> = { lowest_pct: '', below_threshold: '7 4', zscore_outlier: '2 3' }
const RULE_MARK: Record<Rule, (x: number, y: number, c: string) => string> = {
  lowest_pct: (x, y, c) => `<circle cx="${x}" cy="${y}" r="3" fill="${c}"/>`,
  below_threshold: (x, y, c) => `<rect x="${x - 3}" y="${y - 3}" width="6" height="6" fill="none" stroke="${c}"/>`,
  zscore_outlier: (x, y, c) => `<path d="M${x - 3.5} ${y + 3} L${x} ${y - 3.5} L${x + 3.5} ${y + 3} Z" fill="${c}"/>`,
}

function prSvg(results: RunResult[]): string {
  const sets = [...new Set(results.map((r) => r.dataset))]
  const W = 520
  const H = 440
  const m = { l: 58, r: 16, t: 34, b: 48 }
  const pw = W - m.l - m.r
  const ph = H - m.t - m.b
  const legendH = 70
  const parts: string[] = []
  sets.forEach((set, si) => {
    const ox = si * W
    const X = (v: number) => ox + m.l + v * pw
    const Y = (v: number) => m.t + (1 - v) * ph
    parts.push(`<text x="${ox + W / 2}" y="20" font-size="15" text-anchor="middle" font-weight="bold">${set}</text>`)
    for (let t = 0; t <= 10; t += 2) {
      const v = t / 10
      parts.push(`<line x1="${X(0)}" x2="${X(1)}" y1="${Y(v)}" y2="${Y(v)}" stroke="#e4e4e4"/><line x1="${X(v)}" x2="${X(v)}" y1="${Y(0)}" y2="${Y(1)}" stroke="#e4e4e4"/>`)
      parts.push(`<text x="${X(0) - 6}" y="${Y(v) + 4}" font-size="11" text-anchor="end">${v.toFixed(1)}</text>`)
      parts.push(`<text x="${X(v)}" y="${Y(0) + 16}" font-size="11" text-anchor="middle">${v.toFixed(1)}</text>`)
    }
    parts.push(`<rect x="${X(0)}" y="${Y(1)}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`)
    parts.push(`<text x="${X(0.5)}" y="${H - 12}" font-size="13" text-anchor="middle">recall (flipped pairs found)</text>`)
    parts.push(`<text transform="translate(${ox + 16} ${Y(0.5)}) rotate(-90)" font-size="13" text-anchor="middle">precision (flagged that were flipped)</text>`)
    results
      .filter((r) => r.dataset === set)
      .forEach((r) => {
        const c = RATE_COLORS[RATES.indexOf(r.rate) % RATE_COLORS.length]!
        const chance = r.flipped / r.n
        parts.push(`<line x1="${X(0)}" x2="${X(1)}" y1="${Y(chance)}" y2="${Y(chance)}" stroke="${c}" stroke-width="1" opacity="0.6" stroke-dasharray="1 4"/>`)
        for (const rule of RULES) {
          const pts = r.points.filter((p) => p.rule === rule && p.precision !== null)
            .sort((a, b) => a.flagged - b.flagged || a.recall - b.recall) // sweep order: more flags -> more recall
          if (pts.length === 0) continue
          const d = pts.map((p, i) => `${i ? 'L' : 'M'}${X(p.recall).toFixed(1)} ${Y(p.precision!).toFixed(1)}`).join(' ')
          parts.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="1.6" stroke-dasharray="${RULE_DASH[rule]}"/>`)
          for (const p of pts) parts.push(RULE_MARK[rule](X(p.recall), Y(p.precision!), c))
        }
      })
  })
  // Legend under both panels.
  const ly = H + 18
  const leg: string[] = []
  RATES.forEach((rate, i) => {
    const x = 60 + i * 150
    leg.push(`<line x1="${x}" x2="${x + 28}" y1="${ly}" y2="${ly}" stroke="${RATE_COLORS[i]}" stroke-width="3"/><text x="${x + 34}" y="${ly + 4}" font-size="12">flip rate ${rate} %</text>`)
  })
  leg.push(`<text x="${60 + RATES.length * 150}" y="${ly + 4}" font-size="12">dotted horizontal: chance (precision = flip rate)</text>`)
  RULES.forEach((rule, i) => {
    const x = 60 + i * 250
    const y = ly + 28
    leg.push(`<line x1="${x}" x2="${x + 36}" y1="${y}" y2="${y}" stroke="#333" stroke-width="1.6" stroke-dasharray="${RULE_DASH[rule]}"/>${RULE_MARK[rule](x + 18, y, '#333')}`)
    leg.push(`<text x="${x + 44}" y="${y + 4}" font-size="12">${rule} (${RULE_FLAG[rule]})</text>`)
  })
  const totalW = W * sets.length
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${H + legendH}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}${leg.join('')}</svg>`
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true })
  const t0 = performance.now()
  const sets = [proceduralSet(), hhSet()]
  console.log(`sets: ${sets.map((s) => `${s.name} ${s.n} pairs`).join(', ')}; flip rates ${RATES.join(', ')} %; seed ${SEED}; out ${OUT}`)
  const { child, base } = await startServer({ MAX_CLIENT_BATCH_SIZE: '64' })
  const results: RunResult[] = []
  try {
    const info = (await (await fetch(`${base}/v1/models`)).json()) as { models: Array<{ name: string; version: number; serving: boolean }> }
    const serving = info.models.find((m) => m.serving)
    console.log(`service model ${serving?.name}/${serving?.version}`)
    for (const ds of sets) {
      for (const rate of RATES) {
        const r = await measure(base, ds, rate)
        results.push(r)
        const lp = r.points.find((p) => p.rule === 'lowest_pct' && p.param === rate)!
        const th = r.points.find((p) => p.rule === 'below_threshold' && p.param === 0)!
        console.log(
          `${ds.name} flip ${rate} %: ${r.n} pairs scored in ${r.scoreSeconds.toFixed(1)} s, RM agrees with true label ${f(r.agreeTrue)}; ` +
            `lowest ${rate} %: P ${f(lp.precision)} R ${f(lp.recall)}; margin < 0: P ${f(th.precision)} R ${f(th.recall)} (chance P ${f(r.flipped / r.n)})`,
        )
      }
    }
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  const svg = prSvg(results)
  fs.writeFileSync(path.join(OUT, 'pr-curve.svg'), svg)
  await sharp(Buffer.from(svg)).png().toFile(path.join(OUT, 'pr-curve.png'))
  fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  const report = [
    '# Data cleaning, measured (`npm run bench:clean`)',
    '',
    `Sets: ${sets.map((s) => `${s.name} (${s.n} pairs)`).join(', ')}; the procedural set is the trainer's held-out split from generator seed ${GEN_SEED} ` +
      `(held-out seed ${GEN_SEED + 1_000_003}; the default model was trained on seed 1234). Flip seed ${SEED}. ` +
      'Precision = flagged pairs that were flipped / flagged; recall = flipped pairs flagged / flipped; chance precision = flip rate.',
    '',
    table(results),
    '',
    '## Best F1 along each sweep',
    '',
    bestF1(results),
    '',
    '![precision-recall](pr-curve.png)',
    '',
    `Wall time ${((performance.now() - t0) / 1000).toFixed(0)} s.`,
    '',
  ].join('\n')
  fs.writeFileSync(path.join(OUT, 'report.md'), report)
  console.log('\n' + report)
  console.log(`outputs: ${path.join(OUT, 'report.md')}, ${path.join(OUT, 'pr-curve.png')}, results.json, runs/*/ (the CLI's own outputs)`)
}

await main()
