// Parity with the trainer's Python mirror of the published get_score pipeline (issue 11), on a tiny model the
// trainer exported with `--pipeline ixc` (test/fixtures/models/ixc-published-tiny/1: media_placement ixc, no
// content stripping, eos_newline keep, content_special_tokens published, image decode published, hd_num 9 / 6
// counting every media item). golden.json holds images at three aspect ratios (portrait included), an
// EXIF-rotated JPEG, an RGBA PNG, a 16-bit grey PNG, two images, a literal <ImageHere>, every special token in
// user text, an empty system prompt, multi-turn, unstripped whitespace and a truncated text.
//   token ids: equal exactly; pixel tensors: the 8-bit canvas equal byte for byte (its sha256; our PIL-bilinear
//   port and PIL's resampler agree exactly on these cases, so no level of tolerance is used); scores through real
//   HTTP and the real engine: within 1e-4; the out-of-table tokens: 422 content_token_out_of_range.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import type { MediaBlock, MediaPart, Message, Segment } from '../../src/conversation/types.ts'
import { imageTransform } from '../../src/preprocess/image/hd-transform.ts'
import { decodeImage } from '../../src/preprocess/image/sharp.ts'
import { hdNumFor, mediaParamsOf } from '../../src/preprocess/media/params.ts'
import { sniffMedia } from '../../src/preprocess/media/sniff.ts'
import { testConfig } from '../helpers/build-app.ts'
import { REPO_ROOT } from '../helpers/real-model.ts'

const MODELS_DIR = path.join(REPO_ROOT, 'test', 'fixtures', 'models')
const NAME = 'ixc-published-tiny'
const DIR = path.join(MODELS_DIR, NAME, '1')
const SCORE_TOL = 1e-4

interface GoldenTensor { shape: number[]; u8_sha256: string; sample: Array<[number, number, number, number, number]> }
interface GoldenCase {
  id: string
  kind: 'text' | 'image' | 'error'
  messages: Message[]
  input_ids: number[]
  media_tokens: number[]
  truncated: boolean
  score: number
  image_tensors?: GoldenTensor[]
  error?: string
}
const golden = JSON.parse(readFileSync(path.join(DIR, 'golden.json'), 'utf8')) as { cases: GoldenCase[] }
const scored = golden.cases.filter((c) => c.kind !== 'error')
const refused = golden.cases.filter((c) => c.kind === 'error')

const app = buildApp(testConfig({ MODELS_DIR }))
await app.ready()
t.teardown(() => app.close())
const model = app.models.resolve(NAME)
const params = mediaParamsOf(model.manifest)

const mediaParts = (messages: Message[]): MediaPart[] =>
  messages.flatMap((m) => (typeof m.content === 'string' ? [] : m.content.filter((p): p is MediaPart => p.type !== 'text')))

t.test('the fixture declares the published pipeline', async (t) => {
  t.match(model.manifest.template, { media_placement: 'ixc', strip_content: false, eos_newline: 'keep', content_special_tokens: 'published' })
  t.match(params.image, { decode: 'published', multi_count: 'media', hd_num: 9, hd_num_multi: 6 })
  t.ok(scored.length >= 20 && refused.length === 6, `${scored.length} scored cases, ${refused.length} refusals`)
})

t.test('token ids equal the trainer\'s exactly', async (t) => {
  for (const c of scored) {
    const n = mediaParts(c.messages).length
    const segs: Segment[] = model.encoder.turns(c.messages, n)
    let k = 0
    for (const s of segs) {
      if (s.kind !== 'media') continue
      const tokens = c.media_tokens[k++]!
      s.block = { tokens, dim: 1, embeds: new Float32Array(tokens), preprocessMs: 0, inferenceMs: 0 } satisfies MediaBlock
    }
    t.equal(k, c.media_tokens.length, `${c.id}: media items`)
    const row = model.encoder.finish(segs)
    t.same([...row.ids], c.input_ids, `${c.id}: input_ids`)
    t.equal(row.truncated, c.truncated, `${c.id}: truncated`)
  }
})

t.test('pixel tensors: the 8-bit canvas equals the trainer\'s byte for byte', async (t) => {
  const { mean, std } = params.image
  for (const c of scored.filter((c) => c.image_tensors)) {
    const parts = mediaParts(c.messages)
    const hdNum = hdNumFor(params.image, parts)
    for (const [i, part] of parts.entries()) {
      const want = c.image_tensors![i]!
      const bytes = new Uint8Array(Buffer.from(part.data!, 'base64'))
      const s = sniffMedia(bytes)! as { kind: 'image'; format: 'png' | 'jpeg' }
      const rgb = await decodeImage(bytes, s.format, { maxPixels: 36e6, timeoutSeconds: 10 }, params.image.decode)
      const got = imageTransform(rgb, params.image, hdNum)
      t.same([1, 3, got.height, got.width], want.shape, `${c.id}[${i}] shape`)
      t.equal(got.tokens, c.media_tokens[i], `${c.id}[${i}] T_img`)
      // back to the 8-bit HWC canvas (exact: the normalisation is invertible to far below half a level)
      const plane = got.width * got.height
      const u8 = new Uint8Array(plane * 3)
      for (let ch = 0; ch < 3; ch++) {
        for (let p = 0; p < plane; p++) u8[p * 3 + ch] = Math.round((got.data[ch * plane + p]! * std[ch]! + mean[ch]!) * 255)
      }
      t.equal(createHash('sha256').update(u8).digest('hex'), want.u8_sha256, `${c.id}[${i}] canvas sha256`)
      const worst = Math.max(...want.sample.map(([, ch, y, x, v]) => Math.abs(got.data[(ch * got.height + y) * got.width + x]! - v)))
      t.ok(worst <= 1e-5, `${c.id}[${i}] samples max |diff| ${worst.toExponential(2)}`)
    }
  }
})

t.test('scores through HTTP and the real engine within 1e-4; out-of-table tokens are a 422', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { model: NAME, items: scored.map((c) => ({ messages: c.messages })) } })
  t.equal(res.statusCode, 200, res.body.slice(0, 300))
  const body = res.json()
  scored.forEach((c, i) => {
    const d = Math.abs(body.scores[i] - c.score)
    t.ok(d <= SCORE_TOL, `${c.id}: |${body.scores[i]} - ${c.score}| = ${d.toExponential(2)}`)
    t.equal(body.results[i].truncated, c.truncated, `${c.id}: truncated reported`)
  })
  for (const c of refused) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', payload: { model: NAME, items: [{ messages: c.messages }] } })
    t.equal(r.statusCode, 422, c.id)
    t.equal(r.json().error.code, c.error, c.id)
  }
})
