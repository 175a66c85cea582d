// Media by content hash (src/preprocess/media/media-store.ts, resolver.ts): a part may be {"type": "image",
// "sha256": "<hex>"} for media this server already received; unknown or evicted hashes get 422 media_not_cached
// telling the client to resend the bytes. Real routes, real decoding, fake engine.
import t from 'tap'
import { createHash } from 'node:crypto'
import { skipUnless } from '../helpers/tools.ts'
import { buildMediaApp } from './helpers/media-app.ts'
import { fixtureBase64 as b64, hasFfmpeg, readFixture } from './helpers/fixtures.ts'
import { MediaStore, sha256Hex } from '../../src/preprocess/media/media-store.ts'
import { ERROR_STATUS } from '../../src/errors.ts'

const hashOf = (p: string) => createHash('sha256').update(readFixture(p)).digest('hex')
const conv = (part: Record<string, string>, answer = 'a painting') => ({
  messages: [{ role: 'user', content: [{ type: 'image', ...part }, { type: 'text', text: 'what is this?' }] }, { role: 'assistant', content: answer }],
})
const webpPath = 'images/real/imagereward-1.webp'

t.test('MediaStore: LRU bounded by bytes, views copied, evictions counted', async (t) => {
  let evicted = 0
  const store = new MediaStore(10, { inc: (n = 1) => void (evicted += n) })
  const a = new Uint8Array([1, 2, 3, 4])
  store.put(sha256Hex(a), a)
  const big = new Uint8Array(100)
  const view = big.subarray(10, 14).fill(7)
  store.put('view', view)
  t.not(store.get('view')!.buffer, big.buffer, 'a view into a larger buffer is copied (it would pin the buffer)')
  t.same([...store.get('view')!], [7, 7, 7, 7])
  t.ok(store.get(sha256Hex(a)), 'a is now the most recently used')
  store.put('c', new Uint8Array(4)) // 12 bytes > 10: the least recently used ("view") goes
  t.equal(store.get('view'), undefined)
  t.ok(store.get(sha256Hex(a)))
  t.equal(store.totalBytes, 8)
  t.equal(evicted, 1)
  store.put('huge', new Uint8Array(11))
  t.equal(store.get('huge'), undefined, 'larger than the whole store: not kept, nothing evicted for it')
  t.equal(evicted, 1)
  t.equal(new MediaStore(0).get('x'), undefined)
})

t.test('an image sent once can be referred to by its sha256: same score, no bytes resent', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const sent = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(webpPath) })] } })
  t.equal(sent.statusCode, 200, sent.body.slice(0, 300))
  const hex = hashOf(webpPath)
  // upper-case hex is the same hash; eight references in one request, as a GRPO group sends them
  const refs = await app.inject({
    method: 'POST',
    url: '/v1/score',
    payload: { items: Array.from({ length: 8 }, (_, i) => conv({ sha256: i % 2 ? hex : hex.toUpperCase() })) },
  })
  t.equal(refs.statusCode, 200, refs.body.slice(0, 300))
  t.same(refs.json().scores, Array(8).fill(sent.json().scores[0]), 'the reference scores exactly as the bytes did')
  t.equal(engine.visionRuns.length, 1, 'the embedding is reused')
  const rank = await app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt: [{ role: 'user', content: [{ type: 'image', sha256: hex }, { type: 'text', text: 'describe' }] }], candidates: ['a', 'b'] } })
  t.equal(rank.statusCode, 200, '/v1/rank takes references too')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /scorer_media_store_hits_total 9\b/)
  t.match(metrics, /scorer_media_store_misses_total 0\b/)
})

t.test('with the embedding not cached, a reference is decoded again from the stored bytes', async (t) => {
  const { app, engine } = await buildMediaApp({ EMBEDDING_CACHE_BYTES: '0' })
  t.teardown(() => app.close())
  const sent = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(webpPath) })] } })
  const ref = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(webpPath) })] } })
  t.equal(ref.statusCode, 200, ref.body.slice(0, 300))
  t.equal(engine.visionRuns.length, 2, 'no embedding cache: the stored bytes went through decode and vision again')
  t.same(engine.visionRuns[1], engine.visionRuns[0], 'the same pixels reached the vision graph')
  t.equal(ref.json().scores[0], sent.json().scores[0])
})

t.test('unknown, evicted or never-decoded media: 422 media_not_cached with a retry hint', async (t) => {
  // room for one of the two images only, and no embedding cache (so only the stored bytes can answer)
  const small = readFixture('images/real/sharp-concert-grayscale.jpg').length
  const { app, engine } = await buildMediaApp({ EMBEDDING_CACHE_BYTES: '0', MEDIA_STORE_BYTES: String(readFixture(webpPath).length + small - 1) })
  t.teardown(() => app.close())
  t.equal(ERROR_STATUS.media_not_cached, 422)
  const unknown = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: 'ab'.repeat(32) })] } })
  t.equal(unknown.statusCode, 422)
  t.equal(unknown.json().error.code, 'media_not_cached')
  t.match(unknown.json().error.message, /resend this part with its bytes/)
  t.equal(engine.visionRuns.length + engine.rowsRun.length, 0, 'nothing ran')

  await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(webpPath) })] } })
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(webpPath) })] } })).statusCode, 200)
  await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64('images/real/sharp-concert-grayscale.jpg') })] } })
  const evicted = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(webpPath) })] } })
  t.equal(evicted.json().error?.code, 'media_not_cached', 'evicted by a newer image')
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf('images/real/sharp-concert-grayscale.jpg') })] } })).statusCode, 200)
  // resending the bytes makes the hash usable again
  await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(webpPath) })] } })
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(webpPath) })] } })).statusCode, 200)

  // bytes that failed to decode are never stored
  const bad = 'images/hostile/sharp-truncated.jpg'
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(bad) })] } })).json().error.code, 'media_invalid')
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(bad) })] } })).json().error.code, 'media_not_cached')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /scorer_media_store_misses_total 3\b/)
  t.match(metrics, /scorer_media_store_hits_total 3\b/)
  t.match(metrics, /scorer_media_store_evictions_total [1-9]/)
})

t.test('a reference is one source: malformed or combined with bytes is a 422 invalid_request', async (t) => {
  const { app } = await buildMediaApp({ MEDIA_MAX_FILES: '2' })
  t.teardown(() => app.close())
  for (const part of [{ sha256: 'xyz' }, { sha256: 'ab'.repeat(31) }, { sha256: hashOf(webpPath), data: b64(webpPath) }] as Array<Record<string, string>>) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv(part)] } })
    t.equal(res.statusCode, 422, JSON.stringify(part).slice(0, 80))
    t.equal(res.json().error.code, 'invalid_request')
  }
  const ref = { sha256: 'ab'.repeat(32) }
  const three = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv(ref), conv(ref), conv(ref)] } })
  t.equal(three.statusCode, 413, 'references count towards MEDIA_MAX_FILES')
  t.equal((await app.inject({ url: '/v1/models' })).json().limits.media.media_store_bytes, 128 * 1024 * 1024)
})

t.test('video by reference', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const { app, engine } = await buildMediaApp({ EMBEDDING_CACHE_BYTES: '0' })
  t.teardown(() => app.close())
  const p = 'video/real/llamafactory-mllm_demo_4.mp4'
  const item = (part: Record<string, string>) => ({ items: [{ messages: [{ role: 'user', content: [{ type: 'video', ...part }, { type: 'text', text: 'what happens?' }] }, { role: 'assistant', content: 'someone draws' }] }] })
  const sent = await app.inject({ method: 'POST', url: '/v1/score', payload: item({ data: b64(p) }) })
  t.equal(sent.statusCode, 200, sent.body.slice(0, 300))
  const ref = await app.inject({ method: 'POST', url: '/v1/score', payload: item({ sha256: hashOf(p) }) })
  t.equal(ref.statusCode, 200, ref.body.slice(0, 300))
  t.equal(ref.json().scores[0], sent.json().scores[0])
  t.equal(engine.visionRuns.length, 2, 'decoded again from the stored bytes')
  // the same hash declared as an image: the stored bytes are sniffed against the declared type
  const wrong = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(p) })] } })
  t.equal(wrong.json().error.code, 'unsupported_media_type')
})

t.test('MEDIA_STORE_BYTES=0: references are off, even for a cached embedding', async (t) => {
  const { app, engine } = await buildMediaApp({ MEDIA_STORE_BYTES: '0' })
  t.teardown(() => app.close())
  t.equal((await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ data: b64(webpPath) })] } })).statusCode, 200)
  const ref = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [conv({ sha256: hashOf(webpPath) })] } })
  t.equal(ref.json().error?.code, 'media_not_cached')
  t.equal(engine.visionRuns.length, 1)
})
