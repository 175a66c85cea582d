// What clients of vLLM / TEI / OpenAI servers expect of the HTTP layer: OpenAI-style error fields, 405 + Allow,
// 415 for non-JSON bodies, gzip/deflate request bodies and compressed answers, opt-in CORS (preflight before
// auth), x-api-key next to Bearer, W3C traceparent in the logs and echoed as traceresponse, /v1/models as an
// OpenAI list, TEI's /info, and the metrics conventions (default metrics, build info, {model, version} labels).
import t from 'tap'
import { Writable } from 'node:stream'
import { deflateSync, gunzipSync, gzipSync } from 'node:zlib'
import { parseTraceparent, randomHex } from '../../src/http/plugins/trace-context.ts'
import { buildTestApp } from '../helpers/build-app.ts'

const conv = [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]
const payload = { items: [{ messages: conv }] }
const JSON_CT = { 'content-type': 'application/json' }

t.test('errors carry OpenAI type and param next to code and message, in plain text', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1' })
  t.teardown(() => app.close())
  const auth = { authorization: 'Bearer k1' }
  const bad = await app.inject({ method: 'POST', url: '/v1/score', headers: auth, payload: { items: [{ messages: [{ role: 'user', content: 1 }, conv[1]] }] } })
  t.equal(bad.statusCode, 422)
  const e = bad.json().error
  t.same([e.code, e.type, e.param], ['invalid_request', 'invalid_request_error', 'items[0].messages[0].content'])
  t.match(e.message, /^items\[0\]\.messages\[0\]\.content: /)
  t.notMatch(e.message, /[^\x20-\x7e]/, 'no decoration glyphs (zod prettifier used ✖ and →)')
  const cases: Array<[number, string, Record<string, string>]> = [
    [401, 'authentication_error', {}],
    [404, 'not_found_error', { ...auth }],
  ]
  for (const [status, type, headers] of cases) {
    const r = await app.inject({ method: 'POST', url: status === 404 ? '/nope' : '/v1/score', headers, payload })
    t.equal(r.statusCode, status)
    t.equal(r.json().error.type, type)
    t.equal(r.json().error.param, null)
  }
  const unknown = await app.inject({ method: 'POST', url: '/v1/score', headers: auth, payload: { ...payload, model: 'nope' } })
  t.same([unknown.statusCode, unknown.json().error.type], [404, 'not_found_error'])
})

t.test('a wrong method gets 405 with Allow; an unknown path stays 404', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const r = await app.inject({ method: 'GET', url: '/v1/score' })
  t.equal(r.statusCode, 405)
  t.equal(r.headers.allow, 'POST')
  t.same([r.json().error.code, r.json().error.type], ['method_not_allowed', 'invalid_request_error'])
  const get = await app.inject({ method: 'POST', url: '/v1/models?x=1', ...{ payload: {} } })
  t.equal(get.statusCode, 405)
  t.equal(get.headers.allow, 'GET, HEAD', 'GET routes answer HEAD too')
  const docs = await app.inject({ method: 'DELETE', url: '/docs/static/index.html' })
  t.equal(docs.statusCode, 405, 'wildcard routes count')
  t.match(docs.headers.allow, /GET/)
  const none = await app.inject({ method: 'GET', url: '/v1/nothing-here' })
  t.equal(none.statusCode, 404)
  t.equal(none.headers.allow, undefined)
})

t.test('non-JSON bodies get 415; multipart stays accepted', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const body = JSON.stringify(payload)
  for (const ct of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'application/xml']) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { 'content-type': ct }, payload: body })
    t.equal(r.statusCode, 415, `${ct} -> 415 (the CORS simple-request content types cannot reach scoring)`)
    t.equal(r.json().error.code, 'unsupported_media_type')
    t.match(r.json().error.message, /application\/json/)
  }
  const ok = await app.inject({ method: 'POST', url: '/v1/score', headers: JSON_CT, payload: body })
  t.equal(ok.statusCode, 200)
  const boundary = 'b0undary'
  const form = `--${boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n${body}\r\n--${boundary}--\r\n`
  const mp = await app.inject({ method: 'POST', url: '/v1/score', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, payload: form })
  t.equal(mp.statusCode, 200, mp.body)
})

t.test('gzip and deflate request bodies; decoded size is what the body limit counts', async (t) => {
  const { app } = await buildTestApp({ BODY_LIMIT_BYTES: '65536' })
  t.teardown(() => app.close())
  const body = JSON.stringify(payload)
  const plain = (await app.inject({ method: 'POST', url: '/v1/score', headers: JSON_CT, payload: body })).json().scores
  for (const [enc, data] of [['gzip', gzipSync(body)], ['deflate', deflateSync(body)]] as const) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...JSON_CT, 'content-encoding': enc }, payload: data })
    t.equal(r.statusCode, 200, `${enc}: ${r.body}`)
    t.same(r.json().scores, plain, `${enc} body scores like the plain one`)
  }
  // 1 MiB of spaces gzips to ~1 KiB: inflated past BODY_LIMIT_BYTES it is refused, not buffered.
  const bomb = gzipSync(Buffer.concat([Buffer.from('{"items":[],"pad":"'), Buffer.alloc(1 << 20, 32), Buffer.from('"}')]))
  t.ok(bomb.length < 65536)
  const big = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...JSON_CT, 'content-encoding': 'gzip' }, payload: bomb })
  t.equal(big.statusCode, 413)
  const garbage = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...JSON_CT, 'content-encoding': 'gzip' }, payload: Buffer.from('not gzip at all') })
  t.equal(garbage.statusCode, 400)
  t.equal(garbage.json().error.code, 'bad_request')
  const br = await app.inject({ method: 'POST', url: '/v1/score', headers: { ...JSON_CT, 'content-encoding': 'compress' }, payload: body })
  t.equal(br.statusCode, 415)
  t.match(br.json().error.message, /gzip or deflate/)
})

t.test('answers are compressed when the client accepts it', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const items = Array.from({ length: 40 }, (_, i) => ({ messages: [conv[0], { role: 'assistant', content: `answer ${i}` }] }))
  const gz = await app.inject({ method: 'POST', url: '/v1/score', headers: { 'accept-encoding': 'gzip' }, payload: { items } })
  t.equal(gz.statusCode, 200)
  t.equal(gz.headers['content-encoding'], 'gzip')
  const decoded = JSON.parse(gunzipSync(gz.rawPayload).toString())
  t.equal(decoded.scores.length, 40)
  t.ok(gz.rawPayload.length < JSON.stringify(decoded).length / 2, `${gz.rawPayload.length} bytes on the wire`)
  const plain = await app.inject({ method: 'POST', url: '/v1/score', payload: { items } })
  t.equal(plain.headers['content-encoding'], undefined, 'identity without Accept-Encoding')
})

t.test('CORS: off by default; with an allow-list, preflight is answered before auth', async (t) => {
  const off = (await buildTestApp()).app
  t.teardown(() => off.close())
  const pre = { origin: 'https://ui.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key' }
  const r0 = await off.inject({ method: 'POST', url: '/v1/score', headers: { origin: 'https://ui.example' }, payload })
  t.equal(r0.headers['access-control-allow-origin'], undefined, 'no CORS headers unless configured')
  t.equal((await off.inject({ method: 'OPTIONS', url: '/v1/score', headers: pre })).statusCode, 405)

  const { app } = await buildTestApp({ CORS_ORIGINS: 'https://ui.example', API_KEYS: 'k1' })
  t.teardown(() => app.close())
  const p = await app.inject({ method: 'OPTIONS', url: '/v1/score', headers: pre })
  t.equal(p.statusCode, 204, 'preflight needs no key')
  t.equal(p.headers['access-control-allow-origin'], 'https://ui.example')
  t.match(p.headers['access-control-allow-headers'], /x-api-key/)
  const real = await app.inject({ method: 'POST', url: '/v1/score', headers: { origin: 'https://ui.example', 'x-api-key': 'k1' }, payload })
  t.equal(real.statusCode, 200)
  t.equal(real.headers['access-control-allow-origin'], 'https://ui.example')
  t.match(real.headers['access-control-expose-headers'], /x-request-id/)
  const noKey = await app.inject({ method: 'POST', url: '/v1/score', headers: { origin: 'https://ui.example' }, payload })
  t.equal(noKey.statusCode, 401, 'the real request still needs its key')
  const other = await app.inject({ method: 'POST', url: '/v1/score', headers: { origin: 'https://evil.example', 'x-api-key': 'k1' }, payload })
  t.equal(other.headers['access-control-allow-origin'], undefined, 'an origin off the list gets no grant')
})

t.test('x-api-key is accepted besides Authorization: Bearer', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1', RATE_LIMIT_MAX: '1' })
  t.teardown(() => app.close())
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', headers: { 'x-api-key': 'k1' }, payload })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', headers: { 'x-api-key': 'k2' }, payload })).statusCode, 401)
  // The limiter keys by the same credential: a second call with the same x-api-key is the same client.
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: 'Bearer k1' }, payload })).statusCode, 429)
})

t.test('traceparent: ids in every log line of the request, traceresponse on the answer', async (t) => {
  const lines: any[] = []
  const stream = new Writable({ write: (chunk, _enc, cb) => (lines.push(JSON.parse(String(chunk))), cb()) })
  // The plugin on its own app with a logger writing to this stream (the real app logs to stdout).
  const { default: Fastify } = await import('fastify')
  const { default: traceContext } = await import('../../src/http/plugins/trace-context.ts')
  const probe = Fastify({ logger: { level: 'info', stream } })
  await probe.register(traceContext)
  probe.get('/x', async (request) => {
    request.log.info('inside the handler')
    return { ok: true }
  })
  await probe.ready()
  t.teardown(() => probe.close())
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const r = await probe.inject({ method: 'GET', url: '/x', headers: { traceparent: tp } })
  const echoed = parseTraceparent(r.headers.traceresponse)
  t.ok(echoed, 'traceresponse is a valid traceparent-format header')
  t.equal(echoed!.traceId, '0af7651916cd43dd8448eb211c80319c', 'same trace')
  t.not(echoed!.parentId, 'b7ad6b7169203331', 'our own span, not the caller’s')
  t.equal(echoed!.flags, '01', 'sampled flag kept')
  const mine = lines.filter((l) => l.reqId !== undefined)
  t.ok(mine.length >= 3, 'incoming, handler, completed')
  for (const l of mine) t.same([l.trace_id, l.parent_id, l.span_id], ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', echoed!.parentId], l.msg)
  // Invalid headers are ignored (a new trace), never an error.
  for (const bad of ['00-00000000000000000000000000000000-b7ad6b7169203331-01', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra', 'garbage']) {
    const x = await probe.inject({ method: 'GET', url: '/x', headers: { traceparent: bad } })
    t.equal(x.statusCode, 200)
    t.not(parseTraceparent(x.headers.traceresponse)!.traceId, '0af7651916cd43dd8448eb211c80319c')
  }
  t.ok(parseTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future'), 'a later version may add fields')
  // The real app echoes it too.
  const { app: real } = await buildTestApp()
  t.teardown(() => real.close())
  const rr = await real.inject({ method: 'POST', url: '/v1/score', headers: { traceparent: tp }, payload })
  t.equal(parseTraceparent(rr.headers.traceresponse)?.traceId, '0af7651916cd43dd8448eb211c80319c')
})

t.test('trace ids from the random pool: the asked length in hex, distinct across many pool refills', async (t) => {
  const ids = Array.from({ length: 3000 }, (_, i) => randomHex(i % 2 ? 8 : 16))
  t.ok(ids.every((h, i) => new RegExp(`^[0-9a-f]{${i % 2 ? 16 : 32}}$`).test(h)), 'lowercase hex, 8 or 16 bytes')
  t.equal(new Set(ids).size, ids.length, 'no id handed out twice (3000 ids, 36 000 bytes: 9 refills of the 4 KiB pool)')
  // the hex digits are spread evenly (each of 16 seen about 1/16 of the time in 72 000 digits, within 0.01)
  const counts = new Map<string, number>()
  for (const h of ids) for (const c of h) counts.set(c, (counts.get(c) ?? 0) + 1)
  const total = ids.reduce((n, h) => n + h.length, 0)
  t.ok([...counts.values()].every((n) => Math.abs(n / total - 1 / 16) < 0.01) && counts.size === 16, JSON.stringify([...counts]))
})

t.test('/v1/models is an OpenAI list and keeps the detail; /info is TEI-shaped', async (t) => {
  const { app, models } = await buildTestApp()
  t.teardown(() => app.close())
  models.setStatus({ name: 'broken', version: 3, dir: '/x', state: 'failed', error: 'sha256 mismatch' })
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json()
  t.equal(list.object, 'list')
  t.same(list.data.map((m: any) => [m.id, m.object, m.owned_by]), [['fake-rm', 'model', 'reward-server']], 'serving models only')
  t.equal(typeof list.data[0].created, 'number')
  t.equal(list.default_model, 'fake-rm', 'existing fields kept')
  t.equal(list.models.length, 2)
  // The listed id is what a request's model field takes.
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload: { ...payload, model: list.data[0].id } })
  t.equal(r.statusCode, 200)
  const info = (await app.inject({ method: 'GET', url: '/info' })).json()
  t.equal(info.model_id, 'fake-rm')
  t.match(info.model_sha, /^[0-9a-f]{64}$/)
  t.same(info.model_type, { classifier: { id2label: { '0': 'LABEL_0' } } })
  t.equal(info.max_client_batch_size, app.config.maxClientBatchSize)
  t.equal(info.max_concurrent_requests, app.config.maxPendingItems)
  t.equal(info.max_input_length, 512)
  t.equal(info.version, '0.1.0')
  t.equal(info.auto_truncate, true)
})

t.test('metrics: default process/Node metrics, build info, {model, version} labels, _info always 1', async (t) => {
  const { app, models } = await buildTestApp({ GIT_COMMIT: 'abc1234' })
  t.teardown(() => app.close())
  models.setStatus({ name: 'broken', version: 3, dir: '/x', state: 'failed', error: 'x' })
  await app.inject({ method: 'POST', url: '/v1/score', payload })
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  for (const m of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
    t.match(text, new RegExp(`^${m} `, 'm'), m)
  }
  t.match(text, new RegExp(`^scorer_build_info\\{version="0\\.1\\.0",commit="abc1234",node="${process.versions.node}",ort="\\d+\\.\\d+\\.\\d+"\\} 1$`, 'm'))
  t.match(text, /^scorer_model_info\{model="fake-rm",version="1",ep="fake",state="serving"\} 1$/m)
  t.match(text, /^scorer_model_info\{model="broken",version="3",ep="none",state="failed"\} 1$/m)
  const info = text.split('\n').filter((l) => /^scorer_\w+_info\{/.test(l))
  t.ok(info.length >= 3)
  for (const l of info) t.match(l, / 1$/, `${l.split('{')[0]} is always 1`)
  // Every per-model series is labelled model + version, never a combined key.
  const perModel = text.split('\n').filter((l) => /^scorer_\w+\{[^}]*\bmodel="/.test(l))
  t.ok(perModel.length > 5)
  for (const l of perModel) {
    t.match(l, /model="[^"/]+",.*version="\d+"/, l.slice(0, 80))
  }
})
