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
  const { app, engine } = await buildTestApp()
  t.teardown(() => app.close())
  engine.failNext = true
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('a', 'b')] } })
  t.equal(res.statusCode, 500)
  t.equal(res.json().error.code, 'engine_error')
  t.notMatch(res.json().error.message, /fake engine failure/)
  const ok = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv('a', 'b')] } })
  t.equal(ok.statusCode, 200)
})

t.test('x-request-id: a sane caller id is echoed, anything else replaced', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const ok = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trainer-42.step:7' } })
  t.equal(ok.headers['x-request-id'], 'trainer-42.step:7')
  const bad = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b<script>' } })
  t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})
