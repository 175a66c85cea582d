// Short requests are tokenized on the event loop, long ones (characters outside ASCII counting 4) on the
// tokenizer's worker thread (TOKENIZE_INLINE_CHARS): the worker round trip costs more than a short text's BPE,
// while a long text on the loop would freeze /healthz (test/http/event-loop.test.ts holds that side with the
// largest allowed requests). Both paths give the same ids.
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../../src/app.ts'
import { loadConfig } from '../../../src/config.ts'
import { readVersion, type loadVersion } from '../../../src/models/load.ts'
import { fitsInline, INLINE_CHARS, NON_ASCII_WEIGHT } from '../../../src/preprocess/text/inline-policy.ts'
import { HfTextTokenizer } from '../../../src/preprocess/text/tokenize.ts'
import { testConfig } from '../../helpers/build-app.ts'
import { FakeEngine } from '../../helpers/fake-engine.ts'
import { fakeModel } from '../../helpers/fake-model.ts'
import { MODELS_DIR, realModelDir } from '../../helpers/real-model.ts'

const words = (n: number) => Array.from({ length: n }, (_, i) => ['reward', 'model', 'scores', 'the', 'answer'][i % 5]).join(' ')

t.test('fitsInline: total characters, those outside ASCII weighted', async (t) => {
  const cases: Array<[string, string[], number, boolean]> = [
    ['empty request', [], 2048, true],
    ['at the limit', ['a '.repeat(1024)], 2048, true],
    ['one past the limit', ['a '.repeat(1024) + 'b'], 2048, false],
    ['the limit counts all texts together', ['a '.repeat(600), 'b '.repeat(600)], 2048, false],
    ['limit 0: nothing inline but empty', ['a'], 0, false],
    ['CJK at the weighted limit', ['的'.repeat(2048 / NON_ASCII_WEIGHT)], 2048, true],
    ['one CJK character past it', ['的'.repeat(2048 / NON_ASCII_WEIGHT) + '的'], 2048, false],
    ['the weight applies across texts', ['a'.repeat(2044), 'é'], 2048, true],
    ['... and one more ASCII character tips it', ['a'.repeat(2045), 'é'], 2048, false],
    ['a surrogate pair counts as two non-ASCII units', ['😀'.repeat(256)], 2048, true],
    ['... 257 of them do not fit', ['😀'.repeat(257)], 2048, false],
  ]
  for (const [name, texts, limit, want] of cases) t.equal(fitsInline(texts, limit), want, name)
})

t.test('the real tokenizer: short texts inline, long ones on the worker, the same ids both ways', async (t) => {
  const entry = await realModelDir()
  const manifest = (await import(path.join(entry.dir, 'model.json'), { with: { type: 'json' } })).default as { tokenizer: { file: string; bos_id: number; eos_id: number; pad_id: number; unk_id: number } }
  const file = path.join(entry.dir, manifest.tokenizer.file)
  const inline = await HfTextTokenizer.fromFile(file, manifest.tokenizer, { worker: true })
  const worker = await HfTextTokenizer.fromFile(file, manifest.tokenizer, { worker: true, inlineChars: 0 })
  t.ok(inline.wordSplit, 'the default model splits words exactly (inline needs it)')

  const short = [words(40), 'What is 7 * 8?', '']
  t.same(await inline.encodeBatch(short), await worker.encodeBatch(short), 'same ids')
  t.same(inline.calls, { inline: 1, worker: 0 }, 'a short request stays on the loop')
  t.same(worker.calls, { inline: 0, worker: 1 }, 'inlineChars 0: always the worker')

  const long = [words(400)] // ~2 800 characters
  t.ok(long[0]!.length > INLINE_CHARS)
  t.same(await inline.encodeBatch(long), await worker.encodeBatch(long), 'same ids for a long text')
  t.same(inline.calls, { inline: 1, worker: 1 }, 'a long request goes to the worker')

  const cjk = ['的'.repeat(600)] // 600 characters, 2 400 by weight
  t.same(await inline.encodeBatch(cjk), await worker.encodeBatch(cjk), 'same ids for non-ASCII text')
  t.same(inline.calls, { inline: 1, worker: 2 }, 'non-ASCII text counts more: 600 CJK characters go to the worker')
})

t.test('TOKENIZE_INLINE_CHARS reaches the loaded model\'s tokenizer', async (t) => {
  t.equal(loadConfig({}).tokenizeInlineChars, INLINE_CHARS)
  t.equal(loadConfig({ TOKENIZE_INLINE_CHARS: '0' }).tokenizeInlineChars, 0)
  t.throws(() => loadConfig({ TOKENIZE_INLINE_CHARS: '-1' }))
  const made: HfTextTokenizer[] = []
  const fromFile = HfTextTokenizer.fromFile
  HfTextTokenizer.fromFile = async (...args) => {
    const tok = await fromFile.apply(HfTextTokenizer, args)
    made.push(tok)
    return tok
  }
  t.teardown(() => void (HfTextTokenizer.fromFile = fromFile))
  const entry = await realModelDir()
  const msgs = [{ role: 'user' as const, content: 'What is 7 * 8?' }, { role: 'assistant' as const, content: '56' }]
  for (const [limit, want] of [[0, { inline: 0, worker: 1 }], [undefined, { inline: 1, worker: 0 }]] as const) {
    const { encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: 400_000, tokenizeInlineChars: limit })
    await encoder.turnsBatch([msgs])
    t.same(made.at(-1)!.calls, want, `tokenizeInlineChars ${limit}`)
  }
})

t.test('the app hands TOKENIZE_INLINE_CHARS to the model loader', async (t) => {
  const seen: Array<number | undefined> = []
  const load: typeof loadVersion = async (entry, opts) => {
    seen.push(opts.tokenizeInlineChars)
    return fakeModel({ name: entry.name, version: entry.version })
  }
  const app = buildApp(testConfig({ MODELS_DIR, TOKENIZE_INLINE_CHARS: '0', MODEL_POLL_INTERVAL_MS: '0' }), { engine: new FakeEngine(), loadModelVersion: load })
  t.teardown(() => app.close())
  await app.ready()
  t.ok(seen.length > 0, 'the start-up load ran')
  t.same([...new Set(seen)], [0])
})
