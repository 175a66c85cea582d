// `bon`: best-of-N selection through /v1/rank, plus the paper's length check: are best-of-N gains just the RM
// preferring longer answers? For each prompt with N candidates it ranks all N once (scores are per candidate,
// so the best of the first n is known for every n <= N without more calls) and reports, per n = 1, 2, 4 … N,
// the mean score and mean token length of the picks; n = 1 (the first candidate, i.e. one policy sample) is
// the baseline. With --length-control the length-controlled picks are reported too. The table goes to stdout
// (and --summary as JSON); the score-vs-N and length-vs-N curves to a PNG next to it (--plot, or x.png beside
// --summary x.json / --out x.jsonl).
//
//   node --import tsx src/cli/bon.ts --input prompts.jsonl [--out picks.jsonl] [--length-control ratio:1.5]
// Input lines: {"id"?, "prompt": string | messages, "candidates": [string | parts, ...]}; media parts as in our
// dataset JSONL ({"type": "image", "path": …} relative to the input file, or {"type": "image", "data": base64}).
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'
import type { RewardClient } from '../../clients/typescript/index.js'
import { LengthControlSchema, argmax, selectWithLengthControl, type LengthControl } from '../rlhf/length-control.ts'
import { COMMON_ARGS, connectFromArgs, runIfEntry } from './connect.ts'
import { Canvas, drawLineChart, type ChartLayout, type Rgb } from './chart.ts'
import { ourContent } from './datasets.ts'
import { createProgress } from './progress.ts'

export interface BonOptions {
  input: string
  out?: string
  model?: string
  lengthControl?: LengthControl
  concurrency: number
  progress: boolean
}

/** One line of the picks output. */
export interface BonPick {
  id: string
  best: number
  scores: number[]
  candidate_tokens: number[]
  length: { mean_length: number; chosen_length: number; chosen_vs_mean: number }
  length_controlled?: { best_index: number; chosen_length: number; chosen_vs_mean: number }
}

export interface BonRow {
  n: number
  prompts: number
  mean_score: number
  mean_tokens: number
  /** mean_tokens / mean tokens of the n = 1 picks. */
  tokens_vs_n1: number
  controlled_mean_score?: number
  controlled_mean_tokens?: number
  controlled_tokens_vs_n1?: number
}

export interface BonSummary {
  prompts: number
  max_n: number
  length_control: LengthControl | null
  rows: BonRow[]
  mean_candidate_tokens: number
}

/** n = 1, 2, 4, … up to maxN, and maxN itself. */
export function nValues(maxN: number): number[] {
  const ns: number[] = []
  for (let n = 1; n < maxN; n *= 2) ns.push(n)
  ns.push(maxN)
  return ns
}

/** Per-n aggregates from the full-N scores; a prompt with fewer than n candidates does not count for that n. */
export function summarise(picks: readonly BonPick[], control: LengthControl | undefined): BonSummary {
  const maxN = Math.max(0, ...picks.map((p) => p.scores.length))
  const rows: BonRow[] = []
  let n1Tokens = NaN
  let n1Controlled = NaN
  for (const n of maxN > 0 ? nValues(maxN) : []) {
    const eligible = picks.filter((p) => p.scores.length >= n)
    let score = 0
    let tokens = 0
    let cScore = 0
    let cTokens = 0
    for (const p of eligible) {
      const scores = p.scores.slice(0, n)
      const lengths = p.candidate_tokens.slice(0, n)
      const best = argmax(scores)
      score += scores[best]!
      tokens += lengths[best]!
      if (control) {
        const c = selectWithLengthControl(scores, lengths, control).best_index
        cScore += scores[c]!
        cTokens += lengths[c]!
      }
    }
    const k = eligible.length || 1
    const row: BonRow = { n, prompts: eligible.length, mean_score: score / k, mean_tokens: tokens / k, tokens_vs_n1: NaN }
    if (n === 1) n1Tokens = row.mean_tokens
    row.tokens_vs_n1 = row.mean_tokens / n1Tokens
    if (control) {
      row.controlled_mean_score = cScore / k
      row.controlled_mean_tokens = cTokens / k
      if (n === 1) n1Controlled = row.controlled_mean_tokens
      row.controlled_tokens_vs_n1 = row.controlled_mean_tokens / n1Controlled
    }
    rows.push(row)
  }
  const allLengths = picks.flatMap((p) => p.candidate_tokens)
  return {
    prompts: picks.length,
    max_n: maxN,
    length_control: control ?? null,
    rows,
    mean_candidate_tokens: allLengths.length ? allLengths.reduce((a, b) => a + b, 0) / allLengths.length : 0,
  }
}

export async function runBon(client: RewardClient, opts: BonOptions): Promise<{ picks: BonPick[]; summary: BonSummary }> {
  const lines: Array<{ id: string; body: Record<string, unknown> }> = []
  const baseDir = path.dirname(path.resolve(opts.input))
  const rl = readline.createInterface({ input: fs.createReadStream(opts.input), crlfDelay: Infinity })
  let lineNo = 0
  try {
    for await (const line of rl) {
      lineNo++
      if (!line.trim()) continue
      // Every problem with a line is fatal and names the file and line: a best-of-N table over a silently
      // smaller set of prompts would not compare with another run's.
      const where = `${opts.input}:${lineNo}`
      let r: { id?: string | number; prompt?: unknown; candidates?: unknown; responses?: unknown }
      try {
        r = JSON.parse(line)
      } catch (err) {
        throw new Error(`${where}: not valid JSON (${(err as Error).message})`)
      }
      const candidates = r?.candidates ?? r?.responses
      if (!r || typeof r !== 'object' || r.prompt === undefined || !Array.isArray(candidates) || candidates.length === 0) {
        throw new Error(`${where}: each line needs "prompt" and a non-empty "candidates" list`)
      }
      if (typeof r.prompt !== 'string' && !Array.isArray(r.prompt)) throw new Error(`${where}: "prompt" must be a string or a list of messages`)
      try {
        // Media parts may name files ({"type": "image", "path": "img/1.png"}, relative to the input file).
        const prompt =
          typeof r.prompt === 'string'
            ? r.prompt
            : await Promise.all((r.prompt as Array<{ role: string; content: unknown }>).map(async (m) => ({ ...m, content: await ourContent(m?.content, baseDir) })))
        lines.push({
          id: r.id === undefined ? `line-${lineNo}` : String(r.id),
          body: {
            prompt,
            candidates: await Promise.all(candidates.map((c) => ourContent(c, baseDir))),
            ...(opts.model ? { model: opts.model } : {}),
            ...(opts.lengthControl ? { length_control: opts.lengthControl } : {}),
          },
        })
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`)
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw new Error(`${opts.input}: cannot read (${(err as NodeJS.ErrnoException).code})`)
    throw err
  }
  if (lines.length === 0) throw new Error(`${opts.input} has no prompts (one JSON object per line: {"prompt", "candidates"})`)
  const progress = opts.progress ? createProgress('bon', lines.length) : undefined
  const picks = new Array<BonPick>(lines.length)
  let next = 0
  const worker = async () => {
    while (next < lines.length) {
      const i = next++
      const res = (await client.rank(lines[i]!.body)) as unknown as Omit<BonPick, 'id'>
      picks[i] = {
        id: lines[i]!.id,
        best: res.best,
        scores: res.scores,
        candidate_tokens: res.candidate_tokens,
        length: res.length,
        ...(res.length_controlled
          ? {
              length_controlled: {
                best_index: res.length_controlled.best_index,
                chosen_length: res.length_controlled.chosen_length,
                chosen_vs_mean: res.length_controlled.chosen_vs_mean,
              },
            }
          : {}),
      }
      progress?.tick()
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, lines.length) }, worker))
  progress?.done()
  if (opts.out) fs.writeFileSync(opts.out, picks.map((p) => JSON.stringify(p)).join('\n') + (picks.length ? '\n' : ''))
  return { picks, summary: summarise(picks, opts.lengthControl) }
}

const BLUE: Rgb = [31, 119, 180]
const ORANGE: Rgb = [255, 127, 14]

/** Mean score and mean length of the pick vs N, side by side (with the length-controlled picks when asked). */
export async function renderBonPng(s: BonSummary): Promise<{ png: Buffer; layouts: ChartLayout[] }> {
  const canvas = new Canvas(1200, 400)
  const x = s.rows.map((r) => r.n)
  const lc = s.length_control !== null
  const series = (pick: (r: BonRow) => number | undefined, lcPick: (r: BonRow) => number | undefined) => [
    { label: 'best of N', color: BLUE, y: s.rows.map(pick) },
    ...(lc ? [{ label: 'length-controlled', color: ORANGE, y: s.rows.map(lcPick) }] : []),
  ]
  const common = { xLabel: 'N (candidates per prompt)', x, log2: true }
  const layouts = [
    await drawLineChart(canvas, { x: 0, y: 0, width: 600, height: 400 }, {
      ...common,
      title: `Score of the pick vs N (${s.prompts} prompts)`,
      yLabel: 'mean reward score',
      series: series((r) => r.mean_score, (r) => r.controlled_mean_score),
    }),
    await drawLineChart(canvas, { x: 600, y: 0, width: 600, height: 400 }, {
      ...common,
      title: 'Length of the pick vs N',
      yLabel: 'mean tokens',
      series: series((r) => r.mean_tokens, (r) => r.controlled_mean_tokens),
    }),
  ]
  return { png: await canvas.png(), layouts }
}

/** Where the curves go: --plot, else next to the summary (x.json → x.png) or the picks (x.jsonl → x.png). */
export function plotPath(values: { plot?: string; summary?: string; out?: string }): string | undefined {
  if (values.plot) return values.plot
  const nextTo = values.summary ?? values.out
  return nextTo ? nextTo.replace(/\.(jsonl?|txt)$/i, '') + '.png' : undefined
}

export function formatSummary(s: BonSummary): string {
  const f = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d))
  const control = s.length_control
  const head = ['n', 'prompts', 'mean score', 'mean tokens', 'tokens vs n=1']
  if (control) head.push('LC mean score', 'LC mean tokens', 'LC tokens vs n=1')
  const rows = s.rows.map((r) => {
    const cells = [String(r.n), String(r.prompts), f(r.mean_score), f(r.mean_tokens, 1), f(r.tokens_vs_n1)]
    if (control) cells.push(f(r.controlled_mean_score), f(r.controlled_mean_tokens, 1), f(r.controlled_tokens_vs_n1))
    return cells
  })
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ')
  const lc = control ? (control.mode === 'ratio' ? `ratio k=${control.k}` : `penalty ${control.per_token}/token over ${control.threshold}`) : 'off'
  return [
    `best-of-N over ${s.prompts} prompts (N up to ${s.max_n}; mean candidate length ${f(s.mean_candidate_tokens, 1)} tokens; length control: ${lc})`,
    line(head),
    ...rows.map(line),
  ].join('\n')
}

/** "ratio:1.5" | "penalty:0.01" | "penalty:0.01:200" */
export function parseLengthControl(spec: string): LengthControl {
  const [mode, a, b] = spec.split(':')
  const parsed =
    mode === 'ratio'
      ? LengthControlSchema.safeParse({ mode, k: Number(a) })
      : LengthControlSchema.safeParse({ mode, per_token: Number(a), ...(b !== undefined ? { threshold: Number(b) } : {}) })
  if (!parsed.success) throw new Error(`--length-control must be ratio:K (K >= 1) or penalty:PER_TOKEN[:THRESHOLD], got ${spec}`)
  return parsed.data
}

const USAGE = `usage: bon --input prompts.jsonl [--out picks.jsonl] [--summary summary.json] [--plot curves.png]
           [--url http://127.0.0.1:8080 | --in-process [--models-dir models]] [--model NAME] [--api-key KEY]
           [--length-control ratio:K | penalty:PER_TOKEN[:THRESHOLD]] [--concurrency 4] [--no-progress]`

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      summary: { type: 'string' },
      plot: { type: 'string' },
      ...COMMON_ARGS,
      'length-control': { type: 'string' },
    },
  })
  if (values.help || !values.input) {
    process.stderr.write(USAGE + '\n')
    return values.help ? 0 : 2
  }
  const concurrency = Number(values.concurrency)
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency must be an integer >= 1')
  const conn = await connectFromArgs(values)
  try {
    const { summary } = await runBon(conn.client, {
      input: values.input,
      out: values.out,
      model: values.model,
      lengthControl: values['length-control'] ? parseLengthControl(values['length-control']) : undefined,
      concurrency,
      progress: !values['no-progress'],
    })
    if (values.summary) fs.writeFileSync(values.summary, JSON.stringify(summary, null, 2) + '\n')
    process.stdout.write(formatSummary(summary) + '\n')
    const plot = plotPath(values)
    if (plot) {
      fs.writeFileSync(plot, (await renderBonPng(summary)).png)
      process.stdout.write(`score-vs-N and length-vs-N curves: ${plot}\n`)
    }
    return 0
  } finally {
    await conn.close()
  }
}

runIfEntry(import.meta.url, 'bon', main)
