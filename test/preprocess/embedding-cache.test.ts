import t from 'tap'
import { EmbeddingCache, mediaCacheKey, type CachedEmbedding } from '../../src/preprocess/media/embedding-cache.ts'
import { sha256Hex } from '../../src/preprocess/media/media-store.ts'

const entry = (floats: number): CachedEmbedding => ({ bytes: floats * 4, tokens: floats, dim: 1 })
const counter = () => {
  const c = { n: 0, inc: (k = 1) => void (c.n += k) }
  return c
}

t.test('LRU bounded by bytes, with hit/miss/eviction counts', async (t) => {
  const m = { hits: counter(), misses: counter(), evictions: counter() }
  const cache = new EmbeddingCache(1000, m) // 250 floats
  let computed = 0
  const get = (k: string, n: number) => cache.getOrCompute(k, async () => (computed++, entry(n)))
  await get('a', 100)
  await get('b', 100)
  await get('a', 100) // hit; a becomes most recent
  t.equal(computed, 2)
  await get('c', 100) // 1200 bytes > 1000: evicts b (least recently used), keeps a
  t.equal(cache.totalBytes, 800)
  t.ok(cache.peek('a') && cache.peek('c') && !cache.peek('b'))
  await get('big', 300) // larger than the whole cache: returned, not stored
  t.notOk(cache.peek('big'))
  t.same([m.hits.n, m.misses.n, m.evictions.n], [1, 4, 1])
})

t.test('concurrent callers for one key share a single computation; failures are not cached', async (t) => {
  const cache = new EmbeddingCache(1 << 20)
  let runs = 0
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  const compute = async () => {
    runs++
    await gate
    return entry(4)
  }
  const all = Promise.all(Array.from({ length: 8 }, () => cache.getOrCompute('k', compute)))
  release()
  const got = await all
  t.equal(runs, 1)
  t.ok(got.every((g) => g === got[0]))
  t.equal(cache.hits, 7)
  await t.rejects(cache.getOrCompute('bad', async () => { throw new Error('boom') }))
  let again = 0
  await cache.getOrCompute('bad', async () => (again++, entry(1)))
  t.equal(again, 1, 'a failed computation is retried, not remembered')
})

t.test('keys: content hash plus preprocessing and model identity', async (t) => {
  const a = sha256Hex(new Uint8Array([1, 2, 3]))
  t.equal(mediaCacheKey(a, { m: 'x/1', hd: 4 }), mediaCacheKey(sha256Hex(new Uint8Array([1, 2, 3])), { m: 'x/1', hd: 4 }))
  t.not(mediaCacheKey(a, { m: 'x/1', hd: 4 }), mediaCacheKey(a, { m: 'x/1', hd: 2 }))
  t.not(mediaCacheKey(a, { m: 'x/1', hd: 4 }), mediaCacheKey(a, { m: 'x/2', hd: 4 }))
  t.not(mediaCacheKey(a, { m: 'x/1' }), mediaCacheKey(sha256Hex(new Uint8Array([1, 2, 4])), { m: 'x/1' }))
})
