// The ONLY file that imports onnxruntime-node. Its InferenceSession.run blocks the calling thread, so this
// module is loaded by engine-worker.ts (a worker thread) and by bench/ (which measures the raw engine);
// keeping one import site keeps execution-provider handling and tensor layout in one place.
import ort from 'onnxruntime-node'
import type { PackedRewardFeeds, ProviderFallback, RewardFeeds } from './types.ts'

export interface CreatedSession {
  session: ort.InferenceSession
  executionProvider: string
  fallbacks: ProviderFallback[]
}

/** Tries each provider in order; the first whose session initialises wins (a CUDA build without its shared
 *  libraries, or WebGPU without an adapter, throws here and we fall through to the next one). */
export interface SessionOptions {
  providers: readonly string[]
  threads: number
  /** ORT intra-op spin-waiting (see ORT_SPIN in src/config.ts). */
  spin: boolean
}

export async function createSession(file: string, opts: SessionOptions): Promise<CreatedSession> {
  const fallbacks: ProviderFallback[] = []
  for (const provider of opts.providers) {
    try {
      const session = await ort.InferenceSession.create(file, {
        executionProviders: [provider],
        intraOpNumThreads: opts.threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        extra: { session: { intra_op: { allow_spinning: opts.spin ? '1' : '0' } } },
      })
      return { session, executionProvider: provider, fallbacks }
    } catch (err) {
      fallbacks.push({ provider, reason: firstLine(err) })
    }
  }
  throw new Error(
    `no execution provider initialised for ${file}: ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ')}`,
  )
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  return msg.split('\n')[0]!.slice(0, 300)
}

export async function runReward(session: ort.InferenceSession, f: RewardFeeds): Promise<Float32Array> {
  const bt = [f.rows, f.seqLen]
  const out = await session.run({
    input_ids: new ort.Tensor('int64', f.inputIds, bt),
    image_embeds: new ort.Tensor('float32', f.imageEmbeds, [f.embedRows, f.dim]),
    image_positions: new ort.Tensor('int64', f.imagePositions, bt),
    im_mask: new ort.Tensor('float32', f.imMask, bt),
    attention_mask: new ort.Tensor('int64', f.attentionMask, bt),
    readout_index: new ort.Tensor('int64', f.readoutIndex, [f.rows]),
  })
  const score = out.score
  if (!score || score.type !== 'float32' || score.dims.length !== 1 || score.dims[0] !== f.rows) {
    throw new Error(`reward.onnx returned ${score ? `${score.type}${JSON.stringify(score.dims)}` : 'no score'}`)
  }
  return score.data as Float32Array
}

export async function runRewardPacked(session: ort.InferenceSession, f: PackedRewardFeeds): Promise<Float32Array> {
  const bt = [f.rows, f.seqLen]
  const out = await session.run({
    input_ids: new ort.Tensor('int64', f.inputIds, bt),
    image_embeds: new ort.Tensor('float32', f.imageEmbeds, [f.embedRows, f.dim]),
    image_positions: new ort.Tensor('int64', f.imagePositions, bt),
    im_mask: new ort.Tensor('float32', f.imMask, bt),
    attention_mask: new ort.Tensor('int64', f.attentionMask, [f.rows, f.trunkLen]),
    branch_start: new ort.Tensor('int64', f.branchStart, [f.rows, f.branches]),
    branch_mask: new ort.Tensor('int64', f.branchMask, [f.rows, f.branches, f.branchLen]),
    readout_index: new ort.Tensor('int64', f.readoutIndex, [f.rows, f.branches]),
  })
  const score = out.score
  if (!score || score.type !== 'float32' || score.dims.length !== 2 || score.dims[0] !== f.rows || score.dims[1] !== f.branches) {
    throw new Error(`reward_packed.onnx returned ${score ? `${score.type}${JSON.stringify(score.dims)}` : 'no score'}`)
  }
  return score.data as Float32Array
}

export async function runVision(
  session: ort.InferenceSession,
  image: Float32Array,
  height: number,
  width: number,
): Promise<{ embeds: Float32Array; tokens: number; dim: number }> {
  const out = await session.run({ image: new ort.Tensor('float32', image, [1, 3, height, width]) })
  const e = out.image_embeds
  if (!e || e.type !== 'float32' || e.dims.length !== 2) {
    throw new Error(`vision.onnx returned ${e ? `${e.type}${JSON.stringify(e.dims)}` : 'no image_embeds'}`)
  }
  return { embeds: e.data as Float32Array, tokens: Number(e.dims[0]), dim: Number(e.dims[1]) }
}
