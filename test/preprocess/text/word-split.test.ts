// The word-split fast path must give exactly the ids of BPE over the whole run (which the trainer checks
// against sentencepiece), on real text with the real model's tokenizer.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { HfTextTokenizer, WordCache } from '../../../src/preprocess/text/tokenize.ts'
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

t.test('the BPE word cache is first in, first out: a hit does not write (the library LRU re-inserted on every hit)', async (t) => {
  t.ok(fast.wordCache, 'installed in place of the library cache')
  const before = fast.wordCache!.size
  fast.encode('zebra quartz')
  t.ok(fast.wordCache!.size > before, 'words of encoded text are cached there')
  const c = new WordCache<number>(2)
  c.put('a', 1)
  c.put('b', 2)
  t.equal(c.get('a'), 1)
  c.put('c', 3) // evicts the oldest insertion, 'a', although it was read last (an LRU would evict 'b')
  t.same([c.get('a'), c.get('b'), c.get('c'), c.size], [undefined, 2, 3, 2])
  c.put('b', 20) // an update does not evict
  t.same([c.get('b'), c.get('c'), c.size], [20, 3, 2])
})
