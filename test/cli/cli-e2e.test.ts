// `clean` and `bon` end to end: the real CLIs (child processes) against a running server (real HTTP) on the
// default model, with the real hh-rlhf harmless-base test file. What is checked is the pipeline (every pair
// scored with finite values, resume after a kill, outputs consistent with the service's own answers), not the
// tiny default model's opinion of the data.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import { readDataset, type DatasetSample } from '../../src/cli/datasets.ts'
import { testConfig } from '../helpers/build-app.ts'
import { runCli } from '../helpers/run-cli.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const HH = path.resolve(root, '../shared/fixtures/preference/hh-rlhf-harmless-base-test.jsonl.gz')
// Samples per clean run: enough for real length variety and a kill mid-run, small enough for 2 shared cores.
const LIMIT = Number(process.env.CLEAN_E2E_LIMIT ?? 200)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-e2e-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))

const app = buildApp(testConfig({ MODELS_DIR: path.join(root, 'models'), EXECUTION_PROVIDERS: 'cpu', MAX_CLIENT_BATCH_SIZE: '64' }))
const base = await app.listen({ port: 0, host: '127.0.0.1' })
t.teardown(() => app.close())

const cli = runCli

const readJsonl = (file: string) =>
  fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>)

/** The first n usable hh-rlhf pairs, read the way `clean` reads them. */
async function hhSamples(n: number): Promise<DatasetSample[]> {
  const out: DatasetSample[] = []
  for await (const row of readDataset(HH, { format: 'hh-rlhf' })) {
    if ('skip' in row) continue
    out.push(row)
    if (out.length >= n) break
  }
  return out
}

async function score(messages: unknown[]): Promise<number[]> {
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: messages.map((m) => ({ messages: m })) } })
  if (res.statusCode !== 200) throw new Error(`/v1/score ${res.statusCode}: ${res.body}`)
  return res.json().scores
}

t.test('clean on hh-rlhf: killed mid-run, resumed, every pair scored once, outputs consistent', async (t) => {
  const out = path.join(dir, 'clean')
  const args = ['--input', HH, '--out', out, '--url', base, '--limit', String(LIMIT), '--batch-size', '8', '--concurrency', '2', '--no-progress']
  // First run: killed once some lines are written (a crash / preemption mid-dataset).
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/clean.ts'), ...args], { cwd: root, stdio: 'ignore' })
  const scores = path.join(out, 'scores.jsonl')
  for (let i = 0; i < 1200; i++) {
    if (fs.existsSync(scores) && readJsonl(scores).length >= 40) break
    await new Promise((r) => setTimeout(r, 50))
  }
  child.kill('SIGKILL')
  await new Promise((r) => child.once('exit', r))
  const partial = fs.readFileSync(scores, 'utf8').split('\n').filter(Boolean).length
  t.ok(partial >= 40 && partial < LIMIT, `killed after ${partial} of ${LIMIT} samples`)

  const t0 = Date.now()
  const res = await cli('clean', [...args, '--report', 'md'])
  t.equal(res.status, 0, res.stderr)
  const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
  t.comment(`resumed ${summary.resumed}, scored ${summary.scored_this_run} more in ${(Date.now() - t0) / 1000}s (${summary.samples_per_s.toFixed(1)} samples/s)`)
  t.ok(summary.resumed >= partial - 1, 'done lines were kept (a torn last line may be rescored)')
  const lines = readJsonl(scores)
  const ids = lines.map((l) => l.id)
  t.equal(new Set(ids).size, ids.length, 'no sample scored twice')
  t.equal(ids.length, LIMIT, 'every sample of the first LIMIT has a line')
  t.equal(summary.scored + summary.skipped, LIMIT)
  t.equal(summary.errors, 0)
  const scored = lines.filter((l) => l.value !== undefined)
  t.ok(scored.length >= LIMIT - 2, 'every usable pair scored')
  t.ok(scored.every((l) => Number.isFinite(l.chosen_score) && Number.isFinite(l.rejected_score)), 'finite scores')
  t.ok(scored.some((l) => l.truncated), 'long hh-rlhf dialogues exercise left truncation')

  // The scores are the service's: spot-check a few against /v1/score on the same conversations.
  const samples = await hhSamples(5)
  const direct = await score(samples.flatMap((s) => [s.chosen, s.rejected!]))
  samples.forEach((s, k) => {
    const line = lines.find((l) => l.id === s.id)!
    t.ok(Math.abs(line.chosen_score - direct[2 * k]!) < 1e-4, `${s.id} chosen`)
    t.ok(Math.abs(line.rejected_score - direct[2 * k + 1]!) < 1e-4, `${s.id} rejected`)
  })

  const flagged = readJsonl(path.join(out, 'flagged.jsonl'))
  t.ok(flagged.length >= Math.ceil(0.05 * scored.length), 'lowest 5% flagged at least')
  const cutoff = summary.value_stats.lowestCutoff
  t.ok(flagged.filter((f) => f.reasons.includes('lowest_pct')).every((f) => f.value <= cutoff))
  const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8')
  t.match(report, /pair accuracy \(chosen > rejected\) \| \d\.\d{3}/)
  t.match(report, /!\[[^\]]*\]\(histogram-scores\.png\)/)
  t.match(report, new RegExp(`### ${flagged[0]!.id} — margin`))
  for (const png of ['histogram-scores.png', 'histogram-margin.png']) {
    t.same([...fs.readFileSync(path.join(out, png)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], png)
  }
})

t.test('clean --in-process gives the same scores as the server', async (t) => {
  const out = path.join(dir, 'inproc')
  const res = await cli('clean', ['--input', HH, '--out', out, '--in-process', '--models-dir', path.join(root, 'models'), '--limit', '6', '--no-progress'])
  t.equal(res.status, 0, res.stderr)
  const samples = await hhSamples(6)
  const direct = await score(samples.map((s) => s.chosen))
  const lines = readJsonl(path.join(out, 'scores.jsonl'))
  t.equal(lines.length, 6)
  samples.forEach((s, k) => {
    const l = lines.find((x) => x.id === s.id)!
    t.ok(Math.abs(l.chosen_score - direct[k]!) < 1e-4, s.id)
  })
})

t.test('bon on hh-rlhf prompts: picks, length table vs n = 1, length control', async (t) => {
  // Prompts from real dialogues; candidates: the chosen and rejected replies plus a padded (longer) copy of
  // the rejected one, so the length check has something to catch.
  const input = path.join(dir, 'bon.jsonl')
  const lines: string[] = []
  for (const [k, smp] of (await hhSamples(20)).entries()) {
    const prompt = smp.chosen.slice(0, -1)
    const c = smp.chosen[smp.chosen.length - 1]!.content as string
    const r = smp.rejected![smp.rejected!.length - 1]!.content as string
    lines.push(JSON.stringify({ id: `p${k}`, prompt, candidates: [r, c, `${r} ${r}`, c.slice(0, Math.max(1, c.length >> 1))] }))
  }
  fs.writeFileSync(input, lines.join('\n') + '\n')
  const picks = path.join(dir, 'picks.jsonl')
  const summaryFile = path.join(dir, 'bon-summary.json')
  const res = await cli('bon', ['--input', input, '--out', picks, '--summary', summaryFile, '--url', base, '--length-control', 'ratio:1.5', '--no-progress'])
  t.equal(res.status, 0, res.stderr)
  t.match(res.stdout, /best-of-N over 20 prompts \(N up to 4/)
  t.match(res.stdout, /tokens vs n=1/)
  const summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8'))
  t.same(summary.rows.map((r: { n: number }) => r.n), [1, 2, 4])
  const got = readJsonl(picks)
  t.equal(got.length, 20)
  // The service's pick = argmax of /v1/score on the full conversations (rank scores each candidate alone).
  const p0 = JSON.parse(lines[0]!)
  const full = await score(p0.candidates.map((c: string) => [...p0.prompt, { role: 'assistant', content: c }]))
  got[0]!.scores.forEach((s: number, i: number) => t.ok(Math.abs(s - full[i]!) < 1e-4, `candidate ${i}: rank = score`))
  t.equal(got[0]!.best, full.indexOf(Math.max(...full)))
  const meanPickTokens = got.reduce((a, p) => a + p.candidate_tokens[p.best], 0) / got.length
  t.ok(Math.abs(summary.rows[2].mean_tokens - meanPickTokens) < 1e-9)
  for (const p of got) {
    const lc = p.length_controlled
    t.ok(p.candidate_tokens[lc.best_index] <= 1.5 * Math.min(...p.candidate_tokens), `${p.id}: controlled pick within 1.5x shortest`)
  }
})

t.test('clean with images (our JSONL, media paths relative to the file) and /get_reward native messages', async (t) => {
  const data = path.join(dir, 'mm')
  fs.mkdirSync(data)
  const img = (n: number) => path.relative(data, path.resolve(root, `../shared/fixtures/images/real/imagereward-${n}.webp`))
  const prompt = 'Describe the picture.'
  const rows = [1, 2].map((n) => ({
    id: `img-${n}`,
    category: 'caption',
    messages: [{ role: 'user', content: prompt }],
    chosen: 'A painting of an ocean with clouds and birds.',
    rejected: 'A red sports car in a parking lot.',
    images: [img(n)],
  }))
  fs.writeFileSync(path.join(data, 'data.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
  const out = path.join(dir, 'mm-out')
  const res = await cli('clean', ['--input', path.join(data, 'data.jsonl'), '--out', out, '--url', base, '--no-progress', '--report', 'html'])
  t.equal(res.status, 0, res.stderr)
  const lines = readJsonl(path.join(out, 'scores.jsonl'))
  t.equal(lines.length, 2)
  t.ok(lines.every((l) => Number.isFinite(l.chosen_score) && Number.isFinite(l.rejected_score)), JSON.stringify(lines))
  t.ok(lines.every((l) => l.chosen_tokens > 100), 'image tokens are counted')
  // bon with an image prompt (path relative to the input file): every candidate is scored against the image.
  const bonIn = path.join(data, 'bon.jsonl')
  const candidates = [rows[0]!.chosen, rows[0]!.rejected, 'Birds.']
  fs.writeFileSync(bonIn, JSON.stringify({ id: 'i1', prompt: [{ role: 'user', content: [{ type: 'image', path: img(1) }, { type: 'text', text: prompt }] }], candidates }) + '\n')
  const bon = await cli('bon', ['--input', bonIn, '--out', path.join(data, 'picks.jsonl'), '--url', base, '--no-progress'])
  t.equal(bon.status, 0, bon.stderr)
  const pick = readJsonl(path.join(data, 'picks.jsonl'))[0]!
  t.equal(pick.scores.length, 3)
  t.ok(Math.abs(pick.scores[0] - lines.find((l) => l.id === 'img-1')!.chosen_score) < 1e-3, 'rank = clean score for the same conversation')
  // The same conversation through /get_reward's native multimodal form gives the same reward.
  const data64 = fs.readFileSync(path.join(data, img(1))).toString('base64')
  const messages = [
    { role: 'user', content: [{ type: 'image', data: data64 }, { type: 'text', text: prompt }] },
    { role: 'assistant', content: rows[0]!.chosen },
  ]
  const gr = await app.inject({ method: 'POST', url: '/get_reward', payload: { messages: [messages] } })
  t.equal(gr.statusCode, 200, gr.body)
  t.ok(Math.abs(gr.json().rewards[0] - lines.find((l) => l.id === 'img-1')!.chosen_score) < 1e-3, 'same reward via /get_reward')
})
