// The TS client against a real local HTTP server that refuses first (503 + Retry-After, 504), then answers.
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { RewardClient, RewardServiceError } from '../../clients/typescript/index.js'

type Script = Array<{ status: number; headers?: Record<string, string>; body: unknown }>

async function startServer(t: { teardown: (fn: () => unknown) => void }, script: Script) {
  const seen: Array<{ url: string; body: string; auth?: string }> = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      seen.push({ url: req.url ?? '', body, auth: req.headers.authorization })
      const step = script[Math.min(seen.length - 1, script.length - 1)]
      res.writeHead(step.status, { 'content-type': 'application/json', ...step.headers })
      res.end(JSON.stringify(step.body))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const ok = { rewards: [0.5], scores: [0.62], extra_logs: {} }
const overloaded = { error: { code: 'overloaded', message: 'queue full' } }

t.test('503 with Retry-After, then 504, then 200: the answer comes back, the waits are honoured', async (t) => {
  const srv = await startServer(t, [
    { status: 503, headers: { 'retry-after': '2' }, body: overloaded },
    { status: 504, body: { error: { code: 'timeout', message: 'deadline' } } },
    { status: 200, body: ok },
  ])
  const sleeps: number[] = []
  const retries: string[] = []
  const client = new RewardClient({
    baseUrl: srv.url + '/',
    apiKey: 'k1',
    sleep: async (ms) => void sleeps.push(ms),
    random: () => 0,
    retry: { initialDelayMs: 100 },
    onRetry: (i) => void retries.push(i.reason),
  })
  const res = await client.getReward({ query: ['q'], prompts: ['p'], labels: null })
  t.same(res, ok)
  t.equal(srv.seen.length, 3)
  t.same(sleeps, [2000, 100], 'Retry-After 2 s first, then backoff (retry 2: cap 200, jitter floor 100)')
  t.same(retries, ['503 overloaded', '504 timeout'])
  t.equal(srv.seen[0].url, '/get_reward')
  t.same(JSON.parse(srv.seen[2].body), { query: ['q'], prompts: ['p'], labels: null })
  t.equal(srv.seen[0].auth, 'Bearer k1')
})

t.test('gives up after maxAttempts with the last refusal', async (t) => {
  const srv = await startServer(t, [{ status: 503, headers: { 'retry-after': '1' }, body: overloaded }])
  const client = new RewardClient({ baseUrl: srv.url, sleep: async () => {}, retry: { maxAttempts: 3 } })
  const err = await client.score({ items: [] }).catch((e) => e)
  t.type(err, RewardServiceError)
  t.equal(err.status, 503)
  t.equal(err.code, 'overloaded')
  t.equal(err.attempts, 3)
  t.equal(srv.seen.length, 3)
})

t.test('4xx is thrown at once, never retried', async (t) => {
  const srv = await startServer(t, [{ status: 422, body: { error: { code: 'invalid_request', message: 'bad items' } } }])
  const client = new RewardClient({ baseUrl: srv.url, sleep: async () => void t.fail('must not sleep') })
  const err = await client.rank({}).catch((e) => e)
  t.equal(err.status, 422)
  t.equal(err.code, 'invalid_request')
  t.equal(srv.seen.length, 1)
})

t.test('a non-JSON error page keeps its status', async (t) => {
  const srv = await startServer(t, [{ status: 500, body: '<html>' }])
  const err = await new RewardClient({ baseUrl: srv.url }).models().catch((e) => e)
  t.equal(err.status, 500)
  t.equal(err.code, 'http_500', 'code synthesised from the status')
})

t.test('connection refused is retried, then reported as unreachable', async (t) => {
  const srv = await startServer(t, [{ status: 200, body: ok }])
  const dead = srv.url.replace(/:\d+$/, ':1')
  let sleeps = 0
  const client = new RewardClient({ baseUrl: dead, sleep: async () => void sleeps++, retry: { maxAttempts: 2 } })
  const err = await client.getReward({ query: [] }).catch((e) => e)
  t.type(err, RewardServiceError)
  t.equal(err.code, 'unreachable')
  t.equal(sleeps, 1)
})

t.test('per-attempt timeout retries; caller abort does not', async (t) => {
  const server = http.createServer(() => {}) // never answers
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const timed = new RewardClient({ baseUrl: url, timeoutMs: 50, sleep: async () => {}, retry: { maxAttempts: 2 } })
  const err = await timed.models().catch((e) => e)
  t.match(err.message, /timeout after 2 attempts/)
  const ac = new AbortController()
  let retried = false
  const client = new RewardClient({ baseUrl: url, onRetry: () => void (retried = true) })
  setTimeout(() => ac.abort(), 30)
  const aborted = await client.models(ac.signal).catch((e) => e)
  t.equal(aborted.name, 'AbortError')
  t.notOk(retried)
})

t.test('stepScores: one /v1/score item with steps, model passed, the step scores returned', async (t) => {
  const srv = await startServer(t, [{ status: 200, body: { results: [{ score: 0.4, step_scores: [0.1, 0.4] }], scores: [0.4] } }])
  const client = new RewardClient({ baseUrl: srv.url })
  const messages = [{ role: 'user' as const, content: 'q' }, { role: 'assistant' as const, content: 'a. b.' }]
  t.same(await client.stepScores(messages, { separator: '. ' }, { model: 'rm' }), [0.1, 0.4])
  t.equal(srv.seen[0].url, '/v1/score')
  t.same(JSON.parse(srv.seen[0].body), { items: [{ messages, steps: { separator: '. ' } }], model: 'rm' })
})
