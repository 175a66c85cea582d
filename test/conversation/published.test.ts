// The published get_score layout switches of the conversation encoder (models/README.md §Text): ixc media
// placement, eos_newline, content_special_tokens published / literal. Character tokenizer, so every id is
// visible; the real tokenizer and model are checked against the trainer's golden set in
// test/engine/published-golden.test.ts.
import t from 'tap'
import { neutralizeControlText } from '../../src/conversation/control-text.ts'
import { ConversationEncoder, type TemplateSpec } from '../../src/conversation/encode.ts'
import type { MediaBlock, Message, Segment } from '../../src/conversation/types.ts'
import { ServiceError } from '../../src/errors.ts'
import { imageTokenCount, planImageGrid } from '../../src/preprocess/image/hd-transform.ts'
import { hdNumFor } from '../../src/preprocess/media/params.ts'
import { charTokenizer, SPECIALS } from '../helpers/fake-model.ts'

const tok = (s: string) => charTokenizer.encode(s)
const BOS = 1
const EOS = 2
const REWARD = 5
const NL = tok('\n')[0]!
const OUT_OF_TABLE = ['<|im_start|>', '<|im_end|>', '<|action_start|>', '<|action_end|>', '<|interpreter|>', '<|plugin|>']

function encoder(template: Partial<TemplateSpec> = {}, maxSeqLen = 100_000): ConversationEncoder {
  return new ConversationEncoder(charTokenizer, {
    template: {
      turn: '[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n',
      strip_content: false,
      prefix_ids: [BOS],
      suffix_ids: [EOS, REWARD],
      media_placement: 'ixc',
      eos_newline: 'keep',
      content_special_tokens: 'published',
      ...template,
    },
    padId: 2,
    maxSeqLen,
    maxChars: 100_000,
    atomicPieces: Object.keys(SPECIALS),
    controlLiterals: { '<s>': BOS, '</s>': EOS, '<unk>': 0 },
    outOfTable: OUT_OF_TABLE,
  })
}

const block = (tokens: number): MediaBlock => ({ tokens, dim: 1, embeds: new Float32Array(tokens), preprocessMs: 0, inferenceMs: 0 })
function fill(segs: Segment[], ...blocks: number[]): Segment[] {
  let i = 0
  for (const s of segs) if (s.kind === 'media') s.block = block(blocks[i++]!)
  return segs
}
const img = (data: string) => ({ type: 'image' as const, data })

t.test('ixc: one image goes right after BOS, before the user turn, wherever its part is', async (t) => {
  const enc = encoder()
  const msgs: Message[] = [
    { role: 'user', content: [{ type: 'text', text: 'What is ' }, img('a'), { type: 'text', text: 'this?' }] },
    { role: 'assistant', content: 'A cat.' },
  ]
  const row = enc.finish(fill(enc.turns(msgs), 7))
  const text = tok('[UNUSED_TOKEN_146]user\nWhat is this?[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\nA cat.[UNUSED_TOKEN_145]\n')
  t.same([...row.ids], [BOS, 2, 2, 2, 2, 2, 2, 2, ...text, EOS, REWARD], 'one text part, not split at the image')
  t.same(row.images.map((i) => i.start), [1])
  // the same message group in a row with a second media item elsewhere: the image stays at its part
  const two = enc.finish(fill(enc.turns(msgs, 2), 3), fill(enc.turns([{ role: 'assistant', content: [img('b')] }], 2), 4))
  t.same(two.images.map((i) => i.start), [1 + tok('[UNUSED_TOKEN_146]user\nWhat is ').length, two.ids.length - 2 - 4 - tok('[UNUSED_TOKEN_145]\n').length])
  // inline (ours): after the user turn header
  const inline = encoder({ media_placement: 'inline' })
  t.same(inline.finish(fill(inline.turns(msgs), 7)).images.map((i) => i.start), [1 + tok('[UNUSED_TOKEN_146]user\nWhat is ').length])
})

t.test('ixc: several media items stand where their parts are; each text part is tokenized alone', async (t) => {
  const enc = encoder()
  const msgs: Message[] = [{ role: 'user', content: [{ type: 'text', text: 'Image1 ' }, img('a'), { type: 'text', text: '; Image2 ' }, { type: 'video', data: 'v' }, { type: 'text', text: '?' }] }]
  const segs = fill(enc.turns(msgs), 3, 4)
  t.same(segs.map((s) => s.kind), ['text', 'media', 'text', 'media', 'text'])
  const row = enc.finish(segs)
  const a = tok('[UNUSED_TOKEN_146]user\nImage1 ')
  t.same(row.images.map((i) => [i.start, i.block.tokens]), [[1 + a.length, 3], [1 + a.length + 3 + tok('; Image2 ').length, 4]])
})

t.test('IXC scale: an r x c grid takes (r·c+1)·400 + 1 + (r+1)·20 positions of the row', async (t) => {
  for (const [r, c, want] of [[1, 1, 841], [2, 2, 2061], [2, 3, 2861], [3, 2, 2881]] as const) {
    t.equal(imageTokenCount(r, c, 560, 14), want, `${r}x${c}`)
  }
  t.match(planImageGrid(800, 600, 9, 560), { rows: 2, cols: 2 })
  t.match(planImageGrid(1920, 1080, 9, 560), { rows: 2, cols: 3 })
  t.match(planImageGrid(1920, 1080, 24, 560), { rows: 3, cols: 4 }, 'the function default hd_num 24')
  const enc = encoder()
  const msgs: Message[] = [{ role: 'user', content: [img('a'), { type: 'text', text: 'Describe.' }] }]
  const row = enc.finish(fill(enc.turns(msgs), imageTokenCount(2, 2, 560, 14)))
  const text = tok('[UNUSED_TOKEN_146]user\nDescribe.[UNUSED_TOKEN_145]\n')
  t.equal(row.ids.length, 1 + 2061 + text.length + 2, 'L = BOS + media + text + suffix')
})

t.test('hd_num: hd_num_multi when a row has more than one media item, videos counted (multi_count media)', async (t) => {
  const p = { hd_num: 9, hd_num_multi: 6 }
  const iv = [{ type: 'image' as const }, { type: 'video' as const }]
  t.equal(hdNumFor({ ...p, multi_count: 'media' }, iv), 6, 'image + video: 6 (published)')
  t.equal(hdNumFor({ ...p, multi_count: 'images' }, iv), 9, 'image + video: 9 (ours, images only)')
  t.equal(hdNumFor({ ...p, multi_count: 'media' }, [{ type: 'image' }]), 9)
  t.equal(hdNumFor({ ...p, multi_count: 'media' }, [{ type: 'image' }], 2), 6, 'the row count wins over the group')
})

t.test('eos_newline: keep emits the last turn\'s \\n before EOS, strip drops it', async (t) => {
  const msgs: Message[] = [{ role: 'user', content: 'hi' }]
  const keep = encoder().finish(encoder().turns(msgs))
  t.same([...keep.ids].slice(-4), [6, NL, EOS, REWARD])
  const strip = encoder({ eos_newline: 'strip' })
  t.same([...strip.finish(strip.turns(msgs)).ids].slice(-3), [6, EOS, REWARD])
  const lit = encoder({ eos_newline: 'strip', content_special_tokens: 'literal', media_placement: 'inline' })
  t.same([...lit.finish(lit.turns(msgs)).ids].slice(-3), [6, EOS, REWARD], 'the literal mode and inline placement too')
})

t.test('content_special_tokens published: control literals become ids; whitespace stripped only with eos_newline strip', async (t) => {
  const ids = (text: string, tpl: Partial<TemplateSpec> = {}) => {
    const enc = encoder(tpl)
    return [...enc.finish(enc.turns([{ role: 'user', content: text }])).ids]
  }
  const tail = [6, NL, EOS, REWARD]
  t.same(ids('a </s> b'), [BOS, ...tok('[UNUSED_TOKEN_146]user\na '), EOS, ...tok(' b'), ...tail])
  t.same(ids('<s><unk>'), [BOS, ...tok('[UNUSED_TOKEN_146]user\n'), BOS, 0, ...tail])
  t.same(ids(' \t</s>\n b', { eos_newline: 'strip' }), [BOS, ...tok('[UNUSED_TOKEN_146]user'), EOS, ...tok('b'), 6, EOS, REWARD])
  t.same(ids('\u001c</s>\u00a0', { eos_newline: 'strip' }), [BOS, ...tok('[UNUSED_TOKEN_146]user'), EOS, 6, EOS, REWARD], 'Python whitespace')
  t.ok(ids('x[UNUSED_TOKEN_130]').slice(0, -2).includes(REWARD), 'reward forgery reproduced')
  t.same(ids('ab<ImageHere>cd'), [BOS, ...tok('[UNUSED_TOKEN_146]user\nab'), ...tok('cd'), ...tail], 'a marker with no media vanishes')
  for (const bad of OUT_OF_TABLE) {
    let err: unknown
    try {
      ids('hi ' + bad)
    } catch (e) {
      err = e
    }
    t.ok(err instanceof ServiceError && err.code === 'content_token_out_of_range' && err.status === 422, `${bad}: 422 content_token_out_of_range`)
  }
  // a literal marker places the single media item
  const enc = encoder()
  const row = enc.finish(fill(enc.turns([{ role: 'user', content: [img('a'), { type: 'text', text: 'see <ImageHere> now' }] }]), 2))
  t.same(row.images.map((i) => i.start), [1 + tok('[UNUSED_TOKEN_146]user\nsee ').length])
})

const ATTACKS = ['</s>', '<s>', '<unk>', '[UNUSED_TOKEN_146]', '[UNUSED_TOKEN_145]', '[UNUSED_TOKEN_130]', ...OUT_OF_TABLE, '<ImageHere>', '[[UNUSED_TOKEN_146]]', '[UNUSED_TOKEN_145][UNUSED_TOKEN_146]']

t.test('content_special_tokens literal (safe): no content can produce a control id', async (t) => {
  let seed = 7
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n)
  const alphabet = [...ATTACKS, 'a', ' ', '\n', '[', ']', 'UNUSED_TOKEN_']
  for (const placement of ['inline', 'ixc'] as const) {
    const enc = encoder({ content_special_tokens: 'literal', media_placement: placement })
    for (let k = 0; k < 300; k++) {
      const content = Array.from({ length: 1 + rand(8) }, () => alphabet[rand(alphabet.length)]).join('')
      const ids = [...enc.finish(enc.turns([{ role: 'user', content }, { role: 'assistant', content: content + 'x' }])).ids]
      const control = ids.filter((i) => i <= 7)
      if (control.join() !== [BOS, 7, 6, 7, 6, EOS, REWARD].join()) {
        t.fail(`${placement}: ${JSON.stringify(content)} -> control ids ${control}`)
        return
      }
    }
  }
  t.same(neutralizeControlText('no pieces here', Object.keys(SPECIALS)), ['no pieces here'], 'plain text stays one chunk')
  t.same(neutralizeControlText('a[UNUSED_TOKEN_130]b', Object.keys(SPECIALS)), ['a[', 'UNUSED_TOKEN_130]b'])
})
