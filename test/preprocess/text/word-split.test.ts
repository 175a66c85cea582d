// The word-split fast path must give exactly the ids of BPE over the whole run (which the trainer checks
// against sentencepiece), on real text with the real model's tokenizer.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { HfTextTokenizer } from '../../../src/preprocess/text/tokenize.ts'
import { loadConversations } from '../../../bench/dataset.ts'
import { REPO_ROOT, realModelDir } from '../../helpers/real-model.ts'

const { dir } = await realModelDir()
const manifest = JSON.parse(readFileSync(path.join(dir, 'model.json'), 'utf8'))
const json = JSON.parse(readFileSync(path.join(dir, manifest.tokenizer.file), 'utf8'))
const fast = new HfTextTokenizer(json, manifest.tokenizer)
const exact = new HfTextTokenizer(json, manifest.tokenizer, { wordSplit: false })

t.test('word split is enabled for this tokenizer and gives identical ids', async (t) => {
  t.equal(fast.wordSplit, true)
  t.equal(exact.wordSplit, false)
  const texts = loadConversations(REPO_ROOT, 600).flatMap((c) => c.map((m) => m.content as string))
  texts.push('  lead', 'trail  ', 'a  b   c\t\td\n\n  e', '   ', ' ', '12345 678', 'héllo wörld 你好 🙂🙂', ' </s> <s>x')
  let diffs = 0
  for (const text of texts) if (fast.encode(text).join() !== exact.encode(text).join()) diffs++
  t.equal(diffs, 0, `${texts.length} texts`)
})

t.test('not enabled when a piece has a space after another character', async (t) => {
  const vocab = { ...json.model.vocab, ['a\u2581b']: 999_999 }
  const tok = new HfTextTokenizer({ ...json, model: { ...json.model, vocab } }, manifest.tokenizer)
  t.equal(tok.wordSplit, false)
})
