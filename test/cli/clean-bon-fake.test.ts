// clean and bon CLI logic over real HTTP against the app with the fake engine (fast; the real-model runs are in
// cli-e2e.test.ts): outputs, resume, a refused sample isolated as an error line, bon's per-n table.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { RewardClient } from '../../clients/typescript/index.js'
import { runClean, readDone, type CleanOptions } from '../../src/cli/clean.ts'
import { runBon, summarise, nValues, parseLengthControl, formatSummary, plotPath, renderBonPng } from '../../src/cli/bon.ts'
import { decodeImage } from '../../src/preprocess/image/sharp.ts'
import { buildTestApp } from '../helpers/build-app.ts'
import { runCli } from '../helpers/run-cli.ts'


/** The fake-engine app listening on 127.0.0.1, a client for it, and a temp dir; all removed after the test. */
async function setup(t: { teardown: (fn: () => unknown) => void }) {
  const { app } = await buildTestApp()
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-fake-'))
  t.teardown(() => {
    fs.rmSync(dir, { recursive: true, force: true })
    return app.close()
  })
  return { client: new RewardClient({ baseUrl: address }), dir }
}

const cleanOpts = (input: string, out: string, extra: Partial<CleanOptions> = {}): CleanOptions => ({
  input,
  out,
  format: 'auto',
  batchSize: 3,
  concurrency: 2,
  limit: 0,
  rules: { lowestPct: 20, zscore: 3 },
  report: 'md',
  reportExamples: 5,
  progress: false,
  ...extra,
})

t.test('clean: outputs, a refused sample becomes an error line, resume scores only the rest', async (t) => {
  const { client, dir } = await setup(t)
  const input = path.join(dir, 'data.jsonl')
  const rows = Array.from({ length: 10 }, (_, i) => ({
    id: `r${i}`,
    messages: [{ role: 'user', content: `question ${i}` }],
    chosen: `good answer ${i}`,
    rejected: `bad ${i}`,
  }))
  // Media is refused by the fake model (no image preprocessing): 422 for that sample only.
  rows[4] = { ...rows[4]!, messages: [{ role: 'user', content: [{ type: 'image', data: 'aGk=' }, { type: 'text', text: 'q' }] }] } as never
  fs.writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
  const out = path.join(dir, 'out')

  const first = await runClean(client, cleanOpts(input, out, { limit: 6 }))
  t.equal(first.scored_this_run, 6)
  t.equal(first.errors, 1)
  t.equal(first.scored, 5)
  // Simulate a kill mid-write: a torn last line.
  fs.appendFileSync(path.join(out, 'scores.jsonl'), '{"id":"r6","chosen_sc')
  const second = await runClean(client, cleanOpts(input, out))
  t.equal(second.resumed, 5, 'scored ids are done; the error and the torn line are not')
  t.equal(second.scored_this_run, 5, 'r4 (retried, refused again) + r6..r9')
  t.equal(second.scored, 9)
  t.equal(second.errors, 1)
  const { latest } = readDone(path.join(out, 'scores.jsonl'))
  t.equal(latest.size, 10)
  t.same(latest.get('r4')!.error!.code, 'unsupported_modality')
  const r0 = latest.get('r0')!
  t.ok(Math.abs(r0.value! - (r0.chosen_score! - r0.rejected_score!)) < 1e-12, 'value = margin')
  const flagged = fs.readFileSync(path.join(out, 'flagged.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(flagged.length, second.flagged)
  t.ok(flagged.length >= 2, 'lowest 20% of 9 = 2')
  t.ok(flagged.every((f: { reasons: string[] }) => f.reasons.length > 0))
  const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8')
  t.match(report, /# Data cleaning report/)
  t.match(report, /!\[.*\]\(histogram-scores\.png\)/)
  t.match(report, new RegExp(`### ${flagged[0].id} — margin`))
  t.match(report, /\*\*prompt\*\*\n\n> question \d/)
  t.equal(fs.readFileSync(path.join(out, 'histogram-scores.png')).subarray(1, 4).toString(), 'PNG')
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
  t.equal(summary.model, 'fake-rm/1')
  // HTML variant, nothing left to score.
  const third = await runClean(client, cleanOpts(input, out, { report: 'html' }))
  t.equal(third.scored_this_run, 1, 'only the error is retried')
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8')
  t.match(html, /<img alt="[^"]*" src="data:image\/png;base64,/)
})

t.test('bon: per-n picks from one rank call, length control, summary table', async (t) => {
  const { client, dir } = await setup(t)
  const input = path.join(dir, 'bon.jsonl')
  const lines = Array.from({ length: 6 }, (_, i) => ({
    id: `q${i}`,
    prompt: `Question ${i}?`,
    candidates: ['short', `a somewhat longer answer ${i}`, `${'very long answer '.repeat(i + 2)}`, 'mid-size reply', `x${i}`],
  }))
  fs.writeFileSync(input, lines.map((l) => JSON.stringify(l)).join('\n') + '\n')
  const out = path.join(dir, 'picks.jsonl')
  const lc = parseLengthControl('ratio:1.2')
  const { picks, summary } = await runBon(client, { input, out, lengthControl: lc, concurrency: 3, progress: false })
  t.equal(picks.length, 6)
  t.same(summary.rows.map((r) => r.n), [1, 2, 4, 5])
  // n = N must agree with the service's own pick.
  const meanBestTokens = picks.reduce((a, p) => a + p.candidate_tokens[p.best]!, 0) / picks.length
  t.ok(Math.abs(summary.rows[3]!.mean_tokens - meanBestTokens) < 1e-9)
  const n1 = picks.reduce((a, p) => a + p.candidate_tokens[0]!, 0) / picks.length
  t.ok(Math.abs(summary.rows[0]!.mean_tokens - n1) < 1e-9, 'n = 1 is the first candidate')
  t.ok(Math.abs(summary.rows[3]!.tokens_vs_n1 - meanBestTokens / n1) < 1e-9)
  const lcTokens = picks.reduce((a, p) => a + p.candidate_tokens[p.length_controlled!.best_index]!, 0) / picks.length
  t.ok(Math.abs(summary.rows[3]!.controlled_mean_tokens! - lcTokens) < 1e-9, 'controlled pick from the service = local recomputation')
  t.ok(summary.rows.every((r) => r.mean_score >= summary.rows[0]!.mean_score - 1e-12), 'more candidates never lower the best score')
  t.equal(fs.readFileSync(out, 'utf8').trim().split('\n').length, 6)
  t.match(formatSummary(summary), /LC tokens vs n=1/)
})

t.test('bon helpers', async (t) => {
  t.same(nValues(8), [1, 2, 4, 8])
  t.same(nValues(1), [1])
  t.same(nValues(6), [1, 2, 4, 6])
  t.same(parseLengthControl('penalty:0.01:200'), { mode: 'penalty', per_token: 0.01, threshold: 200 })
  t.throws(() => parseLengthControl('ratio:0.5'), /--length-control/)
  const s = summarise(
    [
      { id: 'a', best: 1, scores: [0, 2], candidate_tokens: [10, 30], length: { mean_length: 20, chosen_length: 30, chosen_vs_mean: 1.5 } },
      { id: 'b', best: 0, scores: [5], candidate_tokens: [8], length: { mean_length: 8, chosen_length: 8, chosen_vs_mean: 1 } },
    ],
    undefined,
  )
  t.same(s.rows.map((r) => [r.n, r.prompts, r.mean_tokens]), [
    [1, 2, 9],
    [2, 1, 30],
  ])
})

const cli = runCli

const pair = (i: number, q = 'question') => ({ id: `r${i}`, messages: [{ role: 'user', content: `${q} ${i}` }], chosen: `good ${i}`, rejected: `bad ${i}` })

t.test('clean: a rerun on another input starts afresh, and no report of an earlier run stays', async (t) => {
  const { client, dir } = await setup(t)
  const a = path.join(dir, 'a.jsonl')
  const b = path.join(dir, 'b.jsonl')
  fs.writeFileSync(a, [0, 1, 2, 3].map((i) => JSON.stringify(pair(i))).join('\n') + '\n')
  fs.writeFileSync(b, [7, 8].map((i) => JSON.stringify(pair(i, 'other'))).join('\n') + '\n')
  const out = path.join(dir, 'out')
  const first = await runClean(client, cleanOpts(a, out, { report: 'html' }))
  t.equal(first.scored, 4)
  t.equal(first.restarted, null)
  t.ok(fs.existsSync(path.join(out, 'report.html')))
  // Same input again: a resume (nothing new), no restart.
  const again = await runClean(client, cleanOpts(a, out, { report: 'html' }))
  t.equal(again.resumed, 4)
  t.equal(again.restarted, null)
  // Another file into the same --out: the old scores must not be mixed in, and report.html must not survive
  // next to the new report.md.
  const second = await runClean(client, cleanOpts(b, out))
  t.match(second.restarted, /held the outputs of another run \(input, input content changed\)/)
  t.equal(second.resumed, 0)
  t.equal(second.scored, 2)
  t.same([...readDone(path.join(out, 'scores.jsonl')).latest.keys()].sort(), ['r7', 'r8'])
  t.notOk(fs.existsSync(path.join(out, 'report.html')), 'stale report.html removed')
  t.match(fs.readFileSync(path.join(out, 'report.md'), 'utf8'), /restarted/)
  t.same(JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')).input, b)
  // The same path with other content (the dataset was regenerated) also starts afresh.
  fs.writeFileSync(b, JSON.stringify(pair(9)) + '\n')
  const third = await runClean(client, cleanOpts(b, out))
  t.match(third.restarted, /\(input content changed\)/)
  t.same([...readDone(path.join(out, 'scores.jsonl')).latest.keys()], ['r9'])
})

t.test('clean: a file where every record is skipped, or an unknown --format, exits non-zero with the reason', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-exit-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const input = path.join(dir, 'ours.jsonl')
  fs.writeFileSync(input, [0, 1, 2].map((i) => JSON.stringify(pair(i))).join('\n') + '\n')
  // Our JSONL read as hh-rlhf: every record skipped before any request (no server needed).
  const out = path.join(dir, 'out')
  const skipped = await cli('clean', ['--input', input, '--out', out, '--format', 'hh-rlhf', '--url', 'http://127.0.0.1:9', '--no-progress'])
  t.equal(skipped.status, 1, skipped.stderr)
  t.match(skipped.stderr, /no record of .*ours\.jsonl could be scored \(3 skipped, 0 refused\): 3 × conversation does not end with an assistant response \(first at .*ours\.jsonl:1\)/)
  t.ok(fs.existsSync(path.join(out, 'summary.json')), 'outputs still written, for the details')
  const bogus = await cli('clean', ['--input', input, '--out', out, '--format', 'sharegpt'])
  t.equal(bogus.status, 1)
  t.match(bogus.stderr, /--format "sharegpt" is not a dataset format; use one of auto, ours, hh-rlhf, llamafactory/)
  const empty = path.join(dir, 'empty.jsonl')
  fs.writeFileSync(empty, '\n')
  const none = await cli('clean', ['--input', empty, '--out', path.join(dir, 'o2'), '--url', 'http://127.0.0.1:9', '--no-progress'])
  t.equal(none.status, 1)
  t.match(none.stderr, /empty\.jsonl has no records/)
})

t.test('bon: errors name the file and line; the curves are drawn as a PNG next to the table', async (t) => {
  const { dir } = await setup(t)
  const { app } = await buildTestApp()
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const bad = path.join(dir, 'bad.jsonl')
  const ok = { prompt: 'Q?', candidates: ['a', 'bb', 'a much longer answer than the others'] }
  fs.writeFileSync(bad, [JSON.stringify(ok), '', '{"prompt": "Q?", "candidates": ["a"', JSON.stringify(ok)].join('\n') + '\n')
  const client = new RewardClient({ baseUrl: url })
  await t.rejects(runBon(client, { input: bad, concurrency: 1, progress: false }), new RegExp(`bad\\.jsonl:3: not valid JSON`))
  fs.writeFileSync(bad, JSON.stringify(ok) + '\n' + JSON.stringify({ prompt: 'Q', candidates: [] }) + '\n')
  await t.rejects(runBon(client, { input: bad, concurrency: 1, progress: false }), /bad\.jsonl:2: each line needs "prompt" and a non-empty "candidates" list/)
  fs.writeFileSync(bad, JSON.stringify({ prompt: 'Q', candidates: [[{ type: 'image', path: 'nope.png' }]] }) + '\n')
  await t.rejects(runBon(client, { input: bad, concurrency: 1, progress: false }), /bad\.jsonl:1: cannot read image .*nope\.png: ENOENT/)
  fs.writeFileSync(bad, '\n')
  await t.rejects(runBon(client, { input: bad, concurrency: 1, progress: false }), /bad\.jsonl has no prompts/)

  const input = path.join(dir, 'p.jsonl')
  fs.writeFileSync(input, Array.from({ length: 4 }, (_, i) => JSON.stringify({ ...ok, id: `q${i}`, candidates: [...ok.candidates, `x${i}`] })).join('\n') + '\n')
  const summaryFile = path.join(dir, 'bon-summary.json')
  const res = await cli('bon', ['--input', input, '--summary', summaryFile, '--url', url, '--length-control', 'ratio:2', '--no-progress'])
  t.equal(res.status, 0, res.stderr)
  const png = path.join(dir, 'bon-summary.png')
  t.match(res.stdout, new RegExp(`curves: ${png.replace(/[.]/g, '\\.')}`))
  const img = await decodeImage(fs.readFileSync(png), 'png', { maxPixels: 1e7, timeoutSeconds: 10 })
  t.same([img.width, img.height], [1200, 400])
  // The curves: each row's point is drawn (a marker in the series colour) where the chart's axes put it.
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8'))
  const { layouts } = await renderBonPng(summary)
  t.same(layouts.map((l) => l.xTicks.map((tk) => tk.label)), [['1', '2', '4'], ['1', '2', '4']])
  t.same(layouts.map((l) => l.legend.map((x) => x.label)), [['best of N', 'length-controlled'], ['best of N', 'length-controlled']])
  const px = (x: number, y: number) => Array.from(img.data.subarray((y * 1200 + x) * 3, (y * 1200 + x) * 3 + 3))
  const rows = summary.rows as Array<{ n: number; mean_score: number; mean_tokens: number }>
  for (const [k, key] of [[0, 'mean_score'], [1, 'mean_tokens']] as const) {
    const l = layouts[k]!
    const yOf = (v: number) => {
      const [a, b] = [l.yTicks[0]!, l.yTicks[l.yTicks.length - 1]!]
      return Math.round(a.px + ((v - a.value) / (b.value - a.value)) * (b.px - a.px))
    }
    for (const r of rows) {
      const x = l.xTicks.find((tk) => tk.value === r.n)!.px
      const c = px(x, yOf(r[key]))
      t.ok(c[2]! > 150 && c[0]! < 120 || c[0]! > 200 && c[2]! < 80, `${key} at n=${r.n}: a series marker (${c})`)
    }
  }
  t.equal(plotPath({ out: 'picks.jsonl' }), 'picks.png')
  t.equal(plotPath({ summary: 's.json', out: 'picks.jsonl' }), 's.png')
  t.equal(plotPath({ plot: 'x.png', summary: 's.json' }), 'x.png')
  t.equal(plotPath({}), undefined)
})
