// One loaded, warmed, immutable model version. Requests take a reference when they start and keep it to the
// end, so a registry swap (hot reload) never changes the model under a running request.
import type { ConversationEncoder } from '../conversation/encode.ts'
import type { LoadedGraph } from '../engine/types.ts'
import type { ModelManifest } from './manifest.ts'

export interface ModelVersion {
  /** Engine session key and batch key: rows of different versions never share a batch. */
  readonly key: string
  readonly name: string
  readonly version: number
  readonly dir: string
  readonly manifest: ModelManifest
  readonly encoder: ConversationEncoder
  /** rewardPacked: reward_packed.onnx (graph version 2), when the manifest lists it: rows sharing a prefix
   *  are scored in one packed row (src/scheduler/pack-shared.ts). */
  readonly graphs: { readonly reward: LoadedGraph; readonly vision: LoadedGraph; readonly rewardPacked?: LoadedGraph }
  /** Padded token budget of this model's batches (MAX_BATCH_TOKENS, or chosen per execution provider). */
  readonly batchTokens?: number
}

/** MAX_BATCH_TOKENS=0: on cpu one batch is about one max-length row (short rows still pair up); GPUs batch. */
export function autoBatchTokens(executionProvider: string, maxSeqLen: number): number {
  return executionProvider === 'cpu' ? maxSeqLen : Math.max(16384, maxSeqLen)
}

export function modelKey(name: string, version: number): string {
  return `${name}/${version}`
}
