// Shapes shared by the pure batch policy and the batcher loop.

export interface BatchLimits {
  /** Padded cost budget: rows x longest row. */
  maxBatchTokens: number
  maxBatchSize: number
  maxQueueDelayMs: number
}

/** What the policy needs to know about a queued job. */
export interface QueuedJob {
  /** Jobs with different keys (model versions) never share a batch. */
  batchKey: string
  length: number
  enqueuedAt: number
  /** Padded token budget of a batch led by this job (its model's); limits.maxBatchTokens when absent. */
  tokenBudget?: number
  /** Absolute time (same clock as `now`) after which the job is useless. */
  deadline: number
  /** Client gone or already answered (e.g. timed out): skip without running. */
  cancelled: boolean
}

export interface NextBatch<J extends QueuedJob> {
  /** Jobs to run now, sorted by length; empty when nothing should run yet. */
  batch: J[]
  /** Live jobs left in the queue, in arrival order. */
  rest: J[]
  /** Jobs to drop without running. */
  cancelled: J[]
  expired: J[]
  /** When `batch` is empty but jobs wait for company: ms until the oldest one must go. */
  waitMs: number | null
}

export interface JobTimings {
  queueMs: number
  inferenceMs: number
  batchSize: number
}

/** One encoded conversation as reward.onnx takes it: ids with pad ids at image positions, and the image token
 *  blocks with their first position (src/conversation/encode.ts EncodedItem is one). */
export interface EncodedRow {
  ids: Int32Array
  images: ReadonlyArray<{ start: number; block: ImageBlock }>
}

/** An image's token block: its embeddings inline (tests, benches), or a handle to the engine's embedding store
 *  (the service: the floats never leave the engine). */
export type ImageBlock = { tokens: number; dim: number } & ({ embeds: Float32Array; handle?: undefined } | { handle: string; embeds?: undefined })

/** What the batcher needs of a model version (src/models/model-version.ts ModelVersion is one). */
export interface BatchModel {
  /** Engine session key and batch key: rows of different versions never share a batch. */
  readonly key: string
  /** Model name and version: the {model, version} labels of the per-model metrics. */
  readonly name: string
  readonly version: number
  /** Padded token budget of this model's batches; limits.maxBatchTokens when absent. */
  readonly batchTokens?: number
  readonly manifest: { readonly tokenizer: { readonly pad_id: number }; readonly config: { readonly hidden_size: number } }
}
