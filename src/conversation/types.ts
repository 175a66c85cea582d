// The conversation shapes every scoring route accepts (validated by src/http/schemas/common.ts) and the
// intermediate segments between "messages" and "a row of reward.onnx".

export type Role = 'system' | 'user' | 'assistant'

export interface TextPart {
  type: 'text'
  text: string
}

/** An image or video part: exactly one source. `file` is a multipart field name / upload reference and `url`
 *  a remote reference; which sources are honoured is the media resolver's decision. */
export interface MediaPart {
  type: 'image' | 'video'
  data?: string
  file?: string
  url?: string
}

export type Part = TextPart | MediaPart
export type Content = string | Part[]

export interface Message {
  role: Role
  content: Content
}

/** Image token block of one media part, as vision.onnx returns it ([tokens, dim] row-major). */
export interface MediaBlock {
  tokens: number
  dim: number
  embeds: Float32Array
  preprocessMs: number
  inferenceMs: number
}

export type Segment = { kind: 'text'; ids: number[] } | { kind: 'media'; part: MediaPart; block?: MediaBlock }

/** A conversation laid out as reward.onnx wants one row: image positions hold pad ids. */
export interface EncodedItem {
  ids: Int32Array
  /** Image blocks and where their first position is in `ids`. */
  images: Array<{ start: number; block: MediaBlock }>
  truncated: boolean
}
