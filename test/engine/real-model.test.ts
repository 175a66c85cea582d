// The real engine (ONNX Runtime in the worker thread) on the real default model from models/.
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { ConversationEncoder } from '../../src/conversation/encode.ts'
import { HfTextTokenizer } from '../../src/preprocess/text/tokenize.ts'
import { testConfig } from '../helpers/build-app.ts'
import { MODELS_DIR, readGolden, realModelDir } from '../helpers/real-model.ts'

const entry = await realModelDir()
const golden = readGolden(entry.dir)
// A model exported before template.content_special_tokens existed made its golden ids with the atomic pieces
// ([UNUSED_TOKEN_*]) recognised inside content; the service's default literal mode now cuts them apart (no
// content can forge a turn or the reward token), so such a case cannot match until the model is re-exported.
const manifestRaw = JSON.parse(readFileSync(path.join(entry.dir, 'model.json'), 'utf8'))
const predatesLiteralMode = manifestRaw.template.content_special_tokens === undefined
const forges = (c: { messages: unknown }) => /\[UNUSED_TOKEN_\d+\]/.test(JSON.stringify(c.messages))
const allText = golden.cases.filter((c) => c.kind === 'text')
const textCases = allText.filter((c) => !(predatesLiteralMode && forges(c)))
const forging = allText.filter((c) => predatesLiteralMode && forges(c))

// An explicit batch budget so that the mixed-batch test can put rows of different lengths in one batch (the
// cpu default is one max_seq_len of padded positions per batch).
const app = buildApp(testConfig({ MODELS_DIR, EXECUTION_PROVIDERS: 'cuda,webgpu,cpu', MAX_BATCH_TOKENS: '16384' }))
await app.ready()
t.teardown(() => app.close())

t.test('the model loads, warms up and reports its execution provider with fallback reasons', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  const m = (await app.inject({ method: 'GET', url: '/v1/models' })).json()
  const mine = m.models.find((x: { name: string; version: number }) => x.name === entry.name && x.version === entry.version)
  t.equal(mine.state, 'ready', mine.error)
  t.equal(mine.serving, true)
  // On this host only cpu initialises; cuda (no shared libraries) and webgpu (no adapter) must fall back cleanly.
  t.ok(['cuda', 'webgpu', 'cpu'].includes(mine.execution_provider))
  const tried = mine.execution_provider_fallbacks.map((f: { provider: string }) => f.provider)
  t.same(tried, ['cuda', 'webgpu', 'cpu'].slice(0, ['cuda', 'webgpu', 'cpu'].indexOf(mine.execution_provider)))
  for (const f of mine.execution_provider_fallbacks) t.ok(f.reason.length > 0, `${f.provider} has a reason`)
})

t.test('golden.json text cases: same input_ids, score within 1e-3', async (t) => {
  t.ok(textCases.length > 0, 'golden.json has text cases')
  const model = app.models.resolve(entry.name)
  for (const c of textCases) {
    const row = model.encoder.finish(model.encoder.turns(c.messages))
    t.same([...row.ids], c.input_ids, `${c.id} input_ids`)
  }
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { model: entry.name, items: textCases.map((c) => ({ messages: c.messages })) } })
  t.equal(res.statusCode, 200, res.body)
  res.json().results.forEach((r: { score: number }, i: number) => {
    const d = Math.abs(r.score - textCases[i]!.score)
    t.ok(d <= 1e-3, `${textCases[i]!.id}: |${r.score} - ${textCases[i]!.score}| = ${d}`)
  })
})

t.test('golden cases with [UNUSED_TOKEN_*] in content (older export): the ids of a tokenizer that keeps them atomic in content', async (t) => {
  // The older export recorded the tokenizer as it is (its added tokens atomic in content, control pieces plain
  // text): the published mode without control literals. The literal (safe) mode the service runs by default
  // must not give these ids (next test).
  const m = app.models.resolve(entry.name).manifest
  const atomic = new ConversationEncoder(await HfTextTokenizer.fromFile(path.join(entry.dir, m.tokenizer.file), m.tokenizer), {
    template: { ...m.template, content_special_tokens: 'published' },
    padId: m.tokenizer.pad_id,
    maxSeqLen: m.max_seq_len,
    maxChars: 400_000,
  })
  for (const c of forging) t.same([...atomic.finish(atomic.turns(c.messages)).ids], c.input_ids, `${c.id} input_ids (markers atomic in content)`)
})

t.test('golden cases with [UNUSED_TOKEN_*] in content (older export): the literal mode yields no control id from content', async (t) => {
  t.equal(forging.length, predatesLiteralMode ? 1 : 0, 'the one control-piece text case of the committed default model')
  const model = app.models.resolve(entry.name)
  const sid = manifestRaw.tokenizer.special_ids
  for (const c of forging) {
    const ids = [...model.encoder.finish(model.encoder.turns(c.messages)).ids]
    t.notSame(ids, c.input_ids, `${c.id}: ids differ from the pre-literal-mode golden`)
    t.equal(ids.filter((i) => i === sid.turn_start).length, c.messages.length, `${c.id}: one turn start per message`)
    t.equal(ids.filter((i) => i === sid.turn_end).length, c.messages.length, `${c.id}: one turn end per message`)
    t.same(ids.flatMap((id, i) => (id === sid.reward ? [i] : [])), [ids.length - 1], `${c.id}: the reward token only last`)
  }
})

t.test('an item alone and inside a mixed batch scores the same (1e-5)', async (t) => {
  const probe = { messages: [{ role: 'user', content: 'Is the sky blue?' }, { role: 'assistant', content: 'Yes, on a clear day.' }] }
  const others = [
    { messages: [{ role: 'user', content: 'x'.repeat(1500) }, { role: 'assistant', content: 'long one' }] },
    { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] },
    { messages: [{ role: 'system', content: 'be terse' }, { role: 'user', content: 'why?' }, { role: 'assistant', content: 'because ' + 'so '.repeat(60) }] },
  ]
  const alone = (await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [probe] } })).json().scores[0]
  const before = await app.metrics.batchSize.get()
  const mixed = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [others[0], probe, others[1], others[2]] } })
  const after = await app.metrics.batchSize.get()
  const count = (m: typeof before) => m.values.find((v) => v.metricName === 'scorer_batch_size_count')!.value
  const sum = (m: typeof before) => m.values.find((v) => v.metricName === 'scorer_batch_size_sum')!.value
  t.equal(count(after) - count(before), 1, 'the four items ran as one batch')
  t.equal(sum(after) - sum(before), 4)
  t.ok(Math.abs(mixed.json().scores[1] - alone) <= 1e-5, `alone ${alone}, in batch ${mixed.json().scores[1]}`)
})

t.test('/healthz answers within 100 ms while a long batch runs', async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const long = { messages: [{ role: 'user', content: 'word '.repeat(3000) }, { role: 'assistant', content: 'ok' }] }
  const big = fetch(`${base}/v1/score`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ items: Array.from({ length: 8 }, () => long) }),
  })
  // Wait until the batch is in the engine (admitted, nothing left in the queue).
  while (!(app.batcher.pendingItems > 0 && app.batcher.queueDepth === 0)) await new Promise((r) => setTimeout(r, 1))
  const times: number[] = []
  for (let i = 0; i < 3; i++) {
    const s = performance.now()
    const r = await fetch(`${base}/healthz`)
    times.push(performance.now() - s)
    t.equal(r.status, 200)
  }
  const stillRunning = app.batcher.pendingItems > 0
  const res = await big
  t.equal(res.status, 200)
  t.ok(Math.max(...times) < 100, `healthz took ${times.map((x) => x.toFixed(1)).join(', ')} ms`)
  t.ok(stillRunning, 'the batch was still running when the health checks finished')
})
