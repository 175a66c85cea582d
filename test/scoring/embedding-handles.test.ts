// Image embeddings stay in the engine: requests carry handles, the engine's store may evict between a cache hit
// and the batch (then the request computes the image again, once), and a request's own images are pinned until
// it is scored, whatever the store's bound. Real media path (sharp, IXC transform) in front of the fake engine,
// which uses the real store logic (src/engine/embedding-store.ts).
import t from 'tap'
import { EmbeddingStore } from '../../src/engine/embedding-store.ts'
import type { RewardFeeds } from '../../src/engine/types.ts'
import { buildMediaApp } from '../preprocess/helpers/media-app.ts'
import { fixtureBase64 as b64 } from '../preprocess/helpers/fixtures.ts'

const one = b64('images/real/imagereward-1.webp')
const two = b64('images/real/imagereward-2.webp')
const conv = (images: string[], answer = 'a painting') => ({
  messages: [
    { role: 'user', content: [...images.map((data) => ({ type: 'image', data })), { type: 'text', text: 'what is this?' }] },
    { role: 'assistant', content: answer },
  ],
})
const score = (app: Awaited<ReturnType<typeof buildMediaApp>>['app'], items: object[]) =>
  app.inject({ method: 'POST', url: '/v1/score', payload: { items } })

t.test('reward feeds name images by handle: no embedding floats travel with the batch', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const seen: RewardFeeds[] = []
  const run = engine.runReward.bind(engine)
  engine.runReward = (key, f) => (seen.push(f), run(key, f))
  const res = await score(app, [conv([one])])
  t.equal(res.statusCode, 200)
  t.equal(seen.length, 1)
  t.equal(seen[0]!.imageEmbeds.length, 0, 'image_embeds left to the engine')
  t.equal(seen[0]!.imageRefs?.length, 1)
  t.ok(seen[0]!.embedRows > 1 && seen[0]!.imageRefs![0]!.tokens === seen[0]!.embedRows)
  t.equal(engine.store.pinnedBytes, 0, 'the request released its pins')
})

t.test('evicted between the vision run and the batch: computed again, same score', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const want = (await score(app, [conv([one])])).json().results[0].score
  t.equal(engine.visionRuns.length, 1)
  // the next request hits the main thread's handle table, but the engine lost the entry (as if another
  // request's image had pushed it out before this request's pin arrived)
  const run = engine.runReward.bind(engine)
  let evictions = 1
  engine.runReward = (key, f) => {
    if (evictions-- > 0) engine.store = new EmbeddingStore(engine.store.maxBytes)
    return run(key, f)
  }
  const res = await score(app, [conv([one])])
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().results[0].score, want, 'same score as before the eviction')
  t.equal(engine.visionRuns.length, 2, 'the image went through vision once more')
  const again = await score(app, [conv([one])])
  t.equal(again.json().results[0].score, want)
  t.equal(engine.visionRuns.length, 2, 'and is cached again')
})

t.test('evicted again after the recompute: a retryable 503, nothing left pinned', async (t) => {
  const { app, engine } = await buildMediaApp({ RETRY_AFTER_S: '3' })
  t.teardown(() => app.close())
  const run = engine.runReward.bind(engine)
  engine.runReward = (key, f) => {
    engine.store = new EmbeddingStore(engine.store.maxBytes)
    return run(key, f)
  }
  const res = await score(app, [conv([one])])
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'overloaded')
  t.equal(res.headers['retry-after'], '3')
  t.equal(engine.visionRuns.length, 2, 'one recompute, no loop')
})

t.test("a request's images stay pinned until it is scored, even over the store's bound", async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  engine.store = new EmbeddingStore(1) // smaller than any image: without pins the second image evicts the first
  const res = await score(app, [conv([one, two])])
  t.equal(res.statusCode, 200, res.body)
  t.equal(engine.visionRuns.length, 2, 'each image once: no miss, no recompute')
  t.equal(engine.store.pinnedBytes, 0, 'released after the request')
  t.equal(engine.store.size, 2, 'the bound applies at the next store')
  t.equal((await score(app, [conv([b64('images/real/imagereward-3.webp')])])).statusCode, 200)
  t.equal(engine.store.size, 1, 'unpinned entries evicted: only the newest is kept')
})

t.test('a text-only request sends the engine no pin messages; one with an image releases its pins once', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const calls: string[] = []
  const retain = engine.retainImages.bind(engine)
  const release = engine.releaseImages.bind(engine)
  engine.retainImages = (lease, handles) => (calls.push('retain'), retain(lease, handles))
  engine.releaseImages = (lease) => (calls.push('release'), release(lease))
  const text = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] } })
  t.equal(text.statusCode, 200, text.body)
  t.same(calls, [], 'nothing posted to the engine worker besides the batch')
  t.equal((await score(app, [conv([one]), conv([one], 'a photo')])).statusCode, 200)
  t.same(calls, ['retain', 'release'])
  t.equal(engine.store.pinnedBytes, 0)
})
