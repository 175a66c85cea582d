// The path every scoring route shares, as one plain service object: admit the rows (503 before any work),
// tokenize each distinct message group once, resolve its media, lay each row out for reward.onnx, submit the
// rows to the batcher and await their scores. Routes parse requests and shape responses around it; nothing
// here knows HTTP (the request's deadline, abort signal and upload scope come in as options).
import { performance } from 'node:perf_hooks'
import { resolveSegments, segmentTokens } from '../conversation/media.ts'
import type { EncodedItem, Message, Segment } from '../conversation/types.ts'
import type { Engine } from '../engine/types.ts'
import { ServiceError } from '../errors.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { ModelVersion } from '../models/model-version.ts'
import type { MediaResolver } from '../preprocess/media/types.ts'
import type { Batcher } from '../scheduler/batcher.ts'
import type { ScoredRow, ScoreOptions, ScoreRow, ScoringTimings } from './types.ts'

export interface ScoringDeps {
  batcher: Batcher
  media: MediaResolver
  engine: Engine
  metrics: Metrics
  /** Rows one request may carry (MAX_CLIENT_BATCH_SIZE). */
  maxRows: number
  /** Text characters one request may carry over all its distinct message groups (MAX_REQUEST_CHARS). */
  maxRequestChars: number
}

function textChars(messages: readonly Message[]): number {
  let n = 0
  for (const m of messages) {
    if (typeof m.content === 'string') n += m.content.length
    else for (const p of m.content) if (p.type === 'text') n += p.text.length
  }
  return n
}

export class ScoringService {
  readonly #d: ScoringDeps

  constructor(deps: ScoringDeps) {
    this.#d = deps
  }

  /** 422 for a request with more rows than one request may carry; routes check it before resolving the model. */
  checkRowCount(n: number): void {
    if (n > this.#d.maxRows) throw new ServiceError('invalid_request', `${n} items in one request; the limit is ${this.#d.maxRows}`)
  }

  async score(model: ModelVersion, rows: readonly ScoreRow[], opts: ScoreOptions): Promise<{ rows: ScoredRow[]; timings: ScoringTimings }> {
    this.checkRowCount(rows.length)
    const { batcher, metrics } = this.#d
    const permit = batcher.admit(rows.length)
    try {
      const t0 = performance.now()
      const groups = [...new Set(rows.flat())]
      const chars = groups.reduce((n, g) => n + textChars(g), 0)
      if (chars > this.#d.maxRequestChars) {
        throw new ServiceError('input_too_long', `request has ${chars} characters of text; the limit is ${this.#d.maxRequestChars}`)
      }
      const turns = await model.encoder.turnsBatch(groups)
      const segments = new Map<readonly Message[], Segment[]>(groups.map((g, i) => [g, turns[i]!]))
      await this.#resolveMedia(model, [...segments.values()], opts)
      const encoded: EncodedItem[] = rows.map((row) => model.encoder.finish(...row.map((g) => segments.get(g)!)))
      const preprocessMs = performance.now() - t0
      metrics.preprocessSeconds.observe(preprocessMs / 1000)
      const results = await Promise.all(encoded.map((row) => batcher.submit(model, row, opts.deadline, opts.signal)))
      return {
        rows: results.map((r, i) => ({
          score: r.score,
          tokens: encoded[i]!.ids.length,
          truncated: encoded[i]!.truncated,
          groupTokens: rows[i]!.map((g) => segmentTokens(segments.get(g)!)),
        })),
        timings: {
          preprocessMs,
          queueMs: Math.max(...results.map((r) => r.queueMs)),
          inferenceMs: Math.max(...results.map((r) => r.inferenceMs)),
        },
      }
    } finally {
      permit.release()
    }
  }

  /** Fills the media segments of each group (vision graph through the engine, via the media hook). */
  async #resolveMedia(model: ModelVersion, groups: Segment[][], opts: ScoreOptions): Promise<void> {
    if (!groups.some((g) => g.some((s) => s.kind === 'media'))) return
    const remaining = Math.max(0, Math.ceil(opts.deadline - performance.now()))
    const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(remaining)])
    let done: Array<{ preprocessMs: number; inferenceMs: number }>
    try {
      done = await Promise.all(groups.map((g) => resolveSegments(g, this.#d.media, { model, engine: this.#d.engine, signal, scope: opts.scope })))
    } catch (err) {
      // Whatever the resolver threw on abort, the cause is the deadline or the client, and the answer says so.
      if (opts.signal.aborted) throw new ServiceError('client_closed', 'client closed the request')
      if (signal.aborted) throw new ServiceError('timeout', 'request deadline passed while preparing media')
      throw err
    }
    const inferenceMs = done.reduce((a, d) => a + d.inferenceMs, 0)
    if (inferenceMs > 0) this.#d.metrics.inferenceSeconds.observe({ graph: 'vision' }, inferenceMs / 1000)
  }
}
