// API-key auth, the failed-auth limiter and the per-key rate limit (src/http/plugins/{auth,rate-limit}.ts), unit
// level and through the app: written against the mutants test/http/auth.test.ts lets live (npm run test:mutation).
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { AuthFailureLimiter, apiKeyOf, authScope, bearerToken, pathOf, tokenMatches } from '../../src/http/plugins/auth.ts'
import { buildTestApp } from '../helpers/build-app.ts'

const payload = { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] }
const req = (headers: Record<string, unknown>, url = '/v1/score') => ({ headers, url }) as unknown as FastifyRequest

t.test('authScope: exactly the probes, the scraper and the docs are public; /admin/ routes are admin', async (t) => {
  for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/docs/', '/docs/static/x.js']) t.equal(authScope(p), 'public', p)
  for (const p of ['/admin/models/reload', '/admin/']) t.equal(authScope(p), 'admin', p)
  // near misses are scoring routes (a key is needed), not open ones
  for (const p of ['/docsx', '/healthz/x', '/metricsx', '/admin', '/v1/admin/x', '/x/docs/', '', '/v1/score']) t.equal(authScope(p), 'key', p)
  t.equal(pathOf(req({}, '/healthz?verbose=1&x=?')), '/healthz', 'the query string is not part of the path')
  t.equal(pathOf(req({}, '/v1/score')), '/v1/score')
})

t.test('bearerToken: the scheme, any case, then one token and optional trailing space', async (t) => {
  t.equal(bearerToken('Bearer abcdef'), 'abcdef', 'the whole token')
  t.equal(bearerToken('BEARER abc'), 'abc')
  t.equal(bearerToken('Bearer \t  abc'), 'abc', 'several spaces after the scheme')
  t.equal(bearerToken('Bearer abc \t '), 'abc', 'trailing whitespace')
  t.equal(bearerToken('Bearerabc'), null, 'no space after the scheme')
  t.equal(bearerToken('xBearer abc'), null, 'the scheme starts the header')
  t.equal(bearerToken('Bearer abc def'), null, 'one token only')
  t.equal(bearerToken('Bearer '), null)
  t.equal(bearerToken(''), null)
})

t.test('apiKeyOf: bearer first, else a trimmed x-api-key without inner space', async (t) => {
  t.equal(apiKeyOf(req({ authorization: 'Bearer b1', 'x-api-key': 'x1' })), 'b1', 'Authorization wins')
  t.equal(apiKeyOf(req({ authorization: 'Basic zzz', 'x-api-key': 'x1' })), 'x1', 'a non-bearer Authorization falls back')
  t.equal(apiKeyOf(req({ 'x-api-key': '  x1 \t' })), 'x1', 'trimmed')
  t.equal(apiKeyOf(req({ 'x-api-key': 'x 1' })), null, 'inner space')
  t.equal(apiKeyOf(req({ 'x-api-key': '   ' })), null, 'blank')
  t.equal(apiKeyOf(req({ 'x-api-key': '' })), null, 'empty')
  t.equal(apiKeyOf(req({ 'x-api-key': ['x1', 'x2'] })), null, 'a repeated header')
  t.equal(apiKeyOf(req({})), null)
})

t.test('tokenMatches: any listed key, whichever position', async (t) => {
  t.ok(tokenMatches('k1', ['k1', 'k2']), 'first of several')
  t.ok(tokenMatches('k2', ['k1', 'k2']), 'last of several')
  t.ok(tokenMatches('k2', ['k1', 'k2', 'k3']), 'middle')
  t.notOk(tokenMatches('k4', ['k1', 'k2', 'k3']))
  t.notOk(tokenMatches('k', []))
})

t.test('AuthFailureLimiter: limit, window edges, Retry-After rounding, bounded memory', async (t) => {
  const l = new AuthFailureLimiter(3, 10_000, 2)
  t.equal(l.retryAfterS('a', 0), 0, 'unknown address')
  l.fail('a', 0)
  l.fail('a', 100)
  t.equal(l.retryAfterS('a', 200), 0, 'under the limit')
  l.fail('a', 200)
  t.equal(l.retryAfterS('a', 200), 10, 'at the limit: the rest of the window, in whole seconds (ceil)')
  t.equal(l.retryAfterS('a', 1_500), 9, '8.5 s left -> 9')
  t.equal(l.retryAfterS('a', 9_999), 1, 'never 0 while limited (1 ms left -> 1)')
  t.equal(l.retryAfterS('a', 10_000), 0, 'the window ends at resetAt exactly')
  t.equal(l.retryAfterS('a', 10_001), 0, 'and the expired window is forgotten')
  // a failure at the exact end of a window starts a new one (count 1), not a fourth of the old one
  const m = new AuthFailureLimiter(2, 10_000)
  m.fail('b', 0)
  m.fail('b', 10_000)
  t.equal(m.retryAfterS('b', 10_000), 0, 'one failure in the new window')
  m.fail('b', 10_500)
  t.equal(m.retryAfterS('b', 10_500), 10, 'two in the new window (ends at 20000, 9.5 s left): limited')
  t.equal(m.retryAfterS('b', 19_999), 1)
  // a failure inside the window does not move its end
  const w = new AuthFailureLimiter(1, 1_000)
  w.fail('c', 0)
  w.fail('c', 900)
  t.equal(w.retryAfterS('c', 999), 1)
  t.equal(w.retryAfterS('c', 1_000), 0)
  // at most maxAddresses windows: the oldest address is dropped for a new one, the others are kept
  const b = new AuthFailureLimiter(1, 60_000, 2)
  b.fail('x', 0)
  b.fail('y', 0)
  t.equal(b.retryAfterS('x', 1), 60)
  b.fail('z', 2)
  t.equal(b.retryAfterS('x', 3), 0, 'the oldest (x) was dropped')
  t.equal(b.retryAfterS('y', 3), 60, 'y is still limited')
  t.equal(b.retryAfterS('z', 3), 60, 'z is tracked')
  // a known address failing again does not evict anyone
  const c = new AuthFailureLimiter(2, 60_000, 2)
  c.fail('x', 0)
  c.fail('y', 0)
  c.fail('y', 1)
  c.fail('x', 1)
  t.equal(c.retryAfterS('x', 2), 60, 'x kept its first failure')
  t.equal(c.retryAfterS('y', 2), 60)
  // the default bound is large: 100 addresses all stay tracked
  const d = new AuthFailureLimiter(1, 60_000)
  for (let i = 0; i < 100; i++) d.fail(`a${i}`, 0)
  t.equal(d.retryAfterS('a0', 1), 60, 'the first of 100 is still tracked')
})

t.test('the plugin: 401s count as unauthorized, 429s as rate_limited, only on key routes', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1', AUTH_FAILURE_LIMIT: '2', AUTH_FAILURE_WINDOW_MS: '5000' })
  t.teardown(() => app.close())
  const post = (h: Record<string, string>, ip = '10.1.0.1') => app.inject({ method: 'POST', url: '/v1/score', payload, headers: h, remoteAddress: ip })
  const a = await post({})
  t.equal(a.statusCode, 401)
  t.equal(a.headers['www-authenticate'], 'Bearer')
  t.match(a.json().error.message, /missing or invalid API key \(send Authorization: Bearer <key> or x-api-key: <key>\)/)
  t.equal((await post({ 'x-api-key': 'nope' })).statusCode, 401)
  const limited = await post({ 'x-api-key': 'k1' })
  t.equal(limited.statusCode, 429, 'the third request after two failures (limit 2)')
  t.equal(limited.headers['retry-after'], '5')
  t.match(limited.json().error.message, /too many failed authentications from this address/)
  t.equal((await post({ 'x-api-key': 'k1' }, '10.1.0.2')).statusCode, 200)
  // public routes are neither authenticated nor limited, even from the limited address
  t.equal((await app.inject({ method: 'GET', url: '/healthz?x=1', remoteAddress: '10.1.0.1' })).statusCode, 200)
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /scorer_rejected_total\{reason="unauthorized"\} 2\n/)
  t.match(metrics, /scorer_rejected_total\{reason="rate_limited"\} 1\n/)

  // AUTH_FAILURE_LIMIT=0: no limiter, every wrong key is a 401
  const { app: off } = await buildTestApp({ API_KEYS: 'k1', AUTH_FAILURE_LIMIT: '0' })
  t.teardown(() => off.close())
  const codes: number[] = []
  for (let i = 0; i < 25; i++) codes.push((await off.inject({ method: 'POST', url: '/v1/score', payload, headers: { 'x-api-key': `g${i}` } })).statusCode)
  t.same(codes, Array(25).fill(401))
  t.equal((await off.inject({ method: 'POST', url: '/v1/score', payload, headers: { 'x-api-key': 'k1' } })).statusCode, 200)
})

t.test('without API_KEYS every scoring request is let through', async (t) => {
  const { app } = await buildTestApp({})
  t.teardown(() => app.close())
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: { authorization: 'Bearer anything' } })
  t.equal(r.statusCode, 200)
  t.equal(r.headers['www-authenticate'], undefined)
})

t.test('admin token: 401 with a Bearer challenge, counted; x-api-key is not an admin credential', async (t) => {
  const { app } = await buildTestApp({ ADMIN_TOKEN: 'adm', MODELS_DIR: '/nonexistent-models-dir' })
  t.teardown(() => app.close())
  const reload = (h: Record<string, string>) => app.inject({ method: 'POST', url: '/admin/models/reload', headers: h })
  const r = await reload({ 'x-api-key': 'adm' })
  t.equal(r.statusCode, 401)
  t.equal(r.headers['www-authenticate'], 'Bearer')
  t.match(r.json().error.message, /missing or invalid admin token/)
  t.equal((await reload({ authorization: 'Bearer admx' })).statusCode, 401)
  t.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /scorer_rejected_total\{reason="unauthorized"\} 2\n/)
})

t.test('rate limit: keyed by a valid key, else by address; a missing key is a 401, not a crash', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1,k2', RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '60000', AUTH_FAILURE_LIMIT: '0' })
  t.teardown(() => app.close())
  const post = (h: Record<string, string>, ip: string) => app.inject({ method: 'POST', url: '/v1/score', payload, headers: h, remoteAddress: ip })
  const none = await post({}, '10.2.0.1')
  t.equal(none.statusCode, 401, 'no key at all: auth answers (the limiter keyed it by address)')
  // one key from two addresses is one client
  t.equal((await post({ 'x-api-key': 'k1' }, '10.2.0.2')).statusCode, 200)
  t.equal((await post({ 'x-api-key': 'k1' }, '10.2.0.3')).statusCode, 200)
  const limited = await post({ 'x-api-key': 'k1' }, '10.2.0.4')
  t.equal(limited.statusCode, 429, 'the key, not the address, is the bucket')
  t.match(limited.json().error.message, /^rate limit of 2 requests per 1 minute exceeded; retry later$/)
  // address 10.2.0.2 still has its own (address) budget for requests with no valid key
  t.equal((await post({ 'x-api-key': 'bad' }, '10.2.0.2')).statusCode, 401)
  t.equal((await post({ 'x-api-key': 'k2' }, '10.2.0.2')).statusCode, 200, 'another key, same address: its own budget')
  // RATE_LIMIT_MAX=0: no limit at all
  const { app: off } = await buildTestApp({ RATE_LIMIT_MAX: '0' })
  t.teardown(() => off.close())
  const codes: number[] = []
  for (let i = 0; i < 5; i++) codes.push((await off.inject({ method: 'POST', url: '/v1/score', payload })).statusCode)
  t.same(codes, Array(5).fill(200))
})
