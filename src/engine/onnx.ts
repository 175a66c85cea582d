// The ONLY file that imports onnxruntime-node. Its InferenceSession.run blocks the calling thread, so this
// module is loaded by engine-worker.ts (a worker thread) and by bench/ (which measures the raw engine);
// keeping one import site keeps execution-provider handling and tensor layout in one place.
import ort from 'onnxruntime-node'
import { existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { float16ToFloat32, float32ToFloat16 } from './float16.ts'
import type { GraphDtype, PackedRewardFeeds, ProviderFallback, RewardFeeds } from './types.ts'

// onnxruntime-node ≥ 1.29 starts Microsoft's 1DS telemetry when it creates its environment (first session):
// an HTTPS uploader, plus an empty `$TMPDIR/mat-debug-<pid>.log` (its trace file) and a `.ses` file left
// behind at every start. ORT reads ORT_DISABLE_TELEMETRY with getenv(), from the process environment, which a
// worker thread cannot change (its process.env is a copy): engine-client.ts sets it on the main thread before
// the engine worker starts; this line covers main-thread users (bench/). An operator's explicit value wins.
process.env.ORT_DISABLE_TELEMETRY ??= '1'

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

/** What the graph is: its float type (the manifest's dtype). `cpuFloat16` lifts the refusal below, for tests and
 *  benches that check the float16 I/O path on a host without a GPU; the service never sets it. */
export interface GraphOptions {
  dtype: GraphDtype
  cpuFloat16?: boolean
}

/** Why the cpu EP is not tried for a float16 graph: ORT's CPU kernels are float32 (a float16 graph there either
 *  fails to initialise on an op without a float16 kernel or runs through inserted casts, slowly), so a float16
 *  export is for GPU EPs and a CPU host is told at load, never at its first request. */
export const CPU_FLOAT16_REFUSAL =
  'refused: float16 graph; the cpu execution provider serves float32 exports (import-hf --dtype fp32)'

export async function createSession(
  file: string,
  opts: SessionOptions,
  graph: GraphOptions = { dtype: 'float32' },
): Promise<CreatedSession> {
  const fallbacks: ProviderFallback[] = []
  for (const provider of opts.providers) {
    if (provider === 'cpu' && graph.dtype === 'float16' && !graph.cpuFloat16) {
      fallbacks.push({ provider, reason: CPU_FLOAT16_REFUSAL })
      continue
    }
    // A provider that cannot work here is skipped before ORT tries it: trying prints red ORT errors (CUDA
    // provider library missing) and Dawn's Vulkan/XDG warnings on every start of a CPU-only host.
    const unavailable = providerUnavailable(provider)
    if (unavailable) {
      fallbacks.push({ provider, reason: `skipped: ${unavailable}` })
      continue
    }
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
    `no execution provider initialised for ${file} (${graph.dtype} graph): ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ')}`,
  )
}

const ORT_BIN = path.join(
  path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')),
  'bin', 'napi-v6', process.platform, process.arch,
)
const probed = new Map<string, string | null>()

/** Why `provider` cannot initialise on this host (null: it may, so try it), from files alone: no ORT call,
 *  nothing printed. Memoised; the answer does not change while the process runs. */
export function providerUnavailable(provider: string, root = '/'): string | null {
  const key = `${root}\0${provider}`
  if (!probed.has(key)) probed.set(key, probeProvider(provider, root))
  return probed.get(key)!
}

function probeProvider(provider: string, root: string): string | null {
  if (provider === 'cpu') return null
  const at = (p: string) => path.join(root, p)
  const entries = (dir: string) => {
    try {
      return readdirSync(at(dir))
    } catch {
      return []
    }
  }
  const backend = ort.listSupportedBackends().find((b) => b.name === provider)
  if (!backend) return `not in this onnxruntime-node build`
  // Not bundled (CUDA, TensorRT): the package's postinstall fetches it (ONNXRUNTIME_NODE_INSTALL=cuda12).
  const lib = path.join(ORT_BIN, `libonnxruntime_providers_${provider}.so`)
  if (!backend.bundled && !existsSync(lib)) return `${lib} not installed (ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci)`
  const nvidia = existsSync(at('dev/nvidiactl')) || entries('dev').some((f) => /^nvidia\d+$/.test(f))
  if (provider !== 'webgpu') return nvidia ? null : 'no NVIDIA device (/dev/nvidiactl, /dev/nvidia<N>)'
  // Dawn needs a GPU adapter: a DRM render node (Vulkan) or an NVIDIA device.
  const renderNode = entries('dev/dri').some((f) => f.startsWith('renderD'))
  return renderNode || nvidia ? null : 'no GPU adapter device (/dev/dri/renderD*, /dev/nvidia*)'
}

/** Element types of a session's inputs and outputs by name, as the graph declares them. */
export function valueTypes(session: ort.InferenceSession): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of [...session.inputMetadata, ...session.outputMetadata]) out[m.name] = m.isTensor ? m.type : 'non-tensor'
  return out
}

// Float inputs go in as the graph declares them (float16: converted from the service's float32 here, in the
// engine thread); float outputs come back as float32 whatever the graph computes in.
const typeCache = new WeakMap<ort.InferenceSession, Record<string, string>>()

function typesOf(session: ort.InferenceSession): Record<string, string> {
  let t = typeCache.get(session)
  if (!t) typeCache.set(session, (t = valueTypes(session)))
  return t
}

function floatTensor(session: ort.InferenceSession, name: string, data: Float32Array, dims: number[]): ort.Tensor {
  return typesOf(session)[name] === 'float16'
    ? new ort.Tensor('float16', float32ToFloat16(data), dims)
    : new ort.Tensor('float32', data, dims)
}

function floatOutput(t: ort.Tensor | undefined): Float32Array | null {
  if (t?.type === 'float32') return t.data as Float32Array
  if (t?.type === 'float16') return float16ToFloat32(t.data as Uint16Array)
  return null
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err)
  return msg.split('\n')[0]!.slice(0, 300)
}

/** The inputs reward.onnx and reward_packed.onnx share: ids and media over the [rows, seqLen] layout. */
function tokenAndMediaFeeds(session: ort.InferenceSession, f: RewardFeeds | PackedRewardFeeds): Record<string, ort.Tensor> {
  const bt = [f.rows, f.seqLen]
  return {
    input_ids: new ort.Tensor('int64', f.inputIds, bt),
    image_embeds: floatTensor(session, 'image_embeds', f.imageEmbeds, [f.embedRows, f.dim]),
    image_positions: new ort.Tensor('int64', f.imagePositions, bt),
    im_mask: floatTensor(session, 'im_mask', f.imMask, bt),
  }
}

export async function runReward(session: ort.InferenceSession, f: RewardFeeds): Promise<Float32Array> {
  const bt = [f.rows, f.seqLen]
  const out = await session.run({
    ...tokenAndMediaFeeds(session, f),
    attention_mask: new ort.Tensor('int64', f.attentionMask, bt),
    readout_index: new ort.Tensor('int64', f.readoutIndex, [f.rows]),
  })
  const score = out.score
  const data = floatOutput(score)
  if (!score || !data || score.dims.length !== 1 || score.dims[0] !== f.rows) {
    throw new Error(`reward.onnx returned ${score ? `${score.type}${JSON.stringify(score.dims)}` : 'no score'}`)
  }
  return data
}

export async function runRewardPacked(session: ort.InferenceSession, f: PackedRewardFeeds): Promise<Float32Array> {
  const out = await session.run({
    ...tokenAndMediaFeeds(session, f),
    attention_mask: new ort.Tensor('int64', f.attentionMask, [f.rows, f.trunkLen]),
    branch_start: new ort.Tensor('int64', f.branchStart, [f.rows, f.branches]),
    branch_mask: new ort.Tensor('int64', f.branchMask, [f.rows, f.branches, f.branchLen]),
    readout_index: new ort.Tensor('int64', f.readoutIndex, [f.rows, f.branches]),
  })
  const score = out.score
  const data = floatOutput(score)
  if (!score || !data || score.dims.length !== 2 || score.dims[0] !== f.rows || score.dims[1] !== f.branches) {
    throw new Error(`reward_packed.onnx returned ${score ? `${score.type}${JSON.stringify(score.dims)}` : 'no score'}`)
  }
  return data
}

export async function runVision(
  session: ort.InferenceSession,
  image: Float32Array,
  height: number,
  width: number,
): Promise<{ embeds: Float32Array; tokens: number; dim: number }> {
  const out = await session.run({ image: floatTensor(session, 'image', image, [1, 3, height, width]) })
  const e = out.image_embeds
  const data = floatOutput(e)
  if (!e || !data || e.dims.length !== 2) {
    throw new Error(`vision.onnx returned ${e ? `${e.type}${JSON.stringify(e.dims)}` : 'no image_embeds'}`)
  }
  return { embeds: data, tokens: Number(e.dims[0]), dim: Number(e.dims[1]) }
}
