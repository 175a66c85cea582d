// The engine's image embedding store: LRU by bytes, pins per request lease, a release that overtakes its own
// vision run, models dropped on unload, and image_embeds gathered from handles.
import t from 'tap'
import { EmbeddingsMissing, EmbeddingStore, gatherImageEmbeds } from '../../src/engine/embedding-store.ts'

const block = (v: number, floats = 100) => new Float32Array(floats).fill(v) // 400 bytes

t.test('bounded by bytes, least recently used first; the newest entry always stays', async (t) => {
  const s = new EmbeddingStore(1000)
  t.same(s.put('a', 'm', block(1), 100, 1), [])
  t.same(s.put('b', 'm', block(2), 100, 1), [])
  s.get('a') // a is now the most recent
  t.same(s.put('c', 'm', block(3), 100, 1), ['b'], 'b was least recently used')
  t.equal(s.bytes, 800)
  t.same(s.put('big', 'm', block(4, 1000), 1000, 1), ['a', 'c'], 'everything else goes; big itself stays')
  t.ok(s.has('big'))
  t.same(s.put('a', 'm', block(5), 100, 1), ['big'])
  t.equal(s.bytes, 400)
})

t.test('pinned entries are never evicted until their lease is released', async (t) => {
  const s = new EmbeddingStore(500)
  s.put('a', 'm', block(1), 100, 1, 7) // pinned by request 7
  t.same(s.put('b', 'm', block(2), 100, 1), [], 'a is pinned: over the bound for now')
  t.equal(s.pinnedBytes, 400)
  s.retain(8, ['b', 'gone']) // a cache hit of request 8; a handle already gone is skipped
  t.same(s.put('c', 'm', block(3), 100, 1), [])
  s.release(7)
  t.same(s.put('d', 'm', block(4), 100, 1), ['a', 'c'], 'unpinned entries go, least recent first; b stays pinned')
  s.release(8)
  s.release(8) // twice: no negative pins
  t.equal(s.pinnedBytes, 0)
  t.same(s.put('e', 'm', block(5), 100, 1), ['b', 'd'])
})

t.test('a release arriving during its own vision run waits for it: no pin outlives its request', async (t) => {
  const s = new EmbeddingStore(0)
  let finish!: () => void
  const run = s.during(3, async () => {
    await new Promise<void>((r) => (finish = r))
    s.put('x', 'm', block(1), 100, 1, 3)
  })
  s.release(3) // overtakes the run (the worker handles messages concurrently)
  finish()
  await run
  t.equal(s.pinnedBytes, 0, 'released once the run stored its entry')
  t.same(s.put('y', 'm', block(2), 100, 1), ['x'])
})

t.test('an unloaded model takes its entries with it', async (t) => {
  const s = new EmbeddingStore(1 << 20)
  s.put('a', 'm/1', block(1), 100, 1)
  s.put('b', 'm/2', block(2), 100, 1)
  s.dropModel('m/1')
  t.notOk(s.has('a'))
  t.ok(s.has('b'))
  t.equal(s.bytes, 400)
})

t.test('gatherImageEmbeds: refs copied out of the store next to inline rows; every missing handle named', async (t) => {
  const s = new EmbeddingStore(1 << 20)
  s.put('a', 'm', Float32Array.from([1, 1, 2, 2, 3, 3]), 3, 2)
  const inline = new Float32Array(5 * 2).fill(9) // rows 0-1 inline, rows 2-4 from 'a'
  const full = gatherImageEmbeds({ imageEmbeds: inline, embedRows: 5, dim: 2, imageRefs: [{ handle: 'a', row: 2, tokens: 3 }] }, s)
  t.same([...full], [9, 9, 9, 9, 1, 1, 2, 2, 3, 3])
  const only = gatherImageEmbeds({ imageEmbeds: new Float32Array(0), embedRows: 2, dim: 2, imageRefs: [{ handle: 'a', row: 0, tokens: 2 }] }, s)
  t.same([...only], [1, 1, 2, 2], 'built by the engine when the batch sends no floats')
  const text = new Float32Array(2)
  t.equal(gatherImageEmbeds({ imageEmbeds: text, embedRows: 1, dim: 2 }, s), text, 'no refs: the feeds as they are')
  const refs = [{ handle: 'x', row: 0, tokens: 3 }, { handle: 'a', row: 3, tokens: 3 }, { handle: 'y', row: 6, tokens: 3 }, { handle: 'x', row: 9, tokens: 3 }]
  const err = (() => {
    try {
      gatherImageEmbeds({ imageEmbeds: new Float32Array(0), embedRows: 12, dim: 2, imageRefs: refs }, s)
    } catch (e) {
      return e
    }
  })()
  t.ok(err instanceof EmbeddingsMissing)
  t.same((err as EmbeddingsMissing).handles, ['x', 'y'])
  t.throws(() => gatherImageEmbeds({ imageEmbeds: new Float32Array(0), embedRows: 4, dim: 2, imageRefs: [{ handle: 'a', row: 0, tokens: 4 }] }, s), /cannot fill/)
})
