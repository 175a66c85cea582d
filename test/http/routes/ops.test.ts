import t from 'tap'
import { buildTestApp } from '../../helpers/build-app.ts'
import { fakeModel } from '../../helpers/fake-model.ts'
import { ModelRegistry } from '../../../src/models/registry.ts'

const payload = { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] }

t.test('healthz, readyz, models', async (t) => {
  const { app, engine, models } = await buildTestApp()
  t.teardown(() => app.close())
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json().models, ['fake-rm/1'])
  models.setStatus({ name: 'broken', version: 3, dir: '/x', state: 'failed', error: 'sha256 mismatch' })
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json()
  t.equal(list.default_model, 'fake-rm')
  t.equal(list.limits.max_batch_tokens, 0)
  const broken = list.models.find((m: { name: string }) => m.name === 'broken')
  t.same([broken.state, broken.serving, broken.error], ['failed', false, 'sha256 mismatch'])
  const ok = list.models.find((m: { name: string }) => m.name === 'fake-rm')
  t.same([ok.state, ok.serving, ok.execution_provider], ['ready', true, 'fake'])
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload: { ...payload, model: 'broken' } })
  t.equal(r.statusCode, 503)
  t.equal(r.json().error.code, 'model_not_ready')
  t.match(r.json().error.message, /sha256 mismatch/)
  engine.alive = false
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503)
})

t.test('readyz is 503 while no model serves', async (t) => {
  const { app } = await buildTestApp({}, { deps: { models: new ModelRegistry() } })
  t.teardown(() => app.close())
  const r = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(r.statusCode, 503)
  t.equal(r.json().error.code, 'model_not_ready')
})

t.test('a newer version published later serves new requests (atomic swap)', async (t) => {
  const { app, models } = await buildTestApp()
  t.teardown(() => app.close())
  models.publish(fakeModel({ version: 2 }))
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload })
  t.same(r.json().model, { name: 'fake-rm', version: 2 })
})

t.test('metrics: one registry per app, request + batch + model metrics', async (t) => {
  const a = await buildTestApp()
  const b = await buildTestApp()
  t.teardown(() => Promise.all([a.app.close(), b.app.close()]))
  await a.app.inject({ method: 'POST', url: '/v1/score', payload })
  await a.app.inject({ method: 'GET', url: '/nope' })
  const text = (await a.app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(text, /scorer_requests_total\{route="\/v1\/score",status="200"\} 1/)
  t.match(text, /scorer_requests_total\{route="unmatched",status="404"\} 1/)
  t.match(text, /scorer_request_duration_seconds_count\{route="\/v1\/score",status="200"\} 1/)
  t.match(text, /scorer_batch_size_count 1/)
  t.match(text, /scorer_batch_tokens_sum \d+/)
  t.match(text, /scorer_queue_seconds_count 1/)
  t.match(text, /scorer_inference_seconds_count\{graph="reward"\} 1/)
  t.match(text, /scorer_tokens_scored_total\{model="fake-rm",version="1"\} \d+/)
  t.match(text, /scorer_score_count\{model="fake-rm",version="1"\} 1/)
  t.match(text, /scorer_model_info\{model="fake-rm",version="1",ep="fake",state="serving"\} 1/)
  t.match(text, /scorer_queue_depth 0/)
  const other = (await b.app.inject({ method: 'GET', url: '/metrics' })).body
  t.notMatch(other, /scorer_requests_total\{route="\/v1\/score"/, 'separate registries')
})

t.test('API keys: bearer required on /v1, probes and metrics stay public', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1,secret-2' })
  t.teardown(() => app.close())
  const none = await app.inject({ method: 'POST', url: '/v1/score', payload })
  t.equal(none.statusCode, 401)
  t.equal(none.json().error.code, 'unauthorized')
  const wrong = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer k2' } })
  t.equal(wrong.statusCode, 401)
  const ok = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: { authorization: 'Bearer secret-2' } })
  t.equal(ok.statusCode, 200)
  for (const url of ['/healthz', '/readyz', '/metrics']) t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
})

t.test('shutting down: readiness fails, new requests 503 shutting_down with Connection: close', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  app.lifecycle.shuttingDown = true
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload })
  t.equal(r.statusCode, 503)
  t.equal(r.json().error.code, 'shutting_down')
  t.equal(r.headers.connection, 'close')
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503)
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
})
