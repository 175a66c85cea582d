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
}

export type EngineRequest =
  | { id: number; op: 'load'; key: string; files: ModelFiles }
  | { id: number; op: 'unload'; key: string }
  | { id: number; op: 'reward'; key: string; feeds: RewardFeeds }
  | { id: number; op: 'rewardPacked'; key: string; feeds: PackedRewardFeeds }
  | { id: number; op: 'vision'; key: string; image: Float32Array; height: number; width: number }

export type EngineResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; message: string }
