// The engine boundary, kept tiny (TEI backends/core): the rest of the service sees typed arrays in and out,
// never ONNX Runtime objects. The real implementation is engine-client.ts (sessions in a worker thread);
// tests substitute test/helpers/fake-engine.ts.

/** The reward.onnx feeds of one padded batch (models/README.md); arrays are row-major [rows, seqLen]. */
export interface RewardFeeds {
  rows: number
  seqLen: number
  inputIds: BigInt64Array
  /** [embedRows, dim]; a text-only batch passes one zero row. */
  imageEmbeds: Float32Array
  embedRows: number
  dim: number
  imagePositions: BigInt64Array
  imMask: Float32Array
  attentionMask: BigInt64Array
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
  /** Absent: float32. A float16 model is never put on the cpu EP (refused at load, engine/onnx.ts). */
  dtype?: GraphDtype
}

export interface Engine {
  /** Creates the sessions of one model version under `key`; rejects if no execution provider initialises. */
  load(key: string, files: ModelFiles): Promise<{ reward: LoadedGraph; vision: LoadedGraph }>
  unload(key: string): Promise<void>
  runReward(key: string, feeds: RewardFeeds): Promise<RewardOutput>
  /** One HD-transformed image `[1, 3, height, width]` through vision.onnx. */
  runVision(key: string, image: Float32Array, height: number, width: number): Promise<VisionOutput>
  health(): Promise<boolean>
  close(): Promise<void>
}
