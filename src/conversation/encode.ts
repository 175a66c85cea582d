// Conversation -> one reward.onnx row, following models/README.md §Text exactly: prefix ids (BOS), one
// rendered turn per message, suffix ids (EOS, reward token), left truncation of text only. Template, ids and
// limits come from the manifest, never from code constants.
//
// Turns are tokenized one text run at a time. That equals tokenizing the whole rendered conversation because
// every run boundary is an atomic piece (turn markers) or a media block, and the tokenizer adds no dummy
// prefix; it lets /v1/rank tokenize a shared prompt once and lets media resolve in place.
import { ServiceError } from '../errors.ts'
import type { TextTokenizer } from '../preprocess/text/tokenize.ts'
import type { EncodedItem, MediaBlock, Message, Segment } from './types.ts'

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
  /** Hard cap on characters per conversation, checked before tokenizing (tokenizing is main-thread CPU). */
  maxChars: number
}

export class ConversationEncoder {
  readonly #tok: TextTokenizer
  readonly #spec: EncoderSpec
  readonly #head: string
  readonly #tail: string

  constructor(tokenizer: TextTokenizer, spec: EncoderSpec) {
    this.#tok = tokenizer
    this.#spec = spec
    const at = spec.template.turn.indexOf('{content}')
    this.#head = spec.template.turn.slice(0, at)
    this.#tail = spec.template.turn.slice(at + '{content}'.length)
  }

  get maxSeqLen(): number {
    return this.#spec.maxSeqLen
  }

  /** Renders and tokenizes messages into segments (no prefix/suffix); media parts become empty media segments
   *  that the media resolver fills in. */
  turns(messages: readonly Message[]): Segment[] {
    let chars = 0
    for (const m of messages) {
      if (typeof m.content === 'string') chars += m.content.length
      else for (const p of m.content) if (p.type === 'text') chars += p.text.length
    }
    if (chars > this.#spec.maxChars) {
      throw new ServiceError('input_too_long', `conversation has ${chars} characters; the limit is ${this.#spec.maxChars}`)
    }
    const out: Segment[] = []
    let run = ''
    const flush = () => {
      const ids = this.#tok.encode(run)
      if (ids.length > 0) {
        const last = out[out.length - 1]
        if (last?.kind === 'text') last.ids = last.ids.concat(ids)
        else out.push({ kind: 'text', ids })
      }
      run = ''
    }
    for (const m of messages) {
      run += this.#head.replace('{role}', m.role)
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
          run += text
        } else {
          flush()
          out.push({ kind: 'media', part: p })
        }
      })
      run += this.#tail
    }
    flush()
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
