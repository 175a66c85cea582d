// Conversation -> one reward.onnx row, following models/README.md §Text exactly: prefix ids (BOS), one
// rendered turn per message, suffix ids (EOS, reward token), left truncation of text only. Template, ids and
// limits come from the manifest, never from code constants.
//
// Turns are tokenized one text run at a time. That equals tokenizing the whole rendered conversation because
// every run boundary is an atomic piece (turn markers) or a media block, and the tokenizer adds no dummy
// prefix; it lets /v1/rank tokenize a shared prompt once and lets media resolve in place. The published
// apply_chat_template also tokenizes each text part between media on its own, so the same holds there.
// Rendering (strings) and tokenizing (ids) are separate steps so that turnsBatch can tokenize a whole request's
// texts in one call on the tokenizer's worker thread.
//
// Manifest switches (models/README.md §Text has the published behaviour next to each):
// - media_placement: `inline` (ours: media where its part is) or `ixc` (the published layout: one media item goes
//   right after BOS, before `[UNUSED_TOKEN_146]user\n…`; with several, each part stands where an `<ImageHere>`
//   marker would be).
// - eos_newline: whether the `\n` of the last turn stays before EOS.
// - content_special_tokens: `literal` (safe mode, the default: no content can produce a control id, see
//   control-text.ts) or `published` (the published tokenizer's behaviour: fidelity work only, unsafe for RL).
import { ServiceError } from '../errors.ts'
import type { TextTokenizer } from '../preprocess/text/tokenize.ts'
import { neutralizeControlText } from './control-text.ts'
import type { EncodedItem, MediaBlock, MediaPart, Message, Segment } from './types.ts'

/** Ids of margin when cutting a long text's head (see keepChars). */
const CUT_MARGIN_IDS = 64

/** The last `keep` characters of `text`, starting after a space when one is near the cut (BPE words then split
 *  exactly as in the whole text), never inside a surrogate pair. */
function tailOf(text: string, keep: number): string {
  if (text.length <= keep) return text
  let from = text.length - keep
  const space = text.indexOf(' ', from)
  if (space >= 0 && space - from < keep / 8) from = space
  const c = text.charCodeAt(from)
  if (c >= 0xdc00 && c <= 0xdfff) from++
  return text.slice(from)
}

export interface TemplateSpec {
  turn: string
  strip_content: boolean
  prefix_ids: number[]
  suffix_ids: number[]
  media_placement?: 'inline' | 'ixc'
  eos_newline?: 'keep' | 'strip'
  content_special_tokens?: 'literal' | 'published'
}

export interface EncoderSpec {
  template: TemplateSpec
  padId: number
  maxSeqLen: number
  /** Hard cap on characters per conversation, checked before tokenizing. */
  maxChars: number
  /** Strings the tokenizer turns into one id wherever they appear (its user-defined pieces / added tokens). In
   *  the literal mode content never keeps one whole. Default: the tokenizer's own `atomicPieces`. */
  atomicPieces?: readonly string[]
  /** content_special_tokens = published: control pieces recognised in content, string -> id. */
  controlLiterals?: Readonly<Record<string, number>>
  /** content_special_tokens = published: strings whose id lies past the embedding table (422). */
  outOfTable?: readonly string[]
  /** Rows of the embedding table; an id at or past it is refused (published mode). */
  vocabSize?: number
}

/** The published media marker (apply_chat_template splits the prompt on it). */
export const MEDIA_MARKER = '<ImageHere>'

// Python's str.strip() whitespace (str.isspace), which the published tokenizer's stripping uses; JS \s differs
// (it has U+FEFF, lacks U+001C–U+001F and U+0085).
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const PY_LSTRIP = new RegExp(`^[${PY_WS}]+`)
const PY_RSTRIP = new RegExp(`[${PY_WS}]+$`)

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// A rendered text run: strings tokenized one by one and concatenated (a safe-mode cut starts a new one), the
// published mode's ids that stand for a control literal, and its `<ImageHere>` markers.
type RunItem = { s: string } | { id: number } | { marker: true }
type Run = RunItem[] | { kind: 'media'; part: MediaPart; hoisted?: boolean }

export class ConversationEncoder {
  readonly #tok: TextTokenizer
  readonly #spec: EncoderSpec
  readonly #head: string
  readonly #tail: string
  /** The atomic pieces the literal mode cuts in content (one-character pieces forge nothing). */
  readonly #controls: readonly string[]
  readonly #placement: 'inline' | 'ixc'
  readonly #published: boolean
  /** ids of the whitespace that ends the turn template ("\n"), dropped before EOS when eos_newline = strip. */
  readonly #tailWsIds: number[]
  readonly #splitRe: RegExp | null
  readonly #outOfTable: ReadonlySet<string>
  /** Characters one id can stand for at most (see keepChars). */
  readonly #pieceChars: number

  constructor(tokenizer: TextTokenizer, spec: EncoderSpec) {
    this.#tok = tokenizer
    this.#spec = spec
    this.#controls = (spec.atomicPieces ?? tokenizer.atomicPieces ?? []).filter((p) => [...p].length > 1)
    const at = spec.template.turn.indexOf('{content}')
    this.#head = spec.template.turn.slice(0, at)
    this.#tail = spec.template.turn.slice(at + '{content}'.length)
    this.#placement = spec.template.media_placement ?? 'inline'
    this.#published = spec.template.content_special_tokens === 'published'
    const ws = PY_RSTRIP.exec(this.#tail)?.[0] ?? ''
    this.#tailWsIds = spec.template.eos_newline === 'strip' && ws ? tokenizer.encode(ws) : []
    this.#outOfTable = new Set(spec.outOfTable ?? [])
    const literals = [...Object.keys(spec.controlLiterals ?? {}), ...this.#outOfTable]
    if (this.#placement === 'ixc') literals.push(MEDIA_MARKER)
    // longest first: the published tokenizer's trie matches the longest special token at a position
    literals.sort((a, b) => b.length - a.length)
    this.#splitRe = this.#published && literals.length > 0 ? new RegExp(`(${literals.map(escapeRe).join('|')})`) : null
    // in the published mode an atomic piece or a control literal in content is one id for all its characters
    let pieceChars = tokenizer.maxPieceChars ?? 16
    if (this.#published) for (const p of [...this.#controls, ...literals]) pieceChars = Math.max(pieceChars, p.length)
    this.#pieceChars = pieceChars
  }

  get maxSeqLen(): number {
    return this.#spec.maxSeqLen
  }

  /** Renders and tokenizes messages into segments (no prefix/suffix) on the calling thread; media parts become
   *  empty media segments that the media resolver fills in. `rowMedia` is the number of media items in the
   *  whole row this group will be part of (default: its own): with the ixc placement a single media item does
   *  not split the text (it is hoisted in front by finish()). */
  turns(messages: readonly Message[], rowMedia?: number): Segment[] {
    const plan = this.#render(messages, rowMedia)
    return this.#assemble(plan, (texts) => texts.map((x) => this.#tok.encode(x)))
  }

  /** turns() for many message groups with one tokenizer call (a worker thread for the real tokenizer);
   *  `rowMedia[i]` as turns()' rowMedia for group i. */
  async turnsBatch(groups: ReadonlyArray<readonly Message[]>, rowMedia: ReadonlyArray<number | undefined> = []): Promise<Segment[][]> {
    const plans = groups.map((g, i) => this.#render(g, rowMedia[i]))
    const texts = plans.flatMap((p) => p.flatMap((r) => (Array.isArray(r) ? r.flatMap((x) => ('s' in x ? [x.s] : [])) : [])))
    const ids = this.#tok.encodeBatch ? await this.#tok.encodeBatch(texts) : texts.map((x) => this.#tok.encode(x))
    let at = 0
    const take = (n: readonly string[]) => ids.slice(at, (at += n.length))
    return plans.map((p) => this.#assemble(p, take))
  }

  /** Whether any text of `messages` contains an atomic piece the literal mode cuts (so its ids differ from the
   *  published pipeline's on purpose). Always false in the published mode. */
  hasControlText(messages: readonly Message[]): boolean {
    if (this.#published || this.#controls.length === 0) return false
    const texts = messages.flatMap((m) => (typeof m.content === 'string' ? [m.content] : m.content.flatMap((p) => (p.type === 'text' ? [p.text] : []))))
    return texts.some((x) => this.#controls.some((c) => x.includes(c)))
  }

  /** Characters of one text part that can still reach the row: left truncation keeps max_seq_len ids, and n
   *  characters give at least n / (characters per id) ids, so a longer text's head is cut before tokenizing
   *  (with a margin of ids, dropped by the truncation anyway, for merges that would have crossed the cut). */
  get keepChars(): number {
    return (this.#spec.maxSeqLen + CUT_MARGIN_IDS) * this.#pieceChars
  }

  /** The rendered conversation as runs to tokenize, or media parts. Nothing is tokenized here. */
  #render(messages: readonly Message[], rowMedia?: number): Run[] {
    let chars = 0
    let ownMedia = 0
    for (const m of messages) {
      if (typeof m.content === 'string') chars += m.content.length
      else {
        for (const p of m.content) {
          if (p.type === 'text') chars += p.text.length
          else ownMedia++
        }
      }
    }
    if (chars > this.#spec.maxChars) {
      throw new ServiceError('input_too_long', `conversation has ${chars} characters; the limit is ${this.#spec.maxChars}`)
    }
    const hoist = this.#placement === 'ixc' && (rowMedia ?? ownMedia) === 1
    const keep = this.keepChars
    const out: Run[] = []
    let run: RunItem[] = []
    const text = (s: string, cut = false) => {
      const last = run[run.length - 1]
      if (!cut && last && 's' in last) last.s += s
      else run.push({ s })
    }
    const flush = () => {
      const items = this.#published ? run.flatMap((x) => ('s' in x ? this.#publishedSplit(x.s) : [x])) : run
      if (items.length > 0) out.push(items)
      run = []
    }
    for (const m of messages) {
      text(this.#head.replace('{role}', m.role))
      const parts = typeof m.content === 'string' ? [{ type: 'text' as const, text: m.content }] : m.content
      const textIdx = parts.flatMap((p, i) => (p.type === 'text' ? [i] : []))
      const first = textIdx[0]
      const last = textIdx[textIdx.length - 1]
      parts.forEach((p, i) => {
        if (p.type === 'text') {
          let s = p.text
          if (this.#spec.template.strip_content) {
            if (i === first) s = s.trimStart()
            if (i === last) s = s.trimEnd()
          }
          const kept = tailOf(s, keep)
          // a published <ImageHere> in the cut head would still have taken a media item (markers carry no ids)
          if (this.#published && this.#placement === 'ixc' && s.slice(0, s.length - kept.length).includes(MEDIA_MARKER)) {
            text(s)
          } else if (this.#published) text(kept)
          else neutralizeControlText(kept, this.#controls).forEach((c, k) => text(c, k > 0))
        } else if (hoist) {
          out.unshift({ kind: 'media', part: p, hoisted: true })
        } else {
          flush()
          out.push({ kind: 'media', part: p })
        }
      })
      text(this.#tail)
    }
    flush()
    return out
  }

  /** Runs -> segments, with `encode` giving the ids of a run's strings (in order). */
  #assemble(plan: readonly Run[], encode: (texts: readonly string[]) => number[][]): Segment[] {
    const out: Segment[] = []
    const push = (ids: readonly number[]) => {
      if (ids.length === 0) return
      const prev = out[out.length - 1]
      if (prev?.kind === 'text') for (let i = 0; i < ids.length; i++) prev.ids.push(ids[i]!)
      else out.push({ kind: 'text', ids: [...ids] })
    }
    const vocab = this.#published ? this.#spec.vocabSize : undefined
    for (const r of plan) {
      if (!Array.isArray(r)) {
        out.push(r.hoisted ? { kind: 'media', part: r.part, hoisted: true } : { kind: 'media', part: r.part })
        continue
      }
      const ids = encode(r.flatMap((x) => ('s' in x ? [x.s] : [])))
      let k = 0
      for (const item of r) {
        if ('marker' in item) out.push({ kind: 'marker' })
        else if ('id' in item) push([item.id])
        else {
          const got = ids[k++]!
          const bad = vocab === undefined ? undefined : got.find((id) => id >= vocab)
          if (bad !== undefined) {
            throw new ServiceError('content_token_out_of_range', `content produces token id ${bad}, past the model's embedding table (${vocab} rows)`)
          }
          push(got)
        }
      }
    }
    return out
  }

  /**
   * content_special_tokens = published: the pinned slow tokenizer (transformers ≤ 4.33) splits text on its
   * special tokens before SentencePiece sees it; `<s>`/`</s>`/`<unk>` become ids. When eos_newline = strip the
   * special tokens are plain strings and "we strip left and right by default" removes the whitespace on both
   * sides; otherwise (AddedToken with lstrip/rstrip false) nothing is stripped. `<ImageHere>` splits the prompt
   * before tokenization (apply_chat_template) and becomes a marker segment.
   */
  #publishedSplit(s: string): RunItem[] {
    if (this.#splitRe === null) return [{ s }]
    const pieces = s.split(this.#splitRe)
    const strip = this.#spec.template.eos_newline === 'strip'
    const controls = this.#spec.controlLiterals ?? {}
    for (let i = 1; i < pieces.length; i += 2) {
      const lit = pieces[i]!
      if (this.#outOfTable.has(lit)) {
        throw new ServiceError(
          'content_token_out_of_range',
          `content contains ${JSON.stringify(lit)}, which the published tokenizer maps past the model's embedding table (the published get_score fails on it); this model uses content_special_tokens = published`,
        )
      }
      if (strip && lit !== MEDIA_MARKER) {
        pieces[i - 1] = pieces[i - 1]!.replace(PY_RSTRIP, '')
        pieces[i + 1] = pieces[i + 1]!.replace(PY_LSTRIP, '')
      }
    }
    return pieces.map((p, i): RunItem => (i % 2 === 0 ? { s: p } : p === MEDIA_MARKER ? { marker: true } : { id: controls[p]! }))
  }

  /** The ixc placement (the published apply_chat_template with each media part standing where an `<ImageHere>`
   *  would be): media item k goes to marker k, surplus markers only split the text. One hoisted media item goes
   *  to the first literal marker, or right after BOS when there is none. */
  #placeIxc(segments: readonly Segment[]): Segment[] {
    const media = segments.filter((s): s is Extract<Segment, { kind: 'media' }> => s.kind === 'media')
    const hoisted = media.filter((s) => s.hoisted)
    if (hoisted.length > 0 && media.length !== 1) {
      throw new Error(`${media.length} media items in a row but one was laid out as the only one (this is a bug)`)
    }
    const out: Segment[] = []
    if (hoisted.length === 1) {
      let placed = false
      for (const s of segments) {
        if (s.kind === 'media') continue
        if (s.kind === 'marker') {
          if (!placed) out.push(media[0]!)
          placed = true
        } else out.push(s)
      }
      if (!placed) out.unshift(media[0]!)
      return out
    }
    let k = 0
    for (const s of segments) {
      if (s.kind === 'media' || s.kind === 'marker') {
        if (k < media.length) out.push(media[k]!)
        k++
      } else out.push(s)
    }
    return out
  }

  /** prefix + segments + suffix as one row, truncated on the left (text only) to max_seq_len. Every media
   *  segment must have its block by now. */
  finish(...groups: ReadonlyArray<readonly Segment[]>): EncodedItem {
    const { prefix_ids, suffix_ids } = this.#spec.template
    let segments: Segment[] = groups.flat()
    if (this.#placement === 'ixc') segments = this.#placeIxc(segments)
    segments = segments.filter((s) => s.kind !== 'marker')
    if (this.#tailWsIds.length > 0) segments = this.#stripBeforeEos(segments)
    let bodyLen = 0
    let hasMedia = false
    for (const s of segments) {
      if (s.kind === 'text') bodyLen += s.ids.length
      else if (s.kind === 'media') {
        if (!s.block) throw new Error('media segment without a block reached finish() (this is a bug)')
        bodyLen += s.block.tokens
        hasMedia = true
      }
    }
    const total = prefix_ids.length + bodyLen + suffix_ids.length
    const max = this.#spec.maxSeqLen
    let drop = Math.max(0, total - max)
    if (drop > 0 && hasMedia) {
      throw new ServiceError(
        'input_too_long',
        `conversation needs ${total} positions with its media; the model's max_seq_len is ${max} and media is never truncated`,
      )
    }
    if (drop > bodyLen) {
      throw new ServiceError('input_too_long', `the template alone needs ${total - bodyLen} positions (> ${max})`)
    }
    const truncated = drop > 0
    const ids = new Int32Array(total - drop)
    const images: EncodedItem['images'] = []
    let n = 0
    for (const id of prefix_ids) ids[n++] = id
    for (const s of segments) {
      if (s.kind === 'text') {
        const from = Math.min(drop, s.ids.length)
        drop -= from
        for (let i = from; i < s.ids.length; i++) ids[n++] = s.ids[i]!
      } else if (s.kind === 'media') {
        const block = s.block as MediaBlock
        images.push({ start: n, block })
        ids.fill(this.#spec.padId, n, n + block.tokens)
        n += block.tokens
      }
    }
    for (const id of suffix_ids) ids[n++] = id
    return { ids, images, truncated }
  }

  /** eos_newline = strip: the last turn's trailing `\n` is not emitted before EOS. It follows the atomic turn-end
   *  piece, so its ids are exactly those of the whitespace alone. */
  #stripBeforeEos(segments: Segment[]): Segment[] {
    const last = segments[segments.length - 1]
    const ws = this.#tailWsIds
    if (last?.kind !== 'text' || last.ids.length < ws.length) return segments
    const tail = last.ids.slice(last.ids.length - ws.length)
    if (!tail.every((id, i) => id === ws[i])) return segments
    const ids = last.ids.slice(0, last.ids.length - ws.length)
    return [...segments.slice(0, -1), ...(ids.length > 0 ? [{ kind: 'text' as const, ids }] : [])]
  }
}
