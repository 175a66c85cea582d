// The conversation shapes every scoring route accepts (validated by src/http/schemas/common.ts) and the
// intermediate segments between "messages" and "a row of reward.onnx". Media parts and blocks are the media
// path's own types (src/preprocess/media/types.ts).
import type { MediaBlock, MediaPart } from '../preprocess/media/types.ts'

export type { MediaBlock, MediaPart }

export type Role = 'system' | 'user' | 'assistant'

export interface TextPart {
  type: 'text'
  text: string
}

export type Part = TextPart | MediaPart
export type Content = string | Part[]

export interface Message {
  role: Role
  content: Content
}

/** `hoisted`: the ixc placement's single media item, which does not split the text and goes in front.
 *  `marker`: a literal `<ImageHere>` in content (ixc placement, published content mode): a media position. */
export type Segment =
  | { kind: 'text'; ids: number[] }
  | { kind: 'media'; part: MediaPart; block?: MediaBlock; hoisted?: boolean }
  | { kind: 'marker' }

/** A conversation laid out as reward.onnx wants one row: image positions hold pad ids. */
export interface EncodedItem {
  ids: Int32Array
  /** Image blocks and where their first position is in `ids`. */
  images: Array<{ start: number; block: MediaBlock }>
  truncated: boolean
}
