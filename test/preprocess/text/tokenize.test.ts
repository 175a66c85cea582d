// SentencePiece semantics on top of a Hugging Face tokenizer.json (contract §Text, rule 4), with a tiny
// hand-written character-level BPE so the rules are visible. The real tokenizer is checked against the
// trainer's golden.json in test/engine/real-model.test.ts.
import t from 'tap'
import { HfTextTokenizer } from '../../../src/preprocess/text/tokenize.ts'

const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2, '[UNUSED_TOKEN_130]': 5, '[UNUSED_TOKEN_145]': 6, '[UNUSED_TOKEN_146]': 7 }
const chars = [...'abcdefghijklmnopqrstuvwxyz<>/[]_0123456789 \n']
chars.forEach((c, i) => (vocab[c] = 10 + i))
const added = (content: string, id: number, special: boolean) => ({ id, content, special, normalized: false, lstrip: false, rstrip: false, single_word: false })
const json = {
  version: '1.0',
  added_tokens: [added('<unk>', 0, true), added('<s>', 1, true), added('</s>', 2, true), added('[UNUSED_TOKEN_130]', 5, false), added('[UNUSED_TOKEN_145]', 6, false), added('[UNUSED_TOKEN_146]', 7, false)],
  normalizer: null,
  pre_tokenizer: null,
  post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
  decoder: null,
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: false, vocab, merges: [] },
}
const tok = new HfTextTokenizer(json, { bos_id: 1, eos_id: 2, pad_id: 2, unk_id: 0 })
const ids = (s: string) => [...s].map((c) => vocab[c])

t.test('no BOS/EOS added by the tokenizer', async (t) => {
  t.same(tok.encode('ab'), ids('ab'))
  t.same(tok.encode(''), [])
})

t.test('user-defined pieces are atomic', async (t) => {
  t.same(tok.encode('[UNUSED_TOKEN_146]user\nhi[UNUSED_TOKEN_145]\n'), [7, ...ids('user\nhi'), 6, ...ids('\n')])
})

t.test('control pieces typed in text are plain characters (nobody forges EOS or BOS)', async (t) => {
  t.same(tok.encode('a</s>b<s>'), ids('a</s>b<s>'))
  t.notOk(tok.encode('x </s> <unk> <s>').some((i) => i === 0 || i === 1 || i === 2))
})
