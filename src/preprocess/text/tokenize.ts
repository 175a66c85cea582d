// Text -> token ids with the model's own tokenizer.json, with SentencePiece semantics (models/README.md §Text):
// no BOS/EOS added here (the template adds them as ids), user-defined pieces ([UNUSED_TOKEN_*]) are atomic,
// and control pieces (<s>, </s>, <unk>, pad) are NOT recognised inside text — a user typing "</s>" gets the
// ids of those characters, exactly as sentencepiece would, so nobody can forge the reward position.
import { readFile } from 'node:fs/promises'
import { Tokenizer } from '@huggingface/tokenizers'
import { fitsInline, INLINE_CHARS } from './inline-policy.ts'
import { TokenizerWorker } from './tokenize-pool.ts'

export interface TextTokenizer {
  encode(text: string): number[]
  /** Many texts at once, off the event loop where the tokenizer can (a worker thread); same ids as encode(). */
  encodeBatch?(texts: readonly string[]): Promise<number[][]>
  /** Strings this tokenizer matches atomically in text (its added tokens): safe mode cuts them in content. */
  readonly atomicPieces?: readonly string[]
  /** Characters in the longest ordinary vocab piece: a text of n characters gives at least n / this many ids. */
  readonly maxPieceChars?: number
}

export interface ControlIds {
  bos_id: number
  eos_id: number
  pad_id: number
  unk_id: number
}

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>
  [k: string]: unknown
}

const SPACE = '\u2581'

/** A SentencePiece-converted tokenizer (normalizer turns ' ' into U+2581, no pre-tokenizer) runs BPE over the
 *  whole text run as one word: correct, but O(n log n) per run and never cached. When no vocab piece contains a
 *  U+2581 right after another character, no merge can cross the point before a run of U+2581 that follows a
 *  non-space, so splitting there gives the same ids — and short words then hit the BPE cache. */
function wordSplitIsExact(json: TokenizerJson): boolean {
  const n = json.normalizer as { type?: string; pattern?: { String?: string }; content?: string } | null | undefined
  const model = json.model as { type?: string; vocab?: Record<string, number> } | undefined
  if (json.pre_tokenizer != null || model?.type !== 'BPE' || !model.vocab) return false
  if (!n || n.type !== 'Replace' || n.pattern?.String !== ' ' || n.content !== SPACE) return false
  return !Object.keys(model.vocab).some((piece) => new RegExp(`[^${SPACE}]${SPACE}`, 'u').test(piece))
}

/** Words one tokenizer keeps the BPE of (≈ 100 bytes each). */
const WORD_CACHE_WORDS = 1 << 15

/** The BPE cache of @huggingface/tokenizers is an LRU over a Map whose every hit deletes and re-inserts its key
 *  (the deletions pile up in V8's hash table until it is rebuilt): the hottest function of a profile, 0.15 of the
 *  0.40 ms a 235-token conversation cost the event loop. This one is bounded first in, first out — a hit is a plain
 *  Map read, a common word evicted is put back by its next miss: 20 % less CPU per conversation in a loop, 0.12–0.19
 *  ms less main-thread CPU per request (bench/README.md §Figures, session 24). */
export class WordCache<V> {
  readonly #map = new Map<string, V>()
  constructor(readonly capacity: number) {}
  get size(): number {
    return this.#map.size
  }
  get(key: string): V | undefined {
    return this.#map.get(key)
  }
  put(key: string, value: V): void {
    if (!this.#map.has(key) && this.#map.size >= this.capacity) this.#map.delete(this.#map.keys().next().value!)
    this.#map.set(key, value)
  }
  clear(): void {
    this.#map.clear()
  }
}

/** Puts a WordCache in place of the model's own BPE cache (same get/put/clear contract); null when the model has
 *  none (not BPE, or a version of the library that caches differently: then nothing changes). */
function installWordCache(tok: Tokenizer): WordCache<unknown> | null {
  const model = (tok as unknown as { model?: { cache?: { get?: unknown; put?: unknown } } }).model
  if (!model?.cache || typeof model.cache.get !== 'function' || typeof model.cache.put !== 'function') return null
  const cache = new WordCache<unknown>(WORD_CACHE_WORDS)
  model.cache = cache
  return cache
}

export class HfTextTokenizer implements TextTokenizer {
  readonly #tok: Tokenizer
  /** Whether text is split into words before BPE (see wordSplitIsExact). */
  readonly wordSplit: boolean
  /** Strings matched whole wherever they appear in text (user-defined pieces such as [UNUSED_TOKEN_146], added
   *  tokens): what the conversation encoder's literal mode keeps out of content. */
  readonly atomicPieces: readonly string[]
  readonly controlPieces: readonly string[]
  readonly maxPieceChars: number
  /** The BPE word cache in use (null: the library's own). */
  readonly wordCache: WordCache<unknown> | null
  #worker: TokenizerWorker | null = null
  readonly #inlineChars: number
  /** Where encodeBatch ran its calls (how the inline policy splits the traffic: tests and diagnostics). */
  readonly calls = { inline: 0, worker: 0 }

  constructor(json: TokenizerJson, control: ControlIds, opts: { wordSplit?: boolean; file?: string; inlineChars?: number } = {}) {
    const controlIds = new Set([control.bos_id, control.eos_id, control.pad_id, control.unk_id])
    const vocab = ((json.model as { vocab?: Record<string, number> } | undefined)?.vocab ?? {}) as Record<string, number>
    const addedContents = new Set((json.added_tokens ?? []).map((t) => t.content))
    /** the vocab pieces of the control ids (<s>, </s>, <unk>): load checks that typing them gives no control id */
    this.controlPieces = Object.entries(vocab).filter(([, id]) => controlIds.has(id)).map(([piece]) => piece)
    let longest = 1
    for (const [piece, id] of Object.entries(vocab)) if (!addedContents.has(piece) && !controlIds.has(id)) longest = Math.max(longest, [...piece].length)
    this.maxPieceChars = longest
    if (opts.file) this.#worker = new TokenizerWorker({ file: opts.file, control, wordSplit: opts.wordSplit })
    // Hugging Face tokenizers split text on every added token; SentencePiece never matches control pieces in
    // text. Dropping them from the added-token list (they stay in the model vocab) gives sentencepiece's ids.
    const added_tokens = (json.added_tokens ?? []).filter((t) => !controlIds.has(t.id))
    this.atomicPieces = added_tokens.map((t) => t.content)
    this.wordSplit = (opts.wordSplit ?? true) && wordSplitIsExact(json)
    const pre_tokenizer = this.wordSplit
      ? { type: 'Split', pattern: { Regex: `${SPACE}*[^${SPACE}]+|${SPACE}+` }, behavior: 'Isolated', invert: true }
      : json.pre_tokenizer
    this.#tok = new Tokenizer({ ...json, added_tokens, pre_tokenizer }, {})
    this.wordCache = installWordCache(this.#tok)
    this.#inlineChars = this.wordSplit ? (opts.inlineChars ?? INLINE_CHARS) : 0
  }

  /** `worker`: encodeBatch runs on a worker thread of its own (the service); off, it runs on the caller's. */
  static async fromFile(file: string, control: ControlIds, opts: { worker?: boolean; inlineChars?: number } = {}): Promise<HfTextTokenizer> {
    const json = JSON.parse(await readFile(file, 'utf8')) as TokenizerJson
    return new HfTextTokenizer(json, control, { file: opts.worker ? file : undefined, inlineChars: opts.inlineChars })
  }

  encode(text: string): number[] {
    if (text.length === 0) return []
    return this.#tok.encode(text, { add_special_tokens: false }).ids
  }

  // Tokenizing a request's text costs up to ~100 ms of CPU (4 M characters budget; long space-free runs are
  // superlinear in BPE); on the event loop that froze /healthz. The worker keeps the loop free.
  // A short request is the other way round: the worker round trip (two postMessages, a thread wake-up: ≈ 0.4 ms
  // of main-thread CPU in a profile) costs more than its BPE (≈ 0.1 ms per 1 000 characters), so texts that fit
  // TOKENIZE_INLINE_CHARS are tokenized here (inline-policy.ts; bench/README.md §Figures).
  encodeBatch(texts: readonly string[]): Promise<number[][]> {
    if (this.#worker && !fitsInline(texts, this.#inlineChars)) {
      this.calls.worker++
      return this.#worker.encode(texts)
    }
    this.calls.inline++
    return Promise.resolve(texts.map((x) => this.encode(x)))
  }
}
