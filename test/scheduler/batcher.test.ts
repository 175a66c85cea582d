// Admission, disconnects and deadlines, through the real HTTP stack with a held fake engine.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { buildTestApp } from '../helpers/build-app.ts'
import { fakeRowScore } from '../helpers/fake-engine.ts'
import { fakeModel } from '../helpers/fake-model.ts'

const item = (answer: string) => ({
  messages: [
    { role: 'user', content: 'question' },
    { role: 'assistant', content: answer },
  ],
})
const body = (answer: string) => ({ items: [item(answer)] })

t.test('overload: room for k, k+m simultaneous -> exactly m get 503 + Retry-After, k succeed', async (t) => {
  const k = 5
  const m = 3
  const { app, engine } = await buildTestApp({ MAX_PENDING_ITEMS: String(k), MAX_CLIENT_BATCH_SIZE: '1', RETRY_AFTER_S: '2' })
  t.teardown(() => app.close())
  engine.hold()
  const all = Array.from({ length: k + m }, (_, i) =>
    app.inject({ method: 'POST', url: '/v1/score', payload: body(`answer ${i}`) }),
  )
  await engine.started(1)
  // Everything has been admitted or refused by now; let the held batch and the queue run.
  await new Promise((r) => setImmediate(r))
  engine.release()
  const res = await Promise.all(all)
  const refused = res.filter((r) => r.statusCode === 503)
  const ok = res.filter((r) => r.statusCode === 200)
  t.equal(refused.length, m)
  t.equal(ok.length, k)
  for (const r of refused) {
    t.equal(r.json().error.code, 'overloaded')
    t.equal(r.headers['retry-after'], '2')
  }
  t.equal(engine.rowsRun.length, k, 'refused requests never reached the engine')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /scorer_rejected_total\{reason="overloaded"\} 3/)
  t.equal(app.batcher.pendingItems, 0, 'permits released')
})

t.test('a client that disconnects while queued is dropped before it runs', async (t) => {
  const { app, engine } = await buildTestApp()
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const post = (payload: object) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' } })
    const done = new Promise<number>((resolve) => {
      req.on('response', (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode!))
      })
      req.on('error', () => resolve(-1))
    })
    req.end(JSON.stringify(payload))
    return { req, done }
  }
  engine.hold()
  const first = post(body('first, holds the engine'))
  await engine.started(1)
  const gone = post(body('client goes away'))
  while (app.batcher.queueDepth < 1) await new Promise((r) => setTimeout(r, 5))
  gone.req.destroy()
  t.equal(await gone.done, -1)
  // Wait until the server has noticed the closed socket and cancelled the job.
  while (app.batcher.pendingItems > 1) await new Promise((r) => setTimeout(r, 5))
  engine.release()
  t.equal(await first.done, 200)
  const third = post(body('after'))
  t.equal(await third.done, 200)
  const ran = engine.rowsRun.map((ids) => String.fromCharCode(...ids.map((i) => i - 100).filter((c) => c > 31 && c < 127)))
  t.equal(ran.length, 2, 'only the two live requests ran')
  t.notOk(ran.some((s) => s.includes('client goes away')))
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /scorer_rejected_total\{reason="client_gone"\} 1/)
})

t.test('per-request deadline -> 504 timeout, and the queued work is dropped', async (t) => {
  const { app, engine } = await buildTestApp({ REQUEST_TIMEOUT_MS: '150' })
  t.teardown(() => app.close())
  engine.hold()
  const first = app.inject({ method: 'POST', url: '/v1/score', payload: body('holds') })
  await engine.started(1)
  const late = app.inject({ method: 'POST', url: '/v1/score', payload: body('times out in the queue') })
  const r2 = await late
  t.equal(r2.statusCode, 504)
  t.equal(r2.json().error.code, 'timeout')
  engine.release()
  const r1 = await first
  t.equal(r1.statusCode, 504, 'the held request timed out too (it ran past its deadline)')
  t.equal(engine.batches.length, 1, 'the expired queued job never ran')
})

t.test('queued jobs are batched together while the engine is busy', async (t) => {
  const { app, engine } = await buildTestApp({ MAX_BATCH_SIZE: '8' })
  t.teardown(() => app.close())
  engine.hold()
  const first = app.inject({ method: 'POST', url: '/v1/score', payload: body('first') })
  await engine.started(1)
  const rest = Array.from({ length: 6 }, (_, i) => app.inject({ method: 'POST', url: '/v1/score', payload: body(`x${i}`) }))
  while (app.batcher.queueDepth < 6) await new Promise((r) => setTimeout(r, 2))
  engine.release()
  await first
  for (const r of await Promise.all(rest)) t.equal(r.statusCode, 200)
  t.same(engine.batches, [1, 6])
})

t.test('a non-finite score fails only its own request (500 engine_error); its batch mate is scored', async (t) => {
  const { app, engine } = await buildTestApp({ MAX_BATCH_SIZE: '8' })
  t.teardown(() => app.close())
  const bad = 'the NaN one'
  const runReward = engine.runReward.bind(engine)
  // the engine answers NaN for the row that contains `bad` (as a broken graph or an fp16 overflow would)
  engine.runReward = async (key, feeds) => {
    const out = await runReward(key, feeds)
    engine.rowsRun.slice(-feeds.rows).forEach((ids, r) => {
      if (String.fromCharCode(...ids.filter((x) => x >= 100).map((x) => x - 100)).includes(bad)) out.scores[r] = Number.NaN
    })
    return out
  }
  engine.hold()
  const head = app.inject({ method: 'POST', url: '/v1/score', payload: body('first') })
  await engine.started(1)
  const good = app.inject({ method: 'POST', url: '/v1/score', payload: body('fine') })
  const nan = app.inject({ method: 'POST', url: '/v1/score', payload: body(bad) })
  await new Promise((r) => setTimeout(r, 50))
  engine.release()
  t.equal((await head).statusCode, 200)
  const [g, n] = await Promise.all([good, nan])
  t.same(engine.batches, [1, 2], 'the two requests shared a batch')
  t.equal(n.statusCode, 500)
  t.equal(n.json().error.code, 'engine_error')
  t.equal(g.statusCode, 200)
  const enc = fakeModel().encoder
  t.ok(Math.abs(g.json().scores[0] - fakeRowScore(enc.finish(enc.turns(item('fine').messages as never)).ids)) < 1e-5, 'its own score')
})
