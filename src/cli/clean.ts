// `clean`: scores a whole preference dataset through the reward service (the paper's data-cleaning use) and
// writes, in --out:
//   scores.jsonl   one line per sample (append-only; a rerun skips ids already there, so a killed run resumes)
//   flagged.jsonl  samples flagged by the rules (lowest k %, below a threshold, z-score outliers) with reasons
//   report.md|html summary, score histograms (PNG) and the flagged examples
//   run.json       what the scores are of (input path and sha256, format, model): a rerun with anything else
//                  starts afresh instead of resuming, and every output is rewritten, none left from a past run
//
//   node --import tsx src/cli/clean.ts --input data.jsonl.gz --out cleaned/ [--url http://127.0.0.1:8080]
//   node --import tsx src/cli/clean.ts --input data.jsonl --out cleaned/ --in-process --models-dir models
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { RewardServiceError, type RewardClient } from '../../clients/typescript/index.js'
import { COMMON_ARGS, connectFromArgs, runIfEntry } from './connect.ts'
import {
  DATASET_FORMATS,
  contentText,
  countRecords,
  readDataset,
  responseText,
  type DatasetFormat,
  type DatasetRow,
  type DatasetSample,
} from './datasets.ts'
import { flagSamples, type FlagReason, type FlagRules } from './flag-samples.ts'
import { binValues, renderHistogramPng, type HistogramSeries } from './histogram.ts'
import { createProgress } from './progress.ts'

export interface CleanOptions {
  input: string
  out: string
  format: DatasetFormat
  model?: string
  /** Samples per /v1/score request (each pair is two items). */
  batchSize: number
  /** Requests in flight. */
  concurrency: number
  /** Only the first N records of the input (a resumed run completes the same N); 0 = all. */
  limit: number
  rules: FlagRules
  report: 'md' | 'html'
  /** Flagged examples shown in the report. */
  reportExamples: number
  progress: boolean
}

/** One line of scores.jsonl. */
export interface ScoreLine {
  id: string
  /** "file:line" of the record (skipped and refused samples). */
  at?: string
  category?: string
  chosen_score?: number
  rejected_score?: number
  /** chosen - rejected for pairs; the score for unpaired samples: what the flag rules look at. */
  value?: number
  chosen_tokens?: number
  rejected_tokens?: number
  truncated?: boolean
  skipped?: string
  error?: { code: string; message: string }
}

export interface CleanSummary {
  input: string
  model: string | null
  total_lines: number
  scored_this_run: number
  resumed: number
  scored: number
  skipped: number
  errors: number
  pairs: number
  /** Fraction of pairs with chosen > rejected. */
  pair_accuracy: number | null
  flagged: number
  flag_counts: Record<FlagReason, number>
  rules: FlagRules
  value_stats: { n: number; mean: number; std: number; min: number; max: number; lowestCutoff: number | null }
  elapsed_s: number
  samples_per_s: number
  /** Why the previous outputs in --out were discarded, if they were. */
  restarted: string | null
  /** The most frequent reasons for skipped and refused samples, with the first place each happened. */
  skip_reasons: Array<{ reason: string; count: number; first_at: string | null }>
}

function topReasons(lines: readonly ScoreLine[], k = 5): CleanSummary['skip_reasons'] {
  const by = new Map<string, { reason: string; count: number; first_at: string | null }>()
  for (const l of lines) {
    const reason = l.skipped ?? (l.error ? `refused: ${l.error.message}` : undefined)
    if (reason === undefined) continue
    const r = by.get(reason) ?? { reason, count: 0, first_at: l.at ?? null }
    r.count++
    by.set(reason, r)
  }
  return [...by.values()].sort((a, b) => b.count - a.count).slice(0, k)
}

// ------------------------------------------------------------------------------------------------ scoring
/** Reads scores.jsonl (cutting a torn last line from a killed run). Later lines win for an id, so an error
 *  that a resumed run retried successfully is superseded. `done` = ids not to score again. */
export function readDone(file: string): { latest: Map<string, ScoreLine>; done: Set<string> } {
  const latest = new Map<string, ScoreLine>()
  if (!fs.existsSync(file)) return { latest, done: new Set() }
  let text = fs.readFileSync(file, 'utf8')
  if (text.length > 0 && !text.endsWith('\n')) {
    // A kill mid-write leaves a partial line; cut it so appends start on a fresh line and it is rescored.
    text = text.slice(0, text.lastIndexOf('\n') + 1)
    fs.truncateSync(file, Buffer.byteLength(text))
  }
  for (const l of text.split('\n')) {
    if (!l.trim()) continue
    const line = JSON.parse(l) as ScoreLine
    latest.set(line.id, line)
  }
  // Errors are retried on resume (they may have been transient or fixed); scored and skipped lines are done.
  const done = new Set([...latest.values()].filter((l) => !l.error).map((l) => l.id))
  return { latest, done }
}

interface BatchResult {
  lines: ScoreLine[]
  /** "name/version" of the model that answered. */
  model?: string
}

async function scoreBatch(client: RewardClient, samples: DatasetSample[], model: string | undefined): Promise<BatchResult> {
  const items = samples.flatMap((s) => (s.rejected ? [s.chosen, s.rejected] : [s.chosen]).map((messages) => ({ messages })))
  try {
    const res = (await client.score({ items, ...(model ? { model } : {}) })) as {
      results: Array<{ score: number; tokens: number; truncated: boolean }>
      model?: { name: string; version: number }
    }
    let k = 0
    const lines: ScoreLine[] = samples.map((s) => {
      const c = res.results[k++]!
      const r = s.rejected ? res.results[k++]! : undefined
      return {
        id: s.id,
        category: s.category,
        chosen_score: c.score,
        ...(r ? { rejected_score: r.score, rejected_tokens: r.tokens } : {}),
        value: r ? c.score - r.score : c.score,
        chosen_tokens: c.tokens,
        truncated: c.truncated || Boolean(r?.truncated),
      }
    })
    return { lines, model: res.model ? `${res.model.name}/${res.model.version}` : undefined }
  } catch (err) {
    // A 4xx refuses the whole request for one bad sample: score them one by one to find it.
    if (err instanceof RewardServiceError && err.status >= 400 && err.status < 500) {
      if (samples.length > 1) {
        const out: BatchResult = { lines: [] }
        for (const s of samples) {
          const one = await scoreBatch(client, [s], model)
          out.lines.push(...one.lines)
          out.model ??= one.model
        }
        return out
      }
      const s = samples[0]!
      return { lines: [{ id: s.id, ...(s.where ? { at: s.where } : {}), category: s.category, error: { code: err.code, message: err.message } }] }
    }
    throw err
  }
}

/** What a scores.jsonl is of. A resume only continues scores of the same input bytes, format and model. */
interface RunIdentity {
  input: string
  sha256: string
  format: DatasetFormat
  model: string | null
}

const OUTPUTS = /^(scores\.jsonl|flagged\.jsonl|summary\.json|report\.(md|html)|histogram-[\w-]+\.png)$/

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Creates --out, or finds what a previous run left there: kept (same run identity: resume) or removed (another
 *  input, format or model: scores of that would be mixed in). Returns why it started afresh, if it did. */
export async function prepareOutDir(opts: CleanOptions): Promise<string | null> {
  fs.mkdirSync(opts.out, { recursive: true })
  const identity: RunIdentity = {
    input: path.resolve(opts.input),
    sha256: await fileSha256(opts.input).catch(() => ''),
    format: opts.format,
    model: opts.model ?? null,
  }
  const runFile = path.join(opts.out, 'run.json')
  let previous: RunIdentity | null = null
  try {
    previous = JSON.parse(fs.readFileSync(runFile, 'utf8')) as RunIdentity
  } catch {
    // None (first run, or a directory from before run.json): resume whatever scores.jsonl holds.
  }
  let reason: string | null = null
  if (previous) {
    const changed = (['input', 'sha256', 'format', 'model'] as const).filter((k) => previous![k] !== identity[k])
    if (changed.length > 0) {
      reason = `${opts.out} held the outputs of another run (${changed.map((k) => (k === 'sha256' ? 'input content' : k)).join(', ')} changed); starting afresh`
      for (const f of fs.readdirSync(opts.out)) if (OUTPUTS.test(f)) fs.rmSync(path.join(opts.out, f), { force: true })
    }
  }
  fs.writeFileSync(runFile, JSON.stringify(identity, null, 2) + '\n')
  return reason
}

export async function runClean(client: RewardClient, opts: CleanOptions): Promise<CleanSummary> {
  const started = Date.now()
  const restarted = await prepareOutDir(opts)
  const scoresFile = path.join(opts.out, 'scores.jsonl')
  const { done } = readDone(scoresFile)
  const resumed = done.size
  const records = await countRecords(opts.input)
  const total = opts.limit > 0 ? Math.min(opts.limit, records) : records
  const progress = opts.progress ? createProgress('clean', total) : undefined
  progress?.tick(Math.min(resumed, total))
  const sink = fs.createWriteStream(scoresFile, { flags: 'a' })
  const write = (l: ScoreLine) => {
    sink.write(JSON.stringify(l) + '\n')
    done.add(l.id)
  }
  // Which RM judged the data (from the answers; a resumed run that scores nothing new keeps the one in summary.json).
  let modelName: string | null = null
  let scoredThisRun = 0
  const inFlight = new Set<Promise<void>>()
  let failure: unknown
  const launch = (batch: DatasetSample[]) => {
    const p: Promise<void> = scoreBatch(client, batch, opts.model)
      .then((res) => {
        for (const l of res.lines) write(l)
        modelName ??= res.model ?? null
        scoredThisRun += res.lines.length
        progress?.tick(res.lines.length)
      })
      .catch((err) => void (failure ??= err))
      .finally(() => inFlight.delete(p))
    inFlight.add(p)
  }
  try {
    let batch: DatasetSample[] = []
    let seen = 0
    for await (const row of readDataset(opts.input, { format: opts.format })) {
      if (failure || seen++ >= total) break
      if (done.has(row.id)) continue
      if ('skip' in row) {
        write({ id: row.id, at: row.where, skipped: row.skip })
        progress?.tick()
        continue
      }
      batch.push(row)
      if (batch.length >= opts.batchSize) {
        launch(batch)
        batch = []
        while (inFlight.size >= opts.concurrency) await Promise.race(inFlight)
      }
    }
    if (batch.length > 0 && !failure) launch(batch)
    await Promise.all(inFlight)
  } finally {
    await new Promise<void>((resolve) => sink.end(resolve))
    progress?.done()
  }
  if (failure) throw failure
  const summary = await writeOutputs(opts, { modelName, resumed, scoredThisRun, total, started, restarted })
  return summary
}

// ------------------------------------------------------------------------------------------------ outputs
async function writeOutputs(
  opts: CleanOptions,
  run: { modelName: string | null; resumed: number; scoredThisRun: number; total: number; started: number; restarted: string | null },
): Promise<CleanSummary> {
  const lines = [...readDone(path.join(opts.out, 'scores.jsonl')).latest.values()]
  const errorLines = lines.filter((l) => l.error)
  const scored = lines.filter((l) => l.value !== undefined)
  const pairs = scored.filter((l) => l.rejected_score !== undefined)
  const { flags, stats } = flagSamples(scored.map((l) => ({ id: l.id, value: l.value! })), opts.rules)
  const flagCounts: Record<FlagReason, number> = { lowest_pct: 0, below_threshold: 0, zscore_outlier: 0 }
  for (const rs of flags.values()) for (const r of rs) flagCounts[r]++
  const flagged = scored
    .filter((l) => flags.has(l.id))
    .sort((a, b) => a.value! - b.value!)
    .map((l) => ({ ...l, reasons: flags.get(l.id)! }))
  fs.writeFileSync(path.join(opts.out, 'flagged.jsonl'), flagged.map((l) => JSON.stringify(l)).join('\n') + (flagged.length ? '\n' : ''))
  const elapsed = (Date.now() - run.started) / 1000
  const summaryFile = path.join(opts.out, 'summary.json')
  const previousModel = fs.existsSync(summaryFile) ? (JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as CleanSummary).model : null
  const summary: CleanSummary = {
    input: opts.input,
    model: run.modelName ?? previousModel,
    total_lines: run.total,
    scored_this_run: run.scoredThisRun,
    resumed: run.resumed,
    scored: scored.length,
    skipped: lines.filter((l) => l.skipped).length,
    errors: errorLines.length,
    pairs: pairs.length,
    pair_accuracy: pairs.length ? pairs.filter((l) => l.value! > 0).length / pairs.length : null,
    flagged: flagged.length,
    flag_counts: flagCounts,
    rules: opts.rules,
    value_stats: stats,
    elapsed_s: elapsed,
    samples_per_s: elapsed > 0 ? run.scoredThisRun / elapsed : 0,
    restarted: run.restarted,
    skip_reasons: topReasons(lines),
  }
  fs.writeFileSync(summaryFile, JSON.stringify(summary, null, 2) + '\n')

  // Histograms: chosen vs rejected scores overlaid, and the value (margin) the flags use.
  const scoreSeries: HistogramSeries[] = [
    { label: 'chosen', values: scored.map((l) => l.chosen_score!), color: [31, 119, 180] },
    ...(pairs.length ? [{ label: 'rejected', values: pairs.map((l) => l.rejected_score!), color: [255, 127, 14] as const }] : []),
  ]
  const valueSeries: HistogramSeries[] = [{ label: pairs.length ? 'margin' : 'score', values: scored.map((l) => l.value!), color: [44, 160, 44] }]
  const scoreHist = binValues(scoreSeries, 30)
  const valueHist = binValues(valueSeries, 30)
  const scoresPng = (await renderHistogramPng(scoreSeries, scoreHist, { title: `Reward scores (${scored.length} samples)`, xLabel: 'score (reward-model logit)' })).png
  const valuesPng = (
    await renderHistogramPng(valueSeries, valueHist, {
      title: pairs.length ? `Margin chosen - rejected (${pairs.length} pairs)` : `Scores (${scored.length} samples)`,
      xLabel: pairs.length ? 'chosen score - rejected score' : 'score (reward-model logit)',
    })
  ).png
  fs.writeFileSync(path.join(opts.out, 'histogram-scores.png'), scoresPng)
  fs.writeFileSync(path.join(opts.out, 'histogram-margin.png'), valuesPng)

  const texts = await flaggedTexts(opts, new Set(flagged.slice(0, opts.reportExamples).map((l) => l.id)))
  const report = renderReport(opts.report, {
    summary,
    flagged: flagged.slice(0, opts.reportExamples),
    texts,
    scoreSeries,
    scoreHist,
    valueSeries,
    valueHist,
    images: { scores: scoresPng, values: valuesPng },
  })
  fs.writeFileSync(path.join(opts.out, `report.${opts.report}`), report)
  // A report of the other kind from an earlier run would describe other numbers.
  fs.rmSync(path.join(opts.out, `report.${opts.report === 'md' ? 'html' : 'md'}`), { force: true })
  return summary
}

interface ExampleText {
  prompt: string
  chosen: string
  rejected?: string
}

/** Second pass over the input for the few flagged examples the report shows (the first pass kept no text). */
async function flaggedTexts(opts: CleanOptions, ids: Set<string>): Promise<Map<string, ExampleText>> {
  const out = new Map<string, ExampleText>()
  if (ids.size === 0) return out
  for await (const row of readDataset(opts.input, { format: opts.format }) as AsyncGenerator<DatasetRow>) {
    if (!ids.has(row.id) || 'skip' in row) continue
    const lastUser = [...row.chosen].reverse().find((m) => m.role === 'user')
    out.set(row.id, {
      prompt: lastUser ? contentText(lastUser.content) : '',
      chosen: responseText(row.chosen),
      rejected: row.rejected ? responseText(row.rejected) : undefined,
    })
    if (out.size === ids.size) break
  }
  return out
}

// ------------------------------------------------------------------------------------------------ report
interface ReportData {
  summary: CleanSummary
  flagged: Array<ScoreLine & { reasons: FlagReason[] }>
  texts: Map<string, ExampleText>
  scoreSeries: HistogramSeries[]
  scoreHist: { edges: number[]; counts: number[][] }
  valueSeries: HistogramSeries[]
  valueHist: { edges: number[]; counts: number[][] }
  images: { scores: Buffer; values: Buffer }
}

const fmt = (x: number | null | undefined, d = 3) => (x === null || x === undefined ? '–' : x.toFixed(d))
const excerpt = (s: string, n = 400) => (s.length > n ? s.slice(0, n) + ' …' : s)

function summaryRows(s: CleanSummary): Array<[string, string]> {
  const r = s.rules
  return [
    ['input', s.input],
    ['model', s.model ?? 'unknown'],
    ['records in input', String(s.total_lines)],
    ['scored (total / this run / resumed)', `${s.scored} / ${s.scored_this_run} / ${s.resumed}`],
    ['skipped (unusable records)', String(s.skipped)],
    ['errors (refused by the service)', String(s.errors)],
    ['pairs', String(s.pairs)],
    ['pair accuracy (chosen > rejected)', fmt(s.pair_accuracy)],
    ['margin mean ± std', `${fmt(s.value_stats.mean)} ± ${fmt(s.value_stats.std)}`],
    ['margin min / max', `${fmt(s.value_stats.min)} / ${fmt(s.value_stats.max)}`],
    [
      'flag rules',
      [
        r.lowestPct !== undefined ? `lowest ${r.lowestPct}% (cutoff ${fmt(s.value_stats.lowestCutoff)})` : '',
        r.threshold !== undefined ? `below ${r.threshold}` : '',
        r.zscore !== undefined ? `|z| > ${r.zscore}` : '',
      ]
        .filter(Boolean)
        .join(', ') || 'none',
    ],
    ...s.skip_reasons.map((r): [string, string] => [`skipped/refused: ${r.reason}`, `${r.count}${r.first_at ? ` (first at ${r.first_at})` : ''}`]),
    ...(s.restarted ? [['restarted', s.restarted] as [string, string]] : []),
    ['flagged', `${s.flagged} (lowest_pct ${s.flag_counts.lowest_pct}, below_threshold ${s.flag_counts.below_threshold}, zscore_outlier ${s.flag_counts.zscore_outlier})`],
    ['throughput this run', `${fmt(s.samples_per_s, 1)} samples/s over ${fmt(s.elapsed_s, 1)} s`],
  ]
}

function binRows(series: HistogramSeries[], hist: ReportData['scoreHist']): string[][] {
  return hist.counts[0]!.map((_, b) => [
    `[${fmt(hist.edges[b], 2)}, ${fmt(hist.edges[b + 1], 2)})`,
    ...series.map((_, s) => String(hist.counts[s]![b])),
  ])
}

function renderReport(kind: 'md' | 'html', d: ReportData): string {
  return kind === 'md' ? renderMarkdown(d) : renderHtml(d)
}

function renderMarkdown(d: ReportData): string {
  const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')
  const quote = (s: string) => excerpt(s).split(/\r?\n/).map((l) => `> ${l}`).join('\n')
  const table = (head: string[], rows: string[][]) =>
    [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(mdCell).join(' | ')} |`)].join('\n')
  const out: string[] = []
  out.push('# Data cleaning report', '')
  out.push(table(['', ''], summaryRows(d.summary)), '')
  out.push('## Score histograms', '')
  out.push(`![scores: ${d.scoreSeries.map((s) => s.label).join(' (blue) vs ')} (orange)](histogram-scores.png)`, '')
  out.push(`![${d.valueSeries[0]!.label}](histogram-margin.png)`, '')
  out.push('<details><summary>bin counts</summary>', '')
  out.push(table(['bin', ...d.scoreSeries.map((s) => s.label)], binRows(d.scoreSeries, d.scoreHist)), '')
  out.push(table(['bin', d.valueSeries[0]!.label], binRows(d.valueSeries, d.valueHist)), '')
  out.push('</details>', '')
  out.push(`## Flagged examples (lowest ${d.flagged.length} of ${d.summary.flagged}; all in flagged.jsonl)`, '')
  for (const f of d.flagged) {
    const t = d.texts.get(f.id)
    out.push(`### ${f.id} — margin ${fmt(f.value)} (${f.reasons.join(', ')})`, '')
    out.push(`chosen ${fmt(f.chosen_score)} / rejected ${fmt(f.rejected_score)}${f.truncated ? ' · truncated' : ''}`, '')
    if (t) {
      out.push('**prompt**', '', quote(t.prompt), '', '**chosen**', '', quote(t.chosen), '')
      if (t.rejected !== undefined) out.push('**rejected**', '', quote(t.rejected), '')
    }
  }
  return out.join('\n')
}

function renderHtml(d: ReportData): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
  const table = (head: string[], rows: string[][]) =>
    `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows
      .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`)
      .join('')}</table>`
  const img = (png: Buffer, alt: string) => `<img alt="${esc(alt)}" src="data:image/png;base64,${png.toString('base64')}">`
  const parts: string[] = []
  parts.push('<!doctype html><meta charset="utf-8"><title>Data cleaning report</title>')
  parts.push('<style>body{font:14px sans-serif;max-width:60em;margin:auto}td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}blockquote{white-space:pre-wrap;background:#f6f6f6;margin:4px 0;padding:4px}</style>')
  parts.push('<h1>Data cleaning report</h1>', table(['', ''], summaryRows(d.summary)))
  parts.push('<h2>Score histograms</h2>', img(d.images.scores, 'chosen (blue) vs rejected (orange)'), img(d.images.values, d.valueSeries[0]!.label))
  parts.push(table(['bin', ...d.scoreSeries.map((s) => s.label)], binRows(d.scoreSeries, d.scoreHist)))
  parts.push(`<h2>Flagged examples (lowest ${d.flagged.length} of ${d.summary.flagged})</h2>`)
  for (const f of d.flagged) {
    const t = d.texts.get(f.id)
    parts.push(`<h3>${esc(f.id)} — margin ${fmt(f.value)} (${esc(f.reasons.join(', '))})</h3>`)
    if (t) {
      parts.push(`<b>prompt</b><blockquote>${esc(excerpt(t.prompt))}</blockquote><b>chosen</b><blockquote>${esc(excerpt(t.chosen))}</blockquote>`)
      if (t.rejected !== undefined) parts.push(`<b>rejected</b><blockquote>${esc(excerpt(t.rejected))}</blockquote>`)
    }
  }
  return parts.join('\n') + '\n'
}

// ------------------------------------------------------------------------------------------------ main
const USAGE = `usage: clean --input FILE --out DIR [--format auto|ours|hh-rlhf|llamafactory]
             [--url http://127.0.0.1:8080 | --in-process [--models-dir models]] [--model NAME] [--api-key KEY]
             [--batch-size 16] [--concurrency 4] [--limit N]
             [--lowest-pct 5] [--threshold X] [--zscore 3] [--report md|html] [--report-examples 20] [--no-progress]`

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      format: { type: 'string', default: 'auto' },
      ...COMMON_ARGS,
      'batch-size': { type: 'string', default: '16' },
      limit: { type: 'string', default: '0' },
      'lowest-pct': { type: 'string', default: '5' },
      threshold: { type: 'string' },
      zscore: { type: 'string', default: '3' },
      report: { type: 'string', default: 'md' },
      'report-examples': { type: 'string', default: '20' },
    },
  })
  if (values.help || !values.input || !values.out) {
    process.stderr.write(USAGE + '\n')
    return values.help ? 0 : 2
  }
  const num = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined || v === 'off') return undefined
    const n = Number(v)
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${v}`)
    return n
  }
  if (!(DATASET_FORMATS as readonly string[]).includes(values.format!)) {
    throw new Error(`--format ${JSON.stringify(values.format)} is not a dataset format; use one of ${DATASET_FORMATS.join(', ')}`)
  }
  if (values.report !== 'md' && values.report !== 'html') throw new Error(`--report must be md or html, got ${JSON.stringify(values.report)}`)
  const opts: CleanOptions = {
    input: values.input,
    out: values.out,
    format: values.format as DatasetFormat,
    model: values.model,
    batchSize: num('batch-size', values['batch-size'], 1)!,
    concurrency: num('concurrency', values.concurrency, 1)!,
    limit: num('limit', values.limit, 0)!,
    rules: {
      lowestPct: num('lowest-pct', values['lowest-pct'], 0),
      threshold: values.threshold === undefined ? undefined : num('threshold', values.threshold, -Infinity),
      zscore: num('zscore', values.zscore, 0),
    },
    report: values.report,
    reportExamples: num('report-examples', values['report-examples'], 0)!,
    progress: !values['no-progress'],
  }
  const conn = await connectFromArgs(values)
  try {
    const s = await runClean(conn.client, opts)
    if (s.restarted) process.stderr.write(`clean: ${s.restarted}\n`)
    const failed = nothingScored(s)
    if (failed) {
      process.stderr.write(`clean: ${failed}\n`)
      return 1
    }
    process.stdout.write(
      `scored ${s.scored} (this run ${s.scored_this_run}, resumed ${s.resumed}), skipped ${s.skipped}, errors ${s.errors}, ` +
        `flagged ${s.flagged}; pair accuracy ${fmt(s.pair_accuracy)}; ${fmt(s.samples_per_s, 1)} samples/s\n` +
        `outputs in ${opts.out}: scores.jsonl flagged.jsonl summary.json report.${opts.report} histogram-*.png\n`,
    )
    return 0
  } finally {
    await conn.close()
  }
}

/** Why a run that scored nothing at all is a failure (wrong --format, wrong file, service refusing everything);
 *  null when something was scored. The outputs are still written, for the details. */
export function nothingScored(s: CleanSummary): string | null {
  if (s.scored > 0) return null
  if (s.total_lines === 0) return `${s.input} has no records`
  const reasons = s.skip_reasons.map((r) => `${r.count} × ${r.reason}${r.first_at ? ` (first at ${r.first_at})` : ''}`).join('; ')
  return `no record of ${s.input} could be scored (${s.skipped} skipped, ${s.errors} refused): ${reasons}`
}

runIfEntry(import.meta.url, 'clean', main)
