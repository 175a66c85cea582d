// Conversation -> one reward.onnx row, following models/README.md §Text exactly: prefix ids (BOS), one
// rendered turn per message, suffix ids (EOS, reward token), left truncation of text only. Template, ids and
// limits come from the manifest, never from code constants.
//
// Turns are tokenized one text run at a time. That equals tokenizing the whole rendered conversation because
// every run boundary is an atomic piece (turn markers) or a media block, and the tokenizer adds no dummy
// prefix; it lets /v1/rank tokenize a shared prompt once and lets media resolve in place.
import { ServiceError } from '../errors.ts'
import type { TextTokenizer } from '../preprocess/text/tokenize.ts'
import { neutralizeControlText } from './control-text.ts'
import type { EncodedItem, MediaBlock, MediaPart, Message, Segment } from './types.ts'

type Run = string[] | { kind: 'media'; part: MediaPart }

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
}

export interface EncoderSpec {
  template: TemplateSpec
  padId: number
  maxSeqLen: number
  /** Hard cap on characters per conversation, checked before tokenizing. */
  maxChars: number
  /** Safe mode (default true): control strings in content are cut so they tokenize as plain text
   *  (control-text.ts). false = the published pipeline's behaviour, unsafe for RL. */
  safeControlText?: boolean
}

export class ConversationEncoder {
  readonly #tok: TextTokenizer
  readonly #spec: EncoderSpec
  readonly #head: string
  readonly #tail: string
  readonly #controls: readonly string[]

  constructor(tokenizer: TextTokenizer, spec: EncoderSpec) {
    this.#tok = tokenizer
    this.#spec = spec
    this.#controls = tokenizer.controlStrings ?? []
    const at = spec.template.turn.indexOf('{content}')
    this.#head = spec.template.turn.slice(0, at)
    this.#tail = spec.template.turn.slice(at + '{content}'.length)
  }

  get maxSeqLen(): number {
    return this.#spec.maxSeqLen
  }

  /** Renders and tokenizes messages into segments (no prefix/suffix) on the calling thread; media parts become
   *  empty media segments that the media resolver fills in. */
  turns(messages: readonly Message[]): Segment[] {
    const plan = this.#render(messages)
    return this.#assemble(plan, (texts) => texts.map((x) => this.#tok.encode(x)))
  }

  /** turns() for many message groups with one tokenizer call (a worker thread for the real tokenizer). */
  async turnsBatch(groups: ReadonlyArray<readonly Message[]>): Promise<Segment[][]> {
    const plans = groups.map((g) => this.#render(g))
    const texts = plans.flatMap((p) => p.flatMap((r) => (Array.isArray(r) ? r : [])))
    const ids = this.#tok.encodeBatch ? await this.#tok.encodeBatch(texts) : texts.map((x) => this.#tok.encode(x))
    let at = 0
    const take = (n: readonly string[]) => ids.slice(at, (at += n.length))
    return plans.map((p) => this.#assemble(p, take))
  }

  /** Whether any text of `messages` contains a string safe mode cuts (so its ids differ from the published
   *  pipeline's on purpose). */
  hasControlText(messages: readonly Message[]): boolean {
    if (this.#controls.length === 0) return false
    const texts = messages.flatMap((m) => (typeof m.content === 'string' ? [m.content] : m.content.flatMap((p) => (p.type === 'text' ? [p.text] : []))))
    return texts.some((x) => this.#controls.some((c) => x.includes(c)))
  }

  /** Characters of one text part that can still reach the row: left truncation keeps max_seq_len ids, and n
   *  characters give at least n / maxPieceChars ids, so a longer text's head is cut before tokenizing (with
   *  a margin of ids, dropped by the truncation anyway, for merges that would have crossed the cut). */
  get keepChars(): number {
    return (this.#spec.maxSeqLen + CUT_MARGIN_IDS) * (this.#tok.maxPieceChars ?? 16)
  }

  /** The rendered conversation as runs to tokenize: each run is a list of strings tokenized separately and
   *  concatenated (safe mode cuts control strings in content there), or a media part. */
  #render(messages: readonly Message[]): Run[] {
    let chars = 0
    for (const m of messages) {
      if (typeof m.content === 'string') chars += m.content.length
      else for (const p of m.content) if (p.type === 'text') chars += p.text.length
    }
    if (chars > this.#spec.maxChars) {
      throw new ServiceError('input_too_long', `conversation has ${chars} characters; the limit is ${this.#spec.maxChars}`)
    }
    const controls = this.#spec.safeControlText === false ? [] : this.#controls
    const keep = this.keepChars
    const out: Run[] = []
    let run: string[] = ['']
    const add = (text: string, asContent: boolean) => {
      const pieces = asContent ? neutralizeControlText(text, controls) : [text]
      run[run.length - 1] += pieces[0]!
      for (let i = 1; i < pieces.length; i++) run.push(pieces[i]!)
    }
    const flush = () => {
      const texts = run.filter((x) => x.length > 0)
      if (texts.length > 0) out.push(texts)
      run = ['']
    }
    for (const m of messages) {
      add(this.#head.replace('{role}', m.role), false)
      const parts = typeof m.content === 'string' ? [{ type: 'text' as const, text: m.content }] : m.content
      const textIdx = parts.flatMap((p, i) => (p.type === 'text' ? [i] : []))
      const first = textIdx[0]
      const last = textIdx[textIdx.length - 1]
      parts.forEach((p, i) => {
        if (p.type === 'text') {
          let text = p.text
          if (this.#spec.template.strip_content) {
            if (i === first) text = text.trimStart()
            if (i === last) text = text.trimEnd()
          }
          add(tailOf(text, keep), true)
        } else {
          flush()
          out.push({ kind: 'media', part: p })
        }
      })
      add(this.#tail, false)
    }
    flush()
    return out
  }

  #assemble(plan: readonly Run[], encode: (texts: readonly string[]) => number[][]): Segment[] {
    const out: Segment[] = []
    for (const r of plan) {
      if (!Array.isArray(r)) {
        out.push({ kind: 'media', part: r.part })
        continue
      }
      const parts = encode(r)
      if (parts.every((p) => p.length === 0)) continue
      const prev = out[out.length - 1]
      const ids = prev?.kind === 'text' ? prev.ids : []
      for (const p of parts) for (let i = 0; i < p.length; i++) ids.push(p[i]!)
      if (prev?.kind !== 'text') out.push({ kind: 'text', ids })
    }
    return out
  }

  /** prefix + segments + suffix as one row, truncated on the left (text only) to max_seq_len. Every media
   *  segment must have its block by now. */
  finish(...groups: ReadonlyArray<readonly Segment[]>): EncodedItem {
    const { prefix_ids, suffix_ids } = this.#spec.template
    const segments = groups.flat()
    let bodyLen = 0
    let hasMedia = false
    for (const s of segments) {
      if (s.kind === 'text') bodyLen += s.ids.length
      else {
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
      } else {
        const block = s.block as MediaBlock
        images.push({ start: n, block })
        ids.fill(this.#spec.padId, n, n + block.tokens)
        n += block.tokens
      }
    }
    for (const id of suffix_ids) ids[n++] = id
    return { ids, images, truncated }
  }
}
