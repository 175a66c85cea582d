// Image embeddings stay in the engine worker: counted by the worker protocol (WorkerEngine.transferStats), a
// request with an image moves the pixels in and the scores out, never the [tokens, dim] embedding block (at IXC
// scale ≈ 47 MB, which used to go worker -> main thread -> worker). Real model, real worker, real HTTP stack
// (inject), a real image. Scores through handles against the trainer's golden values: test/e2e/media.test.ts.
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import type { RewardFeeds, TransferStats } from '../../src/engine/types.ts'
import { testConfig } from '../helpers/build-app.ts'
import { MODELS_DIR } from '../helpers/real-model.ts'
import { fixtureBase64 } from '../preprocess/helpers/fixtures.ts'

const app = buildApp(testConfig({ MODELS_DIR, REQUEST_TIMEOUT_MS: '120000' }))
await app.ready()
t.teardown(() => app.close())

const engine = app.engine
if (!engine.transferStats) throw new Error('the real engine counts its protocol bytes')
const stats = () => engine.transferStats!()
const item = (answer: string) => ({
  messages: [
    { role: 'user', content: [{ type: 'image', data: fixtureBase64('images/real/imagereward-1.webp') }, { type: 'text', text: 'describe it' }] },
    { role: 'assistant', content: answer },
  ],
})
let embedBytes = 0
const runReward = app.engine.runReward.bind(app.engine)
app.engine.runReward = (key: string, f: RewardFeeds) => {
  embedBytes = Math.max(embedBytes, f.embedRows * f.dim * 4)
  return runReward(key, f)
}

async function measured(answer: string): Promise<{ moved: TransferStats; score: number }> {
  const before = stats()
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item(answer)] } })
  if (res.statusCode !== 200) throw new Error(res.body)
  const after = stats()
  return { moved: { toEngine: after.toEngine - before.toEngine, fromEngine: after.fromEngine - before.fromEngine }, score: res.json().results[0].score }
}

t.test('per request: no embedding block crosses the thread boundary, first request or cached', async (t) => {
  const miss = await measured('a painting of a lake')
  const hit = await measured('a painting of a lake')
  t.ok(embedBytes > 0, `one image is ${embedBytes} bytes of embeddings`)
  t.comment(`bytes main->worker / worker->main: miss ${miss.moved.toEngine} / ${miss.moved.fromEngine}, hit ${hit.moved.toEngine} / ${hit.moved.fromEngine}`)
  t.ok(miss.moved.fromEngine < embedBytes / 10, `vision run: ${miss.moved.fromEngine} bytes back, not the ${embedBytes}-byte block`)
  t.ok(hit.moved.toEngine < embedBytes / 10, `cached image: ${hit.moved.toEngine} bytes sent with the batch, not the block`)
  t.ok(hit.moved.fromEngine < 64, 'the score and nothing else comes back')
  t.equal(hit.score, miss.score, 'same score from the cached handle')
})

