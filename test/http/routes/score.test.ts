import t from 'tap'
import { buildTestApp } from '../../helpers/build-app.ts'
import { fakeRowScore } from '../../helpers/fake-engine.ts'
import { fakeModel } from '../../helpers/fake-model.ts'

const conv = (user: string, assistant: string) => ({
  messages: [
    { role: 'user', content: user },
    { role: 'assistant', content: assistant },
  ],
})

t.test('POST /v1/score scores items in input order with token counts', async (t) => {
  const { app, engine } = await buildTestApp()
  t.teardown(() => app.close())
  const items = [conv('hi', 'hello there'), conv('2+2?', '4'), conv('a', 'b'.repeat(50))]
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items } })
  t.equal(res.statusCode, 200, res.body)
  const body = res.json()
  t.same(body.model, { name: 'fake-rm', version: 1 })
  t.equal(body.normalized, false)
  const enc = fakeModel().encoder
  items.forEach((it, i) => {
    const row = enc.finish(enc.turns(it.messages as never))
    t.equal(body.results[i].index, i)
    t.equal(body.results[i].tokens, row.ids.length)
    t.equal(body.results[i].truncated, false)
    t.ok(Math.abs(body.results[i].score - fakeRowScore(row.ids)) < 1e-5, `item ${i} score`)
    t.equal(body.scores[i], body.results[i].score)
  })
  t.equal(engine.rowsRun.length, 3)
  t.ok(res.headers['x-request-id'])
  for (const h of ['x-queue-time', 'x-inference-time', 'x-preprocess-time']) t.match(res.headers[h], /^\d+\.\d\d$/, h)
})

t.test('normalize: true adds z-scores from train_stats', async (t) => {
  const { app } = await buildTestApp({}, { model: { trainStats: { mean: 0.5, std: 2, n: 10 } } })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('x', 'y')], normalize: true } })
  const r = res.json().results[0]
  t.equal(res.json().normalized, true)
  t.ok(Math.abs(r.normalized_score - (r.score - 0.5) / 2) < 1e-9)
})

t.test('normalize without train_stats is a 422', async (t) => {
  const { app } = await buildTestApp({}, { model: { trainStats: { mean: 0, std: 0, n: 0 } } })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('x', 'y')], normalize: true } })
  t.equal(res.statusCode, 422)
  t.equal(res.json().error.code, 'invalid_request')
})

t.test('long text is left-truncated and flagged', async (t) => {
  const { app } = await buildTestApp({}, { model: { maxSeqLen: 64 } })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('q'.repeat(500), 'the answer')] } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().results[0].tokens, 64)
  t.equal(res.json().results[0].truncated, true)
})

t.test('validation and media errors use the error table', async (t) => {
  const { app, engine } = await buildTestApp({ MAX_CLIENT_BATCH_SIZE: '2' })
  t.teardown(() => app.close())
  const cases: Array<[unknown, number, string]> = [
    [{}, 422, 'invalid_request'],
    [{ items: [] }, 422, 'invalid_request'],
    [{ items: [{ messages: [{ role: 'user', content: 'no answer' }] }] }, 422, 'invalid_request'],
    [{ items: [{ messages: [{ role: 'robot', content: 'x' }] }] }, 422, 'invalid_request'],
    [{ items: [conv('a', 'b'), conv('a', 'b'), conv('a', 'b')] }, 422, 'invalid_request'],
    [{ items: [conv('a', 'b')], model: 'nope' }, 404, 'unknown_model'],
    [
      { items: [{ messages: [{ role: 'user', content: [{ type: 'image', data: 'AAAA' }, { type: 'text', text: 'what?' }] }, { role: 'assistant', content: 'a cat' }] }] },
      422,
      'unsupported_modality',
    ],
    [{ items: [{ messages: [{ role: 'user', content: [{ type: 'video', url: 'x', data: 'y' }] }, { role: 'assistant', content: 'a' }] }] }, 422, 'invalid_request'],
  ]
  for (const [payload, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: payload as object })
    t.equal(res.statusCode, status, JSON.stringify(payload).slice(0, 80))
    t.equal(res.json().error.code, code)
    t.type(res.json().error.message, 'string')
  }
  t.equal(engine.rowsRun.length, 0, 'nothing reached the engine')
})

t.test("Fastify's own errors and 404s go through the table", async (t) => {
  const { app } = await buildTestApp({ BODY_LIMIT_BYTES: '2048' })
  t.teardown(() => app.close())
  const bad = await app.inject({ method: 'POST', url: '/v1/score', headers: { 'content-type': 'application/json' }, payload: '{"items": [' })
  t.equal(bad.statusCode, 400)
  t.equal(bad.json().error.code, 'bad_request')
  const big = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('x'.repeat(5000), 'y')] } })
  t.equal(big.statusCode, 413)
  t.equal(big.json().error.code, 'payload_too_large')
  const ct = await app.inject({ method: 'POST', url: '/v1/score', headers: { 'content-type': 'text/csv' }, payload: 'a,b' })
  t.equal(ct.statusCode, 415)
  t.equal(ct.json().error.code, 'unsupported_media_type')
  const nf = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(nf.statusCode, 404)
  t.same(nf.json().error, { code: 'not_found', message: 'no route GET /nope', type: 'not_found_error', param: null })
})

t.test('a failing batch fails only its own requests (500, generic message)', async (t) => {
  // While a first request holds the engine, four more queue up; they run as two batches of two. The first of
  // those fails: its two requests get 500, the two of the next batch are scored (a batcher that failed the
  // whole queue, or the wrong batch, fails this).
  const { app, engine } = await buildTestApp({ MAX_BATCH_SIZE: '2' })
  t.teardown(() => app.close())
  const enc = fakeModel().encoder
  const score = (c: ReturnType<typeof conv>) => app.inject({ method: 'POST', url: '/v1/score', payload: { items: [c] } })
  engine.hold()
  const head = score(conv('x', 'y'))
  await engine.started(1)
  const failing = [conv('a', 'b'), conv('c', 'd')].map(score)
  const later = [conv('e', 'f'), conv('g', 'h')]
  const queued = later.map(score)
  await new Promise((r) => setTimeout(r, 50))
  engine.failRun = 1
  engine.release()
  t.equal((await head).statusCode, 200)
  for (const res of await Promise.all(failing)) {
    t.equal(res.statusCode, 500)
    t.equal(res.json().error.code, 'engine_error')
    t.notMatch(res.json().error.message, /fake engine failure/)
  }
  const ok = await Promise.all(queued)
  ok.forEach((res, i) => {
    t.equal(res.statusCode, 200, 'a request of the next batch is scored')
    t.ok(Math.abs(res.json().scores[0] - fakeRowScore(enc.finish(enc.turns(later[i]!.messages as never)).ids)) < 1e-5, 'with its own score')
  })
  t.same(engine.batches, [1, 2, 2], 'the failing batch held two concurrent requests')
})

t.test('a request with more than 10 items prints no MaxListenersExceededWarning', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const warnings: string[] = []
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const items = Array.from({ length: 40 }, (_, i) => conv(`q${i}`, `a${i}`))
  // over real HTTP: the abort signal is the socket's
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const res = await fetch(`${base}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items }) })
  t.equal(res.status, 200)
  await new Promise((r) => setImmediate(r))
  t.same(warnings.filter((w) => /MaxListeners/.test(w)), [])
})

t.test('x-request-id: a sane caller id is echoed, anything else replaced', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const ok = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trainer-42.step:7' } })
  t.equal(ok.headers['x-request-id'], 'trainer-42.step:7')
  const bad = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b<script>' } })
  t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('MAX_REQUEST_CHARS: text over the request budget is refused before tokenizing; /get_reward counts it per piece', async (t) => {
  const { app, engine } = await buildTestApp({ MAX_REQUEST_CHARS: '1000', MAX_CLIENT_BATCH_SIZE: '4' })
  t.teardown(() => app.close())
  const over = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('a'.repeat(400), 'b'.repeat(400)), conv('c'.repeat(400), 'd')] } })
  t.equal(over.statusCode, 422, over.body)
  t.equal(over.json().error.code, 'input_too_long')
  t.match(over.json().error.message, /request has 1201 characters of text; the limit is 1000/)
  t.equal(engine.rowsRun.length, 0, 'nothing ran')
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('a'.repeat(300), 'b'.repeat(300))] } })).statusCode, 200, 'under the budget')
  // 12 samples of 200 characters: 2400 over the request, 800 per piece of MAX_CLIENT_BATCH_SIZE = 4 samples
  const queries = Array.from({ length: 12 }, (_, i) => `<|im_start|>user\n${'q'.repeat(100)}<|im_end|>\n<|im_start|>assistant\n${String(i).padEnd(100, 'r')}<|im_end|>`)
  const rl = await app.inject({ method: 'POST', url: '/get_reward', payload: { query: queries } })
  t.equal(rl.statusCode, 200, rl.body)
  t.equal(rl.json().rewards.length, 12)
})
