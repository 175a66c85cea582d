// openapi.yaml against the real app: every route the app registers is in the spec (and nothing stale is),
// every documented request example is accepted, and real responses — successes and errors — validate
// against the spec's schemas and headers. The spec passes @apidevtools/swagger-parser and Redocly's lint
// (recommended rules, no warnings). /docs serves the page and the spec, /openapi.json the spec.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import SwaggerParser from '@apidevtools/swagger-parser'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Ajv2020 } from 'ajv/dist/2020.js'
import YAML from 'yaml'
import { buildApp } from '../../src/app.ts'
import { OPENAPI_PATH } from '../../src/http/plugins/docs.ts'
import { ModelRegistry } from '../../src/models/registry.ts'
import { testConfig } from '../helpers/build-app.ts'
import { FakeEngine } from '../helpers/fake-engine.ts'
import { fakeModel } from '../helpers/fake-model.ts'

const spec = YAML.parse(readFileSync(OPENAPI_PATH, 'utf8'))
const ajv = new Ajv2020({ strict: false, allErrors: true })
ajv.addSchema(spec, 'spec')
const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')
const deref = (o: any): any => {
  while (o && typeof o.$ref === 'string') o = o.$ref.slice(2).split('/').reduce((x: any, k: string) => x?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec)
  return o
}

type Res = { statusCode: number; headers: Record<string, unknown>; body: string }

/** Problems of one response against the spec's entry for its path, method and status ('' = none). */
function specProblems(p: string, method: string, res: Res): string {
  const op = spec.paths?.[p]?.[method.toLowerCase()]
  if (!op) return `${method} ${p} is not in openapi.yaml`
  const raw = op.responses[String(res.statusCode)]
  if (!raw) return `${method} ${p} does not document status ${res.statusCode}`
  const r = deref(raw)
  const problems: string[] = []
  for (const [name, h] of Object.entries<any>(r.headers ?? {})) {
    const v = res.headers[name.toLowerCase()]
    if (v === undefined) {
      if (!name.startsWith('x-ratelimit')) problems.push(`header ${name} missing`) // only with rate limiting on
      continue
    }
    const schema = deref(h).schema
    if (schema && !ajv.validate(schema, String(v))) problems.push(`header ${name}=${String(v)}: ${ajv.errorsText()}`)
  }
  const ct = String(res.headers['content-type'] ?? '').split(';')[0]!
  const types = Object.keys(r.content ?? {})
  if (types.length > 0 && !types.includes(ct)) problems.push(`content-type ${ct} not in [${types}]`)
  if (ct === 'application/json' && r.content?.['application/json']) {
    // Point at the schema where it lives, so its own $refs resolve inside the spec document.
    const base = typeof raw.$ref === 'string' ? raw.$ref.slice(2) : pointer('paths', p, method.toLowerCase(), 'responses', String(res.statusCode))
    const validate = ajv.getSchema(`spec#/${base}/content/application~1json/schema`)!
    if (!validate(JSON.parse(res.body))) problems.push(ajv.errorsText(validate.errors, { separator: '; ' }))
  }
  return problems.join('; ')
}

const example = (p: string, m: string) => spec.paths[p][m.toLowerCase()].requestBody?.content?.['application/json']?.example

const modelsDir = mkdtempSync(path.join(os.tmpdir(), 'openapi-models-'))
t.teardown(() => rmSync(modelsDir, { recursive: true, force: true }))

/** The real app (all its plugins and routes) on a fake engine and model; collects every route added. */
async function appWith(env: Record<string, string> = {}) {
  const engine = new FakeEngine()
  const models = new ModelRegistry()
  models.publish(fakeModel())
  const app = buildApp(testConfig({ MODELS_DIR: modelsDir, ADMIN_TOKEN: 'admin-secret', ...env }), { engine, models })
  const routes: Array<{ url: string; method: string; hidden: boolean }> = []
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) routes.push({ url: r.url, method: m, hidden: Boolean((r.schema as any)?.hide) })
  })
  await app.ready()
  return { app, engine, models, routes }
}

t.test('the spec is a valid OpenAPI 3.1 document whose schemas compile', async (t) => {
  t.equal(spec.openapi, '3.1.0')
  for (const name of Object.keys(spec.components.schemas)) t.ok(ajv.getSchema(`spec#/components/schemas/${name}`), name)
  // Every $ref points at something.
  const refs = [...JSON.stringify(spec).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!)
  for (const r of new Set(refs)) t.ok(deref({ $ref: r }), `${r} resolves`)
})

t.test('swagger-parser validates the spec (OpenAPI 3.1 schema, $refs)', async (t) => {
  await t.resolves(SwaggerParser.validate(structuredClone(spec)))
  // The check is live: the defect (a license without identifier or url) fails it.
  const broken = structuredClone(spec)
  delete broken.info.license.identifier
  await t.rejects(SwaggerParser.validate(broken), /license/)
})

t.test('Redocly lint (recommended rules) reports no error and no warning', async (t) => {
  const bin = path.resolve('node_modules/.bin/redocly')
  const run = (file: string) =>
    promisify(execFile)(bin, ['lint', file, '--format=summary'], {
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
      timeout: 120_000,
    }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: any) => ({ code: e.code as number, out: String(e.stdout) + String(e.stderr) }),
    )
  const r = await run(OPENAPI_PATH)
  t.equal(r.code, 0, r.out)
  t.notMatch(r.out, /\b(error|warning)\s+[\w-]+:/, 'no problems listed')
  t.match(r.out, /valid/)
  // Live: a spec with a problem is reported (a warning here, which the check above refuses too).
  const bad = path.join(modelsDir, 'bad-openapi.yaml')
  writeFileSync(bad, YAML.stringify({ ...spec, servers: [{ url: 'https://example.com' }] }))
  t.match((await run(bad)).out, /\bwarning\s+no-server-example\.com:/)
})

t.test('the server URL is relative, so "Try it out" calls the host that served the page', async (t) => {
  t.ok(spec.servers.every((s: { url: string }) => s.url.startsWith('/')), JSON.stringify(spec.servers))
  const { app } = await appWith()
  t.teardown(() => app.close())
  const served = await app.inject({ method: 'GET', url: '/openapi.json', headers: { host: 'scorer.internal.example:9999' } })
  t.equal(served.statusCode, 200)
  t.same(served.json().servers, spec.servers)
})

t.test('every route of the app is in the spec, and every spec path is a route', async (t) => {
  const { app, routes } = await appWith()
  t.teardown(() => app.close())
  const real = routes
    .filter((r) => !r.hidden && r.method !== 'HEAD' && r.method !== 'OPTIONS')
    .map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`)
  t.ok(real.length >= 9, `${real.length} routes collected`)
  const documented = Object.entries<any>(spec.paths).flatMap(([p, item]) => Object.keys(item).filter((m) => /^(get|post|put|patch|delete)$/.test(m)).map((m) => `${m.toUpperCase()} ${p}`))
  for (const r of real) t.ok(documented.includes(r), `${r} is documented in openapi.yaml`)
  for (const d of documented) t.ok(real.includes(d), `${d} (openapi.yaml) is a real route`)
  // The docs routes themselves are hidden from the spec but served.
  t.ok(routes.some((r) => r.url === '/docs' && r.hidden))
})

t.test('the spec validator catches a wrong response (it is live)', async (t) => {
  const bad = { statusCode: 200, headers: { 'content-type': 'application/json', 'x-request-id': 'x', 'x-preprocess-time': '1.00', 'x-queue-time': '1.00', 'x-inference-time': '1.00' }, body: JSON.stringify({ model: { name: 'a', version: 1 }, normalized: false, scores: ['x'], results: [] }) }
  t.match(specProblems('/v1/score', 'POST', bad), /must be number/)
  t.match(specProblems('/v1/score', 'POST', { ...bad, statusCode: 418 }), /does not document status 418/)
  t.match(specProblems('/v1/score', 'POST', { ...bad, headers: { 'content-type': 'application/json' } }), /x-request-id missing/)
})

t.test('documented examples are accepted and real responses match the spec', async (t) => {
  const { app } = await appWith()
  t.teardown(() => app.close())
  const calls: Array<[string, string, unknown?, Record<string, string>?]> = [
    ['/v1/score', 'POST', example('/v1/score', 'POST')],
    ['/v1/score', 'POST', { ...(example('/v1/score', 'POST') as object), normalize: true }],
    ['/v1/compare', 'POST', example('/v1/compare', 'POST')],
    ['/v1/compare', 'POST', { conversations: [[{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'b' }]], normalize: true }],
    ['/v1/rank', 'POST', example('/v1/rank', 'POST')],
    ['/v1/rank', 'POST', { prompt: [{ role: 'user', content: 'q' }], candidates: ['a', [{ type: 'text', text: 'bb' }]], length_control: { mode: 'penalty', per_token: 0.01 }, normalize: true }],
    ['/get_reward', 'POST', example('/get_reward', 'POST')],
    ['/get_reward', 'POST', { messages: [[{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]], options: { clip: { min: -1, max: 1 } } }],
    ['/get_reward', 'POST', { query: [], prompts: [], labels: [] }],
    ['/v1/models', 'GET'],
    ['/v1/score', 'POST', example('/score', 'POST')],
    ['/score', 'POST', example('/score', 'POST')],
    ['/score', 'POST', { queries: ['q1', 'q2'], documents: ['a', { content: [{ type: 'text', text: 'b' }] }], use_activation: false }],
    ['/pooling', 'POST', example('/pooling', 'POST')],
    ['/pooling', 'POST', { input: ['<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>'], use_activation: true }],
    ['/classify', 'POST', example('/classify', 'POST')],
    ['/classify', 'POST', { messages: [{ role: 'developer', content: 's' }, { role: 'user', content: [{ type: 'text', text: 'q' }] }, { role: 'assistant', content: 'a' }] }],
    ['/rerank', 'POST', spec.components.requestBodies.Rerank.content['application/json'].example],
    ['/v1/rerank', 'POST', { query: 'q', documents: ['a', { text: 'b' }], return_documents: false }],
    ['/v2/rerank', 'POST', { model: 'fake-rm', query: 'q', documents: ['a', 'b'], top_n: 3 }],
    ['/info', 'GET'],
    ['/openapi.json', 'GET'],
    ['/healthz', 'GET'],
    ['/readyz', 'GET'],
    ['/metrics', 'GET'],
    ['/admin/models/reload', 'POST', undefined, { authorization: 'Bearer admin-secret' }],
  ]
  for (const [p, method, payload, headers] of calls) {
    const res = await app.inject({ method: method as 'GET' | 'POST', url: p, payload: payload as object, headers })
    t.equal(res.statusCode, 200, `${method} ${p} answers 200: ${res.body.slice(0, 200)}`)
    t.equal(specProblems(p, method, res), '', `${method} ${p} matches the spec`)
    // Requests validate against the spec too (the spec does not promise what the app refuses).
    if (payload !== undefined) {
      const rb = spec.paths[p][method.toLowerCase()].requestBody
      const base = typeof rb.$ref === 'string' ? rb.$ref.slice(2) : pointer('paths', p, method.toLowerCase(), 'requestBody')
      const v = ajv.getSchema(`spec#/${base}/content/application~1json/schema`)!
      t.ok(v(payload), `${method} ${p} request matches the spec: ${ajv.errorsText(v.errors)}`)
    }
  }
})

t.test('multipart/form-data, as documented, is accepted by every scoring route', async (t) => {
  const { app } = await appWith()
  t.teardown(() => app.close())
  for (const [p, item] of Object.entries<any>(spec.paths)) {
    const form = item.post?.requestBody?.content?.['multipart/form-data']
    if (!form) continue
    t.same(deref(form.schema).required, ['request'])
    const boundary = 'spec-test-boundary'
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n${JSON.stringify(example(p, 'POST'))}\r\n--${boundary}--\r\n`
    const res = await app.inject({ method: 'POST', url: p, payload: body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } })
    t.equal(res.statusCode, 200, `${p} multipart: ${res.body.slice(0, 200)}`)
    t.equal(specProblems(p, 'POST', res), '', `${p} multipart response matches the spec`)
  }
})

t.test('error responses match the spec', async (t) => {
  const { app, engine } = await appWith({ MAX_PENDING_ITEMS: '2', MAX_CLIENT_BATCH_SIZE: '2' })
  t.teardown(() => app.close())
  const conv = [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]
  const cases: Array<[string, string, number, object | string | undefined, Record<string, string>?]> = [
    ['/v1/score', 'POST', 422, { items: [] }],
    ['/v1/score', 'POST', 422, { items: [{ messages: [{ role: 'user', content: 'no answer' }] }] }],
    ['/v1/score', 'POST', 404, { model: 'nope', items: [{ messages: conv }] }],
    ['/v1/score', 'POST', 400, '{"items": [', { 'content-type': 'application/json' }],
    ['/v1/score', 'POST', 415, '<x/>', { 'content-type': 'application/xml' }],
    ['/v1/compare', 'POST', 422, { prompt: 'p' }],
    ['/v1/rank', 'POST', 422, { prompt: 'p', candidates: [] }],
    ['/get_reward', 'POST', 422, { query: ['a'], messages: [] }],
    ['/v1/score', 'POST', 422, { items: [{ messages: [{ role: 'user', content: [{ type: 'image', data: 'aGk=' }] }, { role: 'assistant', content: 'a' }] }] }],
  ]
  for (const [p, method, status, payload, headers] of cases) {
    const res = await app.inject({ method: method as 'POST', url: p, payload: payload as any, headers })
    t.equal(res.statusCode, status, `${method} ${p} -> ${status}: ${res.body.slice(0, 160)}`)
    t.equal(specProblems(p, method, res), '', `${method} ${p} ${status} matches the spec`)
  }
  // 503 overloaded with Retry-After: the queue holds 2 items.
  engine.hold()
  const busy = app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: conv }, { messages: conv }] } })
  await engine.started(1)
  const over = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: conv }] } })
  engine.release()
  await busy
  t.equal(over.statusCode, 503)
  t.equal(specProblems('/v1/score', 'POST', over), '', '503 overloaded matches the spec (Retry-After included)')
  // Admin without / with a wrong token.
  for (const h of [{}, { authorization: 'Bearer wrong' }]) {
    const res = await app.inject({ method: 'POST', url: '/admin/models/reload', headers: h })
    t.equal(res.statusCode, 401)
    t.equal(specProblems('/admin/models/reload', 'POST', res), '')
  }
})

t.test('auth and rate-limit errors match the spec', async (t) => {
  const { app } = await appWith({ API_KEYS: 'k1', RATE_LIMIT_MAX: '1' })
  t.teardown(() => app.close())
  const payload = example('/v1/score', 'POST') as object
  const unauth = await app.inject({ method: 'POST', url: '/v1/score', payload })
  t.equal(unauth.statusCode, 401)
  t.equal(specProblems('/v1/score', 'POST', unauth), '')
  const ok = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: { authorization: 'Bearer k1' } })
  t.equal(ok.statusCode, 200)
  t.equal(specProblems('/v1/score', 'POST', ok), '')
  const limited = await app.inject({ method: 'POST', url: '/v1/score', payload, headers: { authorization: 'Bearer k1' } })
  t.equal(limited.statusCode, 429)
  t.equal(specProblems('/v1/score', 'POST', limited), '', '429 with Retry-After matches the spec')
  const noAdmin = await (await appWith({ ADMIN_TOKEN: '' })).app
  t.teardown(() => noAdmin.close())
  const forbidden = await noAdmin.inject({ method: 'POST', url: '/admin/models/reload', headers: { authorization: 'Bearer x' } })
  t.equal(forbidden.statusCode, 403)
  t.equal(specProblems('/admin/models/reload', 'POST', forbidden), '')
})

t.test('/docs serves the interactive page and this spec', async (t) => {
  const { app } = await appWith({ API_KEYS: 'k1' })
  t.teardown(() => app.close())
  const page = await app.inject({ method: 'GET', url: '/docs' })
  t.equal(page.statusCode, 200, 'open without a key')
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /swagger/i)
  const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
  t.equal(init.statusCode, 200)
  const json = await app.inject({ method: 'GET', url: '/docs/json' })
  t.same(json.json(), spec)
  const yaml = await app.inject({ method: 'GET', url: '/docs/yaml' })
  t.same(YAML.parse(yaml.body), spec)
})
