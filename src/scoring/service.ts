// The path every scoring route shares: resolve the model, admit (503 before any work), tokenize + resolve media,
// submit rows to the batcher, await scores. Routes only shape requests and responses around it.
import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { resolveSegments } from '../conversation/media.ts'
import { mediaScopeOf } from '../preprocess/media/request-scope.ts'
import type { EncodedItem, Segment } from '../conversation/types.ts'
import { ServiceError } from '../errors.ts'
import type { ModelVersion } from '../models/model-version.ts'

export interface ScoredItem {
  score: number
  tokens: number
  truncated: boolean
}

export interface ScoringRun {
  model: ModelVersion
  /** Runs `prepare` (tokenize, media) under the request's permit, then scores the rows it returns. */
  score(prepare: (model: ModelVersion) => Promise<EncodedItem[]>): Promise<ScoredItem[]>
}

/** Resolves the model (a request keeps this version to the end) and reserves room for `items` rows. */
export function startScoring(app: FastifyInstance, request: FastifyRequest, modelName: string | undefined, items: number): ScoringRun {
  if (items > app.config.maxClientBatchSize) {
    throw new ServiceError('invalid_request', `${items} items in one request; the limit is ${app.config.maxClientBatchSize}`)
  }
  const model = app.models.resolve(modelName)
  return {
    model,
    async score(prepare) {
      const permit = app.batcher.admit(items)
      try {
        const t0 = performance.now()
        const rows = await prepare(model)
        const preprocessMs = performance.now() - t0
        app.metrics.preprocessSeconds.observe(preprocessMs / 1000)
        const results = await Promise.all(
          rows.map((row) => app.batcher.submit(model, row, request.deadline, request.clientGone)),
        )
        request.timings = {
          preprocessMs,
          queueMs: Math.max(...results.map((r) => r.queueMs)),
          inferenceMs: Math.max(...results.map((r) => r.inferenceMs)),
        }
        return results.map((r, i) => ({ score: r.score, tokens: rows[i]!.ids.length, truncated: rows[i]!.truncated }))
      } finally {
        permit.release()
      }
    },
  }
}

/** Fills the media segments of each group (vision graph through the engine, via the media hook). */
export async function resolveMedia(app: FastifyInstance, request: FastifyRequest, model: ModelVersion, groups: Segment[][]): Promise<void> {
  if (!groups.some((g) => g.some((s) => s.kind === 'media'))) return
  const remaining = Math.max(0, Math.ceil(request.deadline - performance.now()))
  const signal = AbortSignal.any([request.clientGone, AbortSignal.timeout(remaining)])
  const scope = mediaScopeOf(request)
  let done: Array<{ preprocessMs: number; inferenceMs: number }>
  try {
    done = await Promise.all(groups.map((g) => resolveSegments(g, app.media, { model, engine: app.engine, signal, scope })))
  } catch (err) {
    // Whatever the resolver threw on abort, the cause is the deadline or the client, and the answer says so.
    if (request.clientGone.aborted) throw new ServiceError('client_closed', 'client closed the request')
    if (signal.aborted) throw new ServiceError('timeout', 'request deadline passed while preparing media')
    throw err
  }
  const inferenceMs = done.reduce((a, d) => a + d.inferenceMs, 0)
  if (inferenceMs > 0) app.metrics.inferenceSeconds.observe({ graph: 'vision' }, inferenceMs / 1000)
}

/** z = (r - mean) / std with the model's training statistics (manifest score.train_stats). */
export function normalizer(model: ModelVersion): (r: number) => number {
  const { mean, std, n } = model.manifest.score.train_stats
  if (!(std > 0) || n === 0) {
    throw new ServiceError('invalid_request', `model ${model.key} has no training statistics; normalize is unavailable`)
  }
  return (r) => (r - mean) / std
}

export function modelRef(model: ModelVersion) {
  return { name: model.name, version: model.version }
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))
}
