// The media hook through the real routes (fake engine): cache and in-flight sharing, hd_num selection, budgets,
// and every hostile image answered with a specific 4xx before the engine sees anything.
import t from 'tap'
import { skipUnless } from '../helpers/tools.ts'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { buildMediaApp, mediaModel, VisionCountingEngine } from './helpers/media-app.ts'
import { imageTokenCount } from '../../src/preprocess/image/hd-transform.ts'
import { fixtures, fixtureBase64 as b64, hasFfmpeg } from './helpers/fixtures.ts'
import { IxcMediaResolver } from '../../src/preprocess/media/resolver.ts'
import { defaultMediaConfig } from '../../src/preprocess/media/media-config.ts'
import { mediaScopeOf } from '../../src/preprocess/media/request-scope.ts'
import { liveFfmpegChildren } from '../../src/preprocess/video/ffmpeg.ts'
const webp = b64('images/real/imagereward-1.webp')
const imageConv = (data: string, answer = 'a painting') => ({
  messages: [{ role: 'user', content: [{ type: 'image', data }, { type: 'text', text: 'what is this?' }] }, { role: 'assistant', content: answer }],
})

t.test('best-of-N with one image: the vision graph runs once, not N times', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const candidates = Array.from({ length: 8 }, (_, i) => `answer number ${i}`)
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt: [{ role: 'user', content: [{ type: 'image', data: webp }, { type: 'text', text: 'describe' }] }], candidates } })
  t.equal(res.statusCode, 200, res.body.slice(0, 200))
  t.equal(res.json().scores.length, 8)
  t.equal(engine.visionRuns.length, 1, 'one vision run for 8 candidates')
  // the same image in 8 separate conversations of one /v1/score call: shared in flight, still one run in total
  const score = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: candidates.map((c) => imageConv(webp, c)) } })
  t.equal(score.statusCode, 200, score.body.slice(0, 200))
  t.equal(engine.visionRuns.length, 1, 'cache hit across requests and conversations')
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /scorer_media_cache_misses_total 1\b/)
  t.match(metrics, /scorer_media_cache_hits_total 8\b/)
  // the image changes the score (embedding reaches the reward graph): a different image, different score
  const other = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(b64('images/real/imagereward-2.webp'), candidates[0])] } })
  t.equal(engine.visionRuns.length, 2)
  t.not(other.json().scores[0], score.json().scores[0])
})

t.test('hd_num drops to hd_num_multi when a conversation has more than one image', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  // 512x512 with hd_num 4 -> 2 columns -> 224x224; with hd_num_multi 2 -> 1 column -> 112x112
  await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(webp)] } })
  t.same(engine.visionRuns.map((r) => [r.height, r.width]), [[224, 224]])
  const two = {
    messages: [
      { role: 'user', content: [{ type: 'image', data: webp }, { type: 'image', data: b64('images/real/imagereward-3.webp') }, { type: 'text', text: 'which?' }] },
      { role: 'assistant', content: 'the first' },
    ],
  }
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [two] } })
  t.equal(res.statusCode, 200)
  t.same(engine.visionRuns.slice(1).map((r) => [r.height, r.width]), [[112, 112], [112, 112]], 'same bytes, other hd_num: a new cache key')
  // tokens reported: text + two blocks of (1+1)·16+1+2·4 = 41 positions
  const one = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'which?' }, { role: 'assistant', content: 'the first' }] }] } })
  t.equal(res.json().results[0].tokens - one.json().results[0].tokens, 82)
})

t.test('data: URIs are accepted; declared types are ignored', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(`data:image/png;base64,${webp}`)] } })
  t.equal(res.statusCode, 200, res.body.slice(0, 200))
  t.equal(engine.visionRuns.length, 1)
})

t.test('every hostile image gets a specific 4xx; nothing reaches the engine', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const cases: Array<[string, number, string]> = [
    ['images/hostile/sharp-giant-image.jpg', 422, 'media_limit_exceeded'],
    ['images/hostile/sharp-65536-uint32-limit.png', 422, 'media_limit_exceeded'],
    ['images/hostile/bomb.png.gz', 422, 'media_limit_exceeded'],
    ['images/hostile/libvips-17000x17000.avif', 415, 'unsupported_media_type'],
    ['images/hostile/sharp-truncated.jpg', 422, 'media_invalid'],
    ['images/hostile/sharp-truncated.png', 422, 'media_invalid'],
    ['images/hostile/sharp-corrupt-header.jpg', 422, 'media_invalid'],
    ['images/hostile/libvips-truncated.gif', 422, 'media_invalid'],
    ['images/hostile/payloads/imagetragick-read.jpg', 415, 'unsupported_media_type'],
    ['images/hostile/payloads/imagetragick-rce1.jpg', 415, 'unsupported_media_type'],
    ['images/hostile/payloads/patt-convert_local_etc_passwd.svg', 415, 'unsupported_media_type'],
  ]
  for (const f of ['xs1n0g01', 'xs2n0g01', 'xs4n0g01', 'xs7n0g01', 'xcrn0g04', 'xlfn0g04']) cases.push([`images/hostile/pngsuite/${f}.png`, 415, 'unsupported_media_type'])
  for (const f of ['xhdn0g08', 'xcsn0g01', 'xdtn0g01', 'xc1n0g08', 'xc9n2c08', 'xd0n2c08', 'xd3n2c08', 'xd9n2c08']) cases.push([`images/hostile/pngsuite/${f}.png`, 422, 'media_invalid'])
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n')[0]
  for (const [p, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(b64(p))] } })
    t.equal(res.statusCode, status, p)
    t.equal(res.json().error.code, code, `${p}: ${res.json().error.message}`)
    t.notOk(res.body.includes(passwd.slice(0, 12)), `${p}: no local file content in the answer`)
  }
  t.equal(engine.visionRuns.length, 0)
  t.equal(engine.rowsRun.length, 0)
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'still up')
})

t.test('media limits: bytes per file, files per request, base64 validity', async (t) => {
  const { app } = await buildMediaApp({ MEDIA_MAX_FILE_BYTES: '100000', MEDIA_MAX_FILES: '2' })
  t.teardown(() => app.close())
  const big = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(webp)] } })
  t.equal(big.statusCode, 413)
  t.equal(big.json().error.code, 'payload_too_large')
  const small = b64('images/real/sharp-concert-grayscale.jpg')
  const three = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(small), imageConv(small), imageConv(small)] } })
  t.equal(three.statusCode, 413, 'three media parts in one request, limit 2')
  const bad = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv('not base64 !!')] } })
  t.equal(bad.json().error.code, 'invalid_request')
  const url = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: [{ type: 'image', url: 'https://example.com/x.png' }] }, { role: 'assistant', content: 'a' }] }] } })
  t.equal(url.statusCode, 403)
  t.equal(url.json().error.code, 'url_not_allowed', 'remote URLs are off by default')
  const models = (await app.inject({ url: '/v1/models' })).json()
  t.equal(models.limits.media.max_file_bytes, 100000, 'limits reported in /v1/models')
  t.equal(models.limits.media.max_files_per_request, 2)
  t.equal(models.limits.media.remote_urls.enabled, false)
})

t.test('every real image fixture scores', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const names = readdirSync(join(fixtures, 'images/real')).filter((n) => !n.endsWith('.json'))
  t.ok(names.length >= 10)
  // the same conversation without the image: each image must add its tokens and change the score
  const textOnly = (await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }] }, { role: 'assistant', content: 'a painting' }] }] } })).json()
  for (const n of names) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(b64(`images/real/${n}`))] } })
    t.equal(res.statusCode, 200, `${n}: ${res.body.slice(0, 200)}`)
    const runs = engine.visionRuns.length
    const last = engine.visionRuns[runs - 1]!
    t.equal(res.json().results[0].tokens - textOnly.results[0].tokens, imageTokenCount(last.height / 112, last.width / 112, 112, 14), `${n}: its image tokens are in the row`)
    t.not(res.json().scores[0], textOnly.scores[0], `${n}: the image reaches the score`)
  }
  // 600x450 after EXIF orientation (stored 450x600): landscape, hd_num 4 -> 2 columns: 224 wide, int(224/(600/450)) = 168 -> 224 tall
  const landscape = engine.visionRuns[names.indexOf('sharp-Landscape_6-exif-orientation6.jpg')]!
  t.same([landscape.height, landscape.width], [224, 224])
  // 400x267 grayscale: 2 columns (hd 4), 224 x int(224/(400/267)) = 149 -> padded to 224
  const concert = engine.visionRuns[names.indexOf('sharp-concert-grayscale.jpg')]!
  t.same([concert.height, concert.width], [224, 224])
})

t.test('a cancelled request kills its decoder; another request waiting for the same video still gets it', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const engine = new VisionCountingEngine()
  const resolver = new IxcMediaResolver(defaultMediaConfig({ workers: 0 }))
  const model = mediaModel()
  const part = { type: 'video' as const, data: b64('video/real/fuzzcorpus-h264-aac-publicdomain-sample.mp4') }
  const a = new AbortController()
  const b = new AbortController()
  const ctx = (signal: AbortSignal) => ({ model, engine, signal, scope: mediaScopeOf({}) })
  const first = resolver.resolve([part], ctx(a.signal))
  await new Promise((r) => setTimeout(r, 20))
  const second = resolver.resolve([part], ctx(b.signal))
  await new Promise((r) => setTimeout(r, 100))
  a.abort(new Error('client A went away'))
  await t.rejects(first, { message: 'client A went away' })
  const blocks = await second
  t.equal(blocks[0]!.tokens, (6 + 1) * 16 + 1 + 7 * 4, 'B got its video block')
  t.equal(engine.visionRuns.length, 1)
  t.equal(liveFfmpegChildren(), 0)
})

t.test('a vision graph that returns the wrong token count is an engine error (500), never a silent misalignment', async (t) => {
  const { app, engine } = await buildMediaApp()
  t.teardown(() => app.close())
  const runVision = engine.runVision.bind(engine)
  engine.runVision = async (key, image, h, w) => {
    const out = await runVision(key, image, h, w)
    const tokens = out.tokens - 1 // one token short of what the HD grid needs
    return { ...out, tokens, embeds: out.embeds.subarray(0, tokens * out.dim) }
  }
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(webp)] } })
  t.equal(res.statusCode, 500)
  t.equal(res.json().error.code, 'engine_error')
  t.equal(engine.rowsRun.length, 0, 'nothing was scored')
})

t.test('the tensor buffer the engine hands back carries the next image of that shape (MEDIA_TENSOR_POOL_BYTES)', async (t) => {
  // hands the input back after the run, as the engine worker does (tensor-pool.ts)
  class HandingBack extends VisionCountingEngine {
    inputs: Float32Array[] = []
    override async encodeImage(key: string, handle: string, lease: number, image: Float32Array, h: number, w: number) {
      this.inputs.push(image)
      return { ...(await super.encodeImage(key, handle, lease, image, h, w)), image }
    }
  }
  const runs: number[][] = []
  for (const [env, reused] of [[{}, true], [{ MEDIA_TENSOR_POOL_BYTES: '0' }, false]] as const) {
    const engine = new HandingBack()
    const { app } = await buildMediaApp(env, engine)
    t.teardown(() => app.close())
    const scores = []
    for (const f of ['imagereward-1.webp', 'imagereward-2.webp', 'sharp-concert-grayscale.jpg', 'imagereward-1.webp']) {
      const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [imageConv(b64(`images/real/${f}`))] } })
      t.equal(res.statusCode, 200, res.body.slice(0, 200))
      scores.push(res.json().results[0].score)
    }
    const [a, b, c] = engine.inputs
    t.equal(engine.inputs.length, 3, 'three distinct images, the fourth a cache hit')
    // at tile 112 and hd_num 4 all three are 224x224 tensors; the grayscale one (400x267) is padded at the bottom
    t.equal(a === b && b === c, reused, `three images of one tensor shape: ${reused ? 'one buffer' : 'fresh ones'}`)
    t.not(engine.visionRuns[1]!.sum, engine.visionRuns[0]!.sum, 'the second image, not the first one\'s values left in the buffer')
    runs.push(scores)
  }
  t.same(runs[0], runs[1], 'the same scores with the pool and without')
})
