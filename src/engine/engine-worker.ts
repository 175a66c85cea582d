// worker_threads entry: owns every ONNX Runtime session (TEI's BackendThread). Native runs block the thread
// they run on, so they happen here and the event loop stays free for HTTP, health checks and batching.
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { createSession, runReward, runVision, valueTypes, type CreatedSession } from './onnx.ts'
import type { EngineRequest, EngineResponse, WorkerInit } from './protocol.ts'

const init = workerData as WorkerInit
const models = new Map<string, { reward: CreatedSession; vision: CreatedSession }>()

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

async function handle(req: EngineRequest): Promise<{ result: unknown; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'load': {
      const graph = { dtype: req.files.dtype ?? 'float32', cpuFloat16: init.cpuFloat16 === true }
      const reward = await createSession(req.files.reward, init, graph)
      let vision: CreatedSession
      try {
        vision = await createSession(req.files.vision, init, graph)
      } catch (err) {
        await reward.session.release()
        throw err
      }
      const old = models.get(req.key)
      models.set(req.key, { reward, vision })
      if (old) await Promise.all([old.reward.session.release(), old.vision.session.release()])
      return { result: { reward: describe(reward), vision: describe(vision) }, transfer: [] }
    }
    case 'unload': {
      const m = models.get(req.key)
      models.delete(req.key)
      if (m) await Promise.all([m.reward.session.release(), m.vision.session.release()])
      return { result: true, transfer: [] }
    }
    case 'reward': {
      const t0 = performance.now()
      const scores = await runReward(sessionsOf(req.key).reward.session, req.feeds)
      const inferenceMs = performance.now() - t0
      // Copy into an owned buffer: ORT output tensors may view native memory that cannot be transferred.
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
    default:
      throw new Error(`unknown engine op ${(req as { op: string }).op} (this is a bug)`)
  }
}

parentPort!.on('message', (req: EngineRequest) => {
  handle(req).then(
    ({ result, transfer }) => parentPort!.postMessage({ id: req.id, ok: true, result } satisfies EngineResponse, transfer),
    (err: unknown) =>
      parentPort!.postMessage({
        id: req.id,
        ok: false,
        message: err instanceof Error ? err.message : String(err),
      } satisfies EngineResponse),
  )
})
