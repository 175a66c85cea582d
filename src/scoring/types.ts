// The scoring service's inputs and outputs (service.ts), apart from its implementation: routes build rows and
// read results without depending on the batcher or the media path.
import type { Message } from '../conversation/types.ts'
import type { MediaRequestScope } from '../preprocess/media/request-scope.ts'

/** One row to score: message groups rendered one after the other into one reward.onnx row (a whole
 *  conversation; or a prompt, then a response). A group shared by several rows (the prompt of a best-of-N
 *  call) is tokenized, and its media resolved, once. */
export type ScoreRow = ReadonlyArray<readonly Message[]>

export interface ScoreOptions {
  /** performance.now() time after which the rows are useless (504). */
  deadline: number
  /** Aborts when the client has gone away. */
  signal: AbortSignal
  /** The request's uploads and media budget. */
  scope?: MediaRequestScope
  /** Admit by token cost and run in pieces (large RLHF requests) instead of all rows at once. */
  pieces?: PieceOptions
}

/** A large request goes through the batcher `rows` rows at a time, one piece after the other, holding one
 *  piece's admission permit throughout: other clients' items interleave with it, and its size is bounded by
 *  tokens (the real cost) rather than by rows. */
export interface PieceOptions {
  rows: number
  /** Token budget of the whole request (each row counted up to the model's max_seq_len). */
  maxTokens: number
}

export interface ScoredRow {
  score: number
  /** Positions of the row, template included. */
  tokens: number
  truncated: boolean
  /** Positions of each group of the row (text and media, no template ids), in the row's order. */
  groupTokens: number[]
}

export interface ScoringTimings {
  preprocessMs: number
  queueMs: number
  inferenceMs: number
}
