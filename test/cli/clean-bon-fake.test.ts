// clean and bon CLI logic over real HTTP against the app with the fake engine (fast; the real-model runs are in
// cli-e2e.test.ts): outputs, resume, a refused sample isolated as an error line, bon's per-n table.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { RewardClient } from '../../clients/typescript/index.js'
import { runClean, readDone, type CleanOptions } from '../../src/cli/clean.ts'
import { runBon, summarise, nValues, parseLengthControl, formatSummary } from '../../src/cli/bon.ts'
import { buildTestApp } from '../helpers/build-app.ts'

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
