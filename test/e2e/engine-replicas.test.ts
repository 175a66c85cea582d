// ENGINE_REPLICAS=2 with the real model, real worker threads and the real HTTP stack (inject): the same scores as
// one replica, text batches run on both replicas, and image requests (embeddings stored in replica 0's worker)
// still score, through /v1/score and through the packed graph of /v1/rank.
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { ReplicatedEngine } from '../../src/engine/replicas.ts'
import { testConfig } from '../helpers/build-app.ts'
import { MODELS_DIR } from '../helpers/real-model.ts'
import { fixtureBase64 } from '../preprocess/helpers/fixtures.ts'

const one = buildApp(testConfig({ MODELS_DIR, REQUEST_TIMEOUT_MS: '120000' }))
// MAX_BATCH_SIZE 1: each conversation is a batch of its own, so concurrent requests must spread to score at once
const two = buildApp(testConfig({ MODELS_DIR, REQUEST_TIMEOUT_MS: '120000', ENGINE_REPLICAS: '2', MAX_BATCH_SIZE: '1' }))
await Promise.all([one.ready(), two.ready()])
t.teardown(() => Promise.all([one.close(), two.close()]))
const replicated = two.engine
if (!(replicated instanceof ReplicatedEngine)) throw new Error('ENGINE_REPLICAS=2 builds a ReplicatedEngine')
// Same graph, one intra-op thread on both sides (testConfig's THREADS=1): the same float operations in the same order.
const TOL = 1e-6

const text = (i: number) => ({
  messages: [
    { role: 'user', content: `What is ${i} + ${i + 2}?` },
    { role: 'assistant', content: `The answer is ${2 * i + 2}.` },
  ],
})
const image = (answer: string) => ({
  messages: [
    { role: 'user', content: [{ type: 'image', data: fixtureBase64('images/real/imagereward-1.webp') }, { type: 'text', text: 'describe it' }] },
    { role: 'assistant', content: answer },
  ],
})

async function scores(app: typeof one, items: unknown[]): Promise<number[]> {
  const res = await Promise.all(items.map((item) => app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } })))
  return res.map((r) => {
    if (r.statusCode !== 200) throw new Error(r.body)
    return r.json().scores[0]
  })
}

t.test('concurrent text requests: both replicas run, scores as with one replica', async (t) => {
  const items = Array.from({ length: 8 }, (_, i) => text(i))
  const before = [...replicated.runs]
  const got = await scores(two, items)
  const want = await scores(one, items)
  got.forEach((s, i) => t.ok(Math.abs(s - want[i]!) <= TOL, `item ${i}: ${s} vs ${want[i]} (|Δ| <= ${TOL})`))
  const ran = replicated.runs.map((n, i) => n - before[i]!)
  t.comment(`runs per replica: ${ran.join(', ')}`)
  t.ok(ran.every((n) => n > 0), 'every replica ran some of the 8 batches')
})

t.test('an image request (embeddings stored in replica 0) and a rank over it score as with one replica', async (t) => {
  const before = replicated.runs[0]!
  const [got] = await scores(two, [image('a painting of a lake')])
  const [want] = await scores(one, [image('a painting of a lake')])
  t.ok(Math.abs(got! - want!) <= TOL, `${got} vs ${want}`)
  t.ok(replicated.runs[0]! > before, 'the batch naming the stored embeddings ran on replica 0')
  const rank = {
    prompt: image('').messages.slice(0, 1),
    candidates: ['a painting of a lake', 'a red car', 'two dogs on a beach', 'a lake at dusk, painted'],
  }
  const rankRuns = replicated.runs[0]!
  const [r2, r1] = await Promise.all([two, one].map((app) => app.inject({ method: 'POST', url: '/v1/rank', payload: rank })))
  t.equal(r2!.statusCode, 200, r2!.body)
  t.equal(r2!.json().scores.length, 4)
  r2!.json().scores.forEach((s: number, i: number) => t.ok(Math.abs(s - r1!.json().scores[i]) <= TOL, `candidate ${i}`))
  t.ok(replicated.runs[0]! > rankRuns, 'the rank (one packed row over the shared image prompt) ran on replica 0')
})

t.test('/metrics counts each replica\'s runs (scorer_engine_replica_runs_total)', async (t) => {
  const text = (await two.inject({ url: '/metrics' })).body
  for (const [i, n] of replicated.runs.entries()) {
    t.match(text, new RegExp(`^scorer_engine_replica_runs_total\\{replica="${i}"\\} ${n}$`, 'm'), `replica ${i}: ${n} runs`)
  }
})

t.test('readiness covers every replica', async (t) => {
  t.equal((await two.inject({ url: '/readyz' })).statusCode, 200)
  t.equal(await replicated.health(), true)
})
