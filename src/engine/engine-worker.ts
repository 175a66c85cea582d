// worker_threads entry: owns every ONNX Runtime session (TEI's BackendThread). Native runs block the thread
// they run on, so they happen here and the event loop stays free for HTTP, health checks and batching.
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { createSession, runReward, runRewardPacked, runVision, valueTypes, type CreatedSession } from './onnx.ts'
import type { EngineRequest, EngineResponse, WorkerInit } from './protocol.ts'
import { EmbeddingsMissing, EmbeddingStore, gatherImageEmbeds } from './embedding-store.ts'

const init = workerData as WorkerInit
const store = new EmbeddingStore(init.embeddingCacheBytes ?? 128 * 2 ** 20)
type Sessions = { reward: CreatedSession; vision: CreatedSession; rewardPacked?: CreatedSession }
const models = new Map<string, Sessions>()
const stop = init.stop ? new Int32Array(init.stop) : null

/** The client is closing (engine-client.ts close()): exit here, with no native call on the stack. */
function exitIfClosing(): void {
  if (stop && Atomics.load(stop, 0) === 1) process.exit(0)
}

function release(m: Sessions) {
  return Promise.all([m.reward, m.vision, m.rewardPacked].map((s) => s?.session.release()))
}

function describe(s: CreatedSession) {
  return {
    inputNames: [...s.session.inputNames],
    outputNames: [...s.session.outputNames],
    valueTypes: valueTypes(s.session),
    executionProvider: s.executionProvider,
    fallbacks: s.fallbacks,
  }
}

function sessionsOf(key: string) {
  const m = models.get(key)
  if (!m) throw new Error(`model ${key} is not loaded in the engine`)
  return m
}

// transfer: the result's buffers; handBack: input buffers returned for reuse (counted apart: not results)
async function handle(req: EngineRequest): Promise<{ result: unknown; transfer: ArrayBuffer[]; handBack?: ArrayBuffer[] }> {
  switch (req.op) {
    case 'load': {
      const graph = { dtype: req.files.dtype ?? 'float32', cpuFloat16: init.cpuFloat16 === true }
      exitIfClosing()
      const reward = await createSession(req.files.reward, init, graph)
      exitIfClosing()
      let vision: CreatedSession
      let rewardPacked: CreatedSession | undefined
      try {
        vision = await createSession(req.files.vision, init, graph)
        exitIfClosing()
        try {
          if (req.files.rewardPacked) rewardPacked = await createSession(req.files.rewardPacked, init, graph)
        } catch (err) {
          await vision.session.release()
          throw err
        }
      } catch (err) {
        await reward.session.release()
        throw err
      }
      const old = models.get(req.key)
      models.set(req.key, { reward, vision, rewardPacked })
      if (old) await release(old)
      const result = { reward: describe(reward), vision: describe(vision), ...(rewardPacked ? { rewardPacked: describe(rewardPacked) } : {}) }
      return { result, transfer: [] }
    }
    case 'unload': {
      const m = models.get(req.key)
      models.delete(req.key)
      store.dropModel(req.key)
      if (m) await release(m)
      return { result: true, transfer: [] }
    }
    case 'reward': {
      const t0 = performance.now()
      const session = sessionsOf(req.key).reward.session
      const scores = await runReward(session, { ...req.feeds, imageEmbeds: gatherImageEmbeds(req.feeds, store) })
      const inferenceMs = performance.now() - t0
      // Copy into an owned buffer: ORT output tensors may view native memory that cannot be transferred.
      const owned = new Float32Array(scores)
      return { result: { scores: owned, inferenceMs }, transfer: [owned.buffer as ArrayBuffer] }
    }
    case 'rewardPacked': {
      const s = sessionsOf(req.key).rewardPacked
      if (!s) throw new Error(`model ${req.key} has no packed reward graph (this is a bug)`)
      const t0 = performance.now()
      const scores = await runRewardPacked(s.session, { ...req.feeds, imageEmbeds: gatherImageEmbeds(req.feeds, store) })
      const inferenceMs = performance.now() - t0
      const owned = new Float32Array(scores)
      return { result: { scores: owned, inferenceMs }, transfer: [owned.buffer as ArrayBuffer] }
    }
    case 'vision': {
      const t0 = performance.now()
      const out = await runVision(sessionsOf(req.key).vision.session, req.image, req.height, req.width)
      const inferenceMs = performance.now() - t0
      const embeds = new Float32Array(out.embeds)
      return {
        result: { embeds, tokens: out.tokens, dim: out.dim, inferenceMs },
        transfer: [embeds.buffer as ArrayBuffer],
      }
    }
    case 'encodeImage':
      // started synchronously on arrival (no await before during()), so a later release of the lease waits for it
      return store.during(req.lease, async () => {
        const t0 = performance.now()
        const out = await runVision(sessionsOf(req.key).vision.session, req.image, req.height, req.width)
        const inferenceMs = performance.now() - t0
        // owned copy (as above); it stays here, only the shape goes back
        const evicted = store.put(req.handle, req.key, new Float32Array(out.embeds), out.tokens, out.dim, req.lease)
        // the input tensor's buffer goes back for the next image (tensor-pool.ts); the run is over with it
        return { result: { tokens: out.tokens, dim: out.dim, inferenceMs, evicted, image: req.image }, transfer: [], handBack: [req.image.buffer as ArrayBuffer] }
      })
    case 'retain':
      store.retain(req.lease, req.handles)
      return { result: true, transfer: [] }
    case 'release':
      store.release(req.lease)
      return { result: true, transfer: [] }
    case 'close':
      throw new Error('close is handled before dispatch (this is a bug)')
    default:
      throw new Error(`unknown engine op ${(req as { op: string }).op} (this is a bug)`)
  }
}

parentPort!.on('message', (req: EngineRequest) => {
  if (req.op === 'close') process.exit(0)
  exitIfClosing()
  handle(req).then(
    ({ result, transfer, handBack = [] }) => {
      if (req.id === 0) return // posted without a reply
      const bytes = transfer.reduce((n, b) => n + b.byteLength, 0)
      const handedBack = handBack.reduce((n, b) => n + b.byteLength, 0)
      parentPort!.postMessage({ id: req.id, ok: true, result, bytes, handedBack } satisfies EngineResponse, [...transfer, ...handBack])
    },
    (err: unknown) =>
      parentPort!.postMessage({
        id: req.id,
        ok: false,
        message: err instanceof Error ? err.message : String(err),
        ...(err instanceof EmbeddingsMissing ? { missing: err.handles } : {}),
      } satisfies EngineResponse),
  )
})
