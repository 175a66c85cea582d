// Messages between engine-client.ts (main thread) and engine-worker.ts. Typed-array buffers are moved with
// transfer lists, never copied through structured clone.
import type { ModelFiles, PackedRewardFeeds, RewardFeeds } from './types.ts'

export interface WorkerInit {
  providers: readonly string[]
  threads: number
  spin: boolean
  /** Lifts the refusal of float16 graphs on the cpu EP (engine/onnx.ts). Tests and benches only: no config
   *  knob sets it, the service always refuses. */
  cpuFloat16?: boolean
  /** Bound of the worker's image embedding store (EMBEDDING_CACHE_BYTES); pinned entries may exceed it. */
  embeddingCacheBytes?: number
  /** One Int32 the main thread sets to 1 on close: the worker exits at its next safe point (see engine-client.ts). */
  stop?: SharedArrayBuffer
}

export type EngineRequest =
  | { id: number; op: 'load'; key: string; files: ModelFiles }
  | { id: number; op: 'unload'; key: string }
  | { id: number; op: 'reward'; key: string; feeds: RewardFeeds }
  | { id: number; op: 'rewardPacked'; key: string; feeds: PackedRewardFeeds }
  | { id: number; op: 'vision'; key: string; image: Float32Array; height: number; width: number }
  | { id: number; op: 'encodeImage'; key: string; handle: string; lease: number; image: Float32Array; height: number; width: number }
  // posted without a reply (id 0): pins are bookkeeping, and a request never waits for one
  | { id: number; op: 'retain'; lease: number; handles: readonly string[] }
  | { id: number; op: 'release'; lease: number }
  /** Exit now (the worker is between native calls when it reads this); never answered. */
  | { id: number; op: 'close' }

/** `bytes`: typed-array bytes the reply carries (the protocol's transfer count); `missing`: the handles a reward
 *  run did not find in the embedding store. */
export type EngineResponse =
  | { id: number; ok: true; result: unknown; bytes: number; handedBack: number }
  | { id: number; ok: false; message: string; missing?: string[] }
