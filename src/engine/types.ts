// The engine boundary, kept tiny (TEI backends/core): the rest of the service sees typed arrays in and out,
// never ONNX Runtime objects. The real implementation is engine-client.ts (sessions in a worker thread);
// tests substitute test/helpers/fake-engine.ts.

/** What the padded and the packed reward feeds share: ids and media over row-major [rows, seqLen] arrays. */
interface TokenAndMediaFeeds {
  rows: number
  seqLen: number
  inputIds: BigInt64Array
  /** [embedRows, dim]; a text-only batch passes one zero row. Empty when every image row is named in
   *  `imageRefs`: the engine then builds the tensor itself from its embedding store. */
  imageEmbeds: Float32Array
  embedRows: number
  dim: number
  /** Image blocks the engine copies out of its embedding store into image_embeds (never sent as floats). */
  imageRefs?: ImageRef[]
  imagePositions: BigInt64Array
  imMask: Float32Array
}

/** Rows [row, row + tokens) of image_embeds come from the engine's embedding store entry `handle`. */
export interface ImageRef {
  handle: string
  row: number
  tokens: number
}

/** The reward.onnx feeds of one padded batch (models/README.md). */
export interface RewardFeeds extends TokenAndMediaFeeds {
  attentionMask: BigInt64Array
  readoutIndex: BigInt64Array
}

/** The reward_packed.onnx feeds (graph version 2, models/README.md): per row a trunk of `trunkLen` positions and
 *  `branches` branches of `branchLen` positions, laid out one after the other in [rows, seqLen] arrays (seqLen =
 *  trunkLen + branches·branchLen); one readout per branch. */
export interface PackedRewardFeeds extends TokenAndMediaFeeds {
  trunkLen: number
  branches: number
  branchLen: number
  /** [rows, trunkLen] */
  attentionMask: BigInt64Array
  /** [rows, branches]: trunk positions the branch sees (and its first position id) */
  branchStart: BigInt64Array
  /** [rows, branches, branchLen] */
  branchMask: BigInt64Array
  /** [rows, branches]: positions in seqLen */
  readoutIndex: BigInt64Array
}

export interface RewardOutput {
  scores: Float32Array
  /** Wall time of the native run, measured where it happens. */
  inferenceMs: number
}

export interface VisionOutput {
  /** [tokens, dim] image token embeddings, row-major. */
  embeds: Float32Array
  tokens: number
  dim: number
  inferenceMs: number
}

/** vision.onnx on one image with its embeddings kept in the engine (embedding-store.ts) under a handle. */
export interface StoredVision {
  tokens: number
  dim: number
  inferenceMs: number
  /** Handles the store evicted to make room: the main thread's handle table drops them. */
  evicted: string[]
  /** The input tensor's buffer, handed back after the run by engines across a thread boundary (it was transferred
   *  to them): the caller may write the next image into it (tensor-pool.ts). */
  image?: Float32Array
}

/** Bytes of typed-array data moved across the engine boundary so far, each way (the worker protocol's count). */
export interface TransferStats {
  toEngine: number
  /** results */
  fromEngine: number
  /** input buffers returned after use (vision tensors, for reuse), not results */
  handedBack?: number
}

export interface ProviderFallback {
  provider: string
  reason: string
}

export interface LoadedGraph {
  inputNames: string[]
  outputNames: string[]
  /** Element type of each input and output as the graph declares it ('float16', 'int64', ...); engines without
   *  a graph (tests' fake) may leave it out. */
  valueTypes?: Record<string, string>
  executionProvider: string
  fallbacks: ProviderFallback[]
}

/** Float type of a model's graphs (the manifest's dtype): float16 I/O is converted inside the engine. */
export type GraphDtype = 'float32' | 'float16'

export interface ModelFiles {
  reward: string
  vision: string
  /** reward_packed.onnx, when the manifest has graph version 2 */
  rewardPacked?: string
  /** Absent: float32. A float16 model is never put on the cpu EP (refused at load, engine/onnx.ts). */
  dtype?: GraphDtype
}

export interface LoadedGraphs {
  reward: LoadedGraph
  vision: LoadedGraph
  rewardPacked?: LoadedGraph
}

export interface Engine {
  /** Creates the sessions of one model version under `key`; rejects if no execution provider initialises. */
  load(key: string, files: ModelFiles): Promise<LoadedGraphs>
  unload(key: string): Promise<void>
  runReward(key: string, feeds: RewardFeeds): Promise<RewardOutput>
  /** reward_packed.onnx: scores [rows, branches] row-major. Absent in engines without the packed graph. */
  runRewardPacked?(key: string, feeds: PackedRewardFeeds): Promise<RewardOutput>
  /** One HD-transformed image `[1, 3, height, width]` through vision.onnx, its embeddings returned (warm-up,
   *  tests and benches; the service uses encodeImage). */
  runVision(key: string, image: Float32Array, height: number, width: number): Promise<VisionOutput>
  /** The same run with the embeddings kept in the engine under `handle` (pinned for `lease` unless 0) for reward
   *  feeds to name in imageRefs: only the shape comes back. */
  encodeImage(key: string, handle: string, lease: number, image: Float32Array, height: number, width: number): Promise<StoredVision>
  /** Pins `handles` (those still stored) until releaseImages(lease): a request's images stay until it is scored. */
  retainImages(lease: number, handles: readonly string[]): void
  releaseImages(lease: number): void
  /** The worker protocol's byte count (engines without a thread boundary leave it out). */
  transferStats?(): TransferStats
  health(): Promise<boolean>
  close(): Promise<void>
}
