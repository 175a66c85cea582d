// Bearer API keys (env and file, constant-time compare), the separate admin token, per-key rate limiting with
// Retry-After, and process-pressure shedding (503) — with health, readiness, metrics and docs left open.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { loadConfig, ConfigError } from '../../src/config.ts'
import { authScope, bearerToken, tokenMatches } from '../../src/http/plugins/auth.ts'
import { startOpsServer } from '../../src/http/ops-server.ts'
import { buildTestApp } from '../helpers/build-app.ts'

const tmp = mkdtempSync(path.join(os.tmpdir(), 'auth-test-'))
t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
const payload = { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] }
const auth = (k: string) => ({ authorization: `Bearer ${k}` })
const OPEN = ['/healthz', '/readyz', '/metrics', '/docs', '/docs/json']

t.test('token helpers', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc')
  t.equal(bearerToken('bearer abc '), 'abc')
  t.equal(bearerToken('Basic abc'), null)
  t.equal(bearerToken('Bearer a b'), null)
  t.equal(bearerToken(undefined), null)
  t.ok(tokenMatches('k2', ['k1', 'k2']))
  t.notOk(tokenMatches('k', ['k1', 'k2']), 'a prefix does not match')
  t.notOk(tokenMatches('k22', ['k1', 'k2']), 'a longer token does not match')
  t.notOk(tokenMatches('', []))
  t.same(['/healthz', '/admin/models/reload', '/v1/score', '/docs/static/x.js'].map(authScope), ['public', 'admin', 'key', 'public'])
})

t.test('config: keys from env and file; admin token must differ', async (t) => {
  const file = path.join(tmp, 'keys')
  writeFileSync(file, '# scoring keys\nfile-key-1\n\n  file-key-2  \n')
  t.same(loadConfig({ API_KEYS: 'env-key', API_KEYS_FILE: file }).apiKeys, ['env-key', 'file-key-1', 'file-key-2'])
  t.throws(() => loadConfig({ API_KEYS_FILE: path.join(tmp, 'missing') }), ConfigError)
  t.throws(() => loadConfig({ API_KEYS_FILE: file, ADMIN_TOKEN: 'file-key-2' }), /ADMIN_TOKEN must differ/)
  t.equal(loadConfig({}).adminToken, '')
})

t.test('API keys guard the scoring routes only', async (t) => {
  const file = path.join(tmp, 'keys2')
  writeFileSync(file, 'file-key\n')
  const { app } = await buildTestApp({ API_KEYS: 'k1,k2', API_KEYS_FILE: file, ADMIN_TOKEN: 'adm' })
  t.teardown(() => app.close())
  for (const h of [{}, auth('nope'), auth('k1x'), { authorization: 'k1' }, auth('adm')]) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: h })
    t.equal(r.statusCode, 401, `refused: ${JSON.stringify(h)}`)
    t.equal(r.json().error.code, 'unauthorized')
    t.equal(r.headers['www-authenticate'], 'Bearer')
  }
  for (const k of ['k1', 'k2', 'file-key']) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: auth(k) })
    t.equal(r.statusCode, 200, `key ${k} works`)
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 401, '/v1/models needs a key too')
  t.equal((await app.inject({ method: 'GET', url: '/nope', headers: auth('k1') })).statusCode, 404)
  for (const url of OPEN) t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, `${url} is open`)
})

t.test('admin routes take the admin token only', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1', ADMIN_TOKEN: 'adm', MODELS_DIR: tmp })
  t.teardown(() => app.close())
  const reload = (h: Record<string, string>) => app.inject({ method: 'POST', url: '/admin/models/reload', headers: h })
  t.equal((await reload({})).statusCode, 401)
  t.equal((await reload(auth('k1'))).statusCode, 401, 'a scoring key does not unlock admin')
  t.equal((await reload(auth('adm'))).statusCode, 200)
  const off = await buildTestApp({ MODELS_DIR: tmp })
  t.teardown(() => off.app.close())
  const r = await off.app.inject({ method: 'POST', url: '/admin/models/reload', headers: auth('anything') })
  t.equal(r.statusCode, 403, 'no ADMIN_TOKEN: the admin API is disabled')
  t.match(r.json().error.message, /ADMIN_TOKEN/)
})

t.test('rate limit per key, with Retry-After; other keys and probes unaffected', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1,k2', RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '60000' })
  t.teardown(() => app.close())
  const score = (k: string) => app.inject({ method: 'POST', url: '/v1/score', payload, headers: auth(k) })
  const first = await score('k1')
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-ratelimit-limit'], '2')
  t.equal((await score('k1')).statusCode, 200)
  const limited = await score('k1')
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0 && Number(limited.headers['retry-after']) <= 60, `Retry-After ${limited.headers['retry-after']}`)
  t.equal((await score('k2')).statusCode, 200, 'another key has its own budget')
  for (let i = 0; i < 4; i++) t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  const m = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(m.body, /scorer_rejected_total\{reason="rate_limited"\} 1/)
  // Unauthenticated requests are refused by auth before they can spend a key's budget.
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload, headers: auth('bad') })).statusCode, 401)
})

t.test('failed authentication is rate-limited per client address before the key is checked (issue 12 #9)', async (t) => {
  const { app } = await buildTestApp({ API_KEYS: 'k1' })
  t.teardown(() => app.close())
  const from = (ip: string, k: string) => app.inject({ method: 'POST', url: '/v1/score', payload, headers: auth(k), remoteAddress: ip })
  const statuses: number[] = []
  for (let i = 0; i < 60; i++) statuses.push((await from('10.0.0.9', `guess-${i}`)).statusCode)
  t.same(statuses.slice(0, 20), Array(20).fill(401), 'the first AUTH_FAILURE_LIMIT (20) guesses get 401')
  t.same(statuses.slice(20), Array(40).fill(429), 'the other 40 get 429')
  const limited = await from('10.0.0.9', 'k1')
  t.equal(limited.statusCode, 429, 'a correct guess from that address is not told apart')
  t.equal(limited.json().error.code, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0, `Retry-After ${limited.headers['retry-after']}`)
  t.equal((await from('10.0.0.10', 'k1')).statusCode, 200, 'other addresses are unaffected')

  // with RATE_LIMIT_MAX, wrong keys share their address's budget (they no longer get one bucket each)
  const { app: limitedApp } = await buildTestApp({ API_KEYS: 'k1', RATE_LIMIT_MAX: '5', AUTH_FAILURE_LIMIT: '0' })
  t.teardown(() => limitedApp.close())
  const codes: number[] = []
  for (let i = 0; i < 8; i++) codes.push((await limitedApp.inject({ method: 'POST', url: '/v1/score', payload, headers: auth(`bad-${i}`), remoteAddress: '10.0.0.11' })).statusCode)
  t.same(codes, [401, 401, 401, 401, 401, 429, 429, 429])
})

t.test('without keys the limit is per client IP', async (t) => {
  const { app } = await buildTestApp({ RATE_LIMIT_MAX: '1' })
  t.teardown(() => app.close())
  const a = (ip: string) => app.inject({ method: 'POST', url: '/v1/score', payload, remoteAddress: ip })
  t.equal((await a('10.0.0.1')).statusCode, 200)
  t.equal((await a('10.0.0.1')).statusCode, 429)
  t.equal((await a('10.0.0.2')).statusCode, 200)
})

t.test('process pressure answers 503 + Retry-After; probes stay up', async (t) => {
  // A 1-byte heap limit is always exceeded once under-pressure has taken its first sample.
  const { app } = await buildTestApp({ MAX_HEAP_USED_BYTES: '1', RETRY_AFTER_S: '3' })
  t.teardown(() => app.close())
  let r = await app.inject({ method: 'POST', url: '/v1/score', payload })
  const until = Date.now() + 5000
  while (r.statusCode !== 503 && Date.now() < until) {
    await new Promise((res) => setTimeout(res, 100))
    r = await app.inject({ method: 'POST', url: '/v1/score', payload })
  }
  t.equal(r.statusCode, 503)
  t.equal(r.json().error.code, 'overloaded')
  t.match(r.json().error.message, /under pressure/)
  t.equal(r.headers['retry-after'], '3')
  for (const url of ['/healthz', '/readyz', '/metrics']) t.equal((await app.inject({ method: 'GET', url })).statusCode, 200, `${url} still answers`)
  t.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /scorer_rejected_total\{reason="under_pressure"\} [1-9]/)
})

t.test('OPS_PORT: probes and metrics on a separate port, nothing else there', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
  const { app, engine } = await buildTestApp({ API_KEYS: 'k1', OPS_PORT: String(port), HOST: '127.0.0.1' })
  const ops = await startOpsServer(app, app.config)
  t.teardown(async () => {
    await ops?.close()
    await app.close()
  })
  const get = (url: string) => fetch(`http://127.0.0.1:${port}${url}`)
  t.equal((await get('/healthz')).status, 200)
  t.equal((await get('/readyz')).status, 200)
  const m = await get('/metrics')
  t.equal(m.status, 200)
  t.match(m.headers.get('content-type'), /text\/plain/)
  t.match(await m.text(), /scorer_requests_total/)
  t.equal((await get('/v1/models')).status, 404, 'the API is not on the ops port')
  engine.alive = false
  const r = await get('/readyz')
  t.equal(r.status, 503, 'readiness follows the app')
  t.equal((await r.json()).error.code, 'model_not_ready')
  t.equal(await startOpsServer(app, { ...app.config, opsPort: 0 }), null, 'OPS_PORT=0: off')
})
