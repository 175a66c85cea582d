import t from 'tap'
import type { MediaBlock, Segment } from '../../src/conversation/types.ts'
import { packRewardBatch } from '../../src/scheduler/pack.ts'
import { charTokenizer, fakeModel } from '../helpers/fake-model.ts'

const enc = fakeModel({ maxSeqLen: 64 }).encoder
const tok = (s: string) => charTokenizer.encode(s)
const block = (tokens: number, dim = 4, v = 1): MediaBlock => ({
  tokens,
  dim,
  embeds: new Float32Array(tokens * dim).fill(v),
  preprocessMs: 0,
  inferenceMs: 0,
})
const fill = (segs: Segment[], ...blocks: MediaBlock[]) => {
  let i = 0
  for (const s of segs) if (s.kind === 'media') s.block = blocks[i++]
  return segs
}

t.test('template: BOS, turns with stripped content, EOS + reward token', async (t) => {
  const row = enc.finish(enc.turns([{ role: 'user', content: '  hi \n' }, { role: 'assistant', content: 'yo' }]))
  const want = [1, ...tok('[UNUSED_TOKEN_146]user\nhi[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\nyo[UNUSED_TOKEN_145]\n'), 2, 5]
  t.same([...row.ids], want)
  t.equal(row.truncated, false)
  t.same(row.images, [])
})

t.test('parts: strip only the start of the first and the end of the last text part', async (t) => {
  const segs = enc.turns([
    { role: 'user', content: [{ type: 'text', text: ' a ' }, { type: 'text', text: ' b ' }] },
    { role: 'assistant', content: 'x' },
  ])
  const row = enc.finish(segs)
  t.same([...row.ids].slice(1, 1 + tok('[UNUSED_TOKEN_146]user\na  b[UNUSED_TOKEN_145]').length), tok('[UNUSED_TOKEN_146]user\na  b[UNUSED_TOKEN_145]'))
})

t.test('media parts are inline blocks of pad ids; text resumes after them', async (t) => {
  const segs = fill(
    enc.turns([
      { role: 'user', content: [{ type: 'image', data: 'x' }, { type: 'text', text: ' what is it? ' }] },
      { role: 'assistant', content: 'a cat' },
    ]),
    block(5),
  )
  t.same(segs.map((s) => s.kind), ['text', 'media', 'text'])
  const row = enc.finish(segs)
  const head = tok('[UNUSED_TOKEN_146]user\n')
  t.same(row.images.map((i) => i.start), [1 + head.length])
  t.same([...row.ids.slice(1 + head.length, 1 + head.length + 5)], [2, 2, 2, 2, 2])
  t.same([...row.ids.slice(1 + head.length + 5, 1 + head.length + 5 + 4)], tok('what'))
})

t.test('left truncation keeps BOS and the tail; media never truncated', async (t) => {
  const long = enc.turns([{ role: 'user', content: 'p'.repeat(200) }, { role: 'assistant', content: 'the end' }])
  const row = enc.finish(long)
  t.equal(row.ids.length, 64)
  t.equal(row.truncated, true)
  t.equal(row.ids[0], 1)
  const full = enc.finish.call(fakeModel({ maxSeqLen: 4096 }).encoder, long)
  t.same([...row.ids.slice(1)], [...full.ids.slice(full.ids.length - 63)], 'tail kept exactly')
  const withImage = fill(enc.turns([{ role: 'user', content: [{ type: 'image', data: 'x' }, { type: 'text', text: 'q' }] }, { role: 'assistant', content: 'a' }]), block(60))
  t.throws(() => enc.finish(withImage), { code: 'input_too_long' })
})

t.test('character cap refuses before tokenizing', async (t) => {
  const small = fakeModel().encoder
  t.throws(() => small.turns([{ role: 'user', content: 'x'.repeat(100_001) }, { role: 'assistant', content: 'a' }]), { code: 'input_too_long' })
})

t.test('packRewardBatch: right padding, masks, readout, image rows', async (t) => {
  const a = enc.finish(enc.turns([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }]))
  const b = enc.finish(
    fill(enc.turns([{ role: 'user', content: [{ type: 'image', data: 'x' }] }, { role: 'assistant', content: 'ok' }]), block(3, 4, 7)),
  )
  const f = packRewardBatch([a, b], 2, 4)
  const T = Math.max(a.ids.length, b.ids.length)
  t.same([f.rows, f.seqLen, f.embedRows, f.dim], [2, T, 3, 4])
  t.equal(f.readoutIndex[0], BigInt(a.ids.length - 1))
  t.equal(f.readoutIndex[1], BigInt(b.ids.length - 1))
  for (let j = 0; j < T; j++) {
    t.equal(f.attentionMask[j], j < a.ids.length ? 1n : 0n)
    t.equal(f.inputIds[j], j < a.ids.length ? BigInt(a.ids[j]!) : 2n)
  }
  const start = b.images[0]!.start
  for (let k = 0; k < 3; k++) {
    t.equal(f.imMask[T + start + k], 1)
    t.equal(f.imagePositions[T + start + k], BigInt(k))
  }
  t.equal(f.imMask.reduce((s, x) => s + x, 0), 3)
  t.same([...f.imageEmbeds.slice(0, 4)], [7, 7, 7, 7])
  const textOnly = packRewardBatch([a], 2, 4)
  t.same([textOnly.embedRows, textOnly.imageEmbeds.length], [1, 4], 'a text-only batch passes one zero row')
})
