// The path every scoring route shares, as one plain service object: admit the rows (503 before any work),
// tokenize each distinct message group once, resolve its media, lay each row out for reward.onnx, submit the
// rows to the batcher and await their scores. Routes parse requests and shape responses around it; nothing
// here knows HTTP (the request's deadline, abort signal and upload scope come in as options).
// Image embeddings stay in the engine: blocks carry handles, vision runs go through the batcher's vision queue,
// and the request pins its handles there (its lease) until it is scored.
import { performance } from 'node:perf_hooks'
import { resolveSegments, segmentTokens } from '../conversation/media.ts'
import type { EncodedItem, Message, Segment } from '../conversation/types.ts'
import { EmbeddingsMissing } from '../engine/embedding-store.ts'
import type { Engine } from '../engine/types.ts'
import { ServiceError } from '../errors.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { ModelVersion } from '../models/model-version.ts'
import type { MediaResolver, VisionRunner } from '../preprocess/media/types.ts'
import type { Batcher, JobResult } from '../scheduler/batcher.ts'
import type { ScoredRow, ScoreOptions, ScoreRow, ScoringTimings } from './types.ts'

/** Image and video parts of a message group (the published hd_num rule and placement count both). */
function mediaCount(messages: readonly Message[]): number {
  let n = 0
  for (const m of messages) if (typeof m.content !== 'string') for (const p of m.content) if (p.type !== 'text') n++
  return n
}

export interface ScoringDeps {
  batcher: Batcher
  media: MediaResolver
  engine: Engine
  metrics: Metrics
  /** Rows one request may carry (MAX_CLIENT_BATCH_SIZE). */
  maxRows: number
  /** Text characters one request may carry over all its distinct message groups (MAX_REQUEST_CHARS). */
  maxRequestChars: number
  /** Retry-After seconds of a 503 (RETRY_AFTER_S). */
  retryAfterS: number
}

function textChars(messages: readonly Message[]): number {
  let n = 0
  for (const m of messages) {
    if (typeof m.content === 'string') n += m.content.length
    else for (const p of m.content) if (p.type === 'text') n += p.text.length
  }
  return n
}

/** One score() call's pins in the engine's embedding store; `used` once any of its groups has media. */
interface Lease {
  readonly id: number
  used: boolean
}

/** Handles of the media blocks in these segment lists. */
function handlesOf(groups: Iterable<{ segs: Segment[] }>): string[] {
  const out = new Set<string>()
  for (const g of groups) for (const s of g.segs) if (s.kind === 'media' && s.block?.handle !== undefined) out.add(s.block.handle)
  return [...out]
}

export class ScoringService {
  readonly #d: ScoringDeps
  /** Engine embedding-store leases: one per score() call. */
  #nextLease = 1

  constructor(deps: ScoringDeps) {
    this.#d = deps
  }

  /** 422 for a request with more rows than one request may carry; routes check it before resolving the model. */
  checkRowCount(n: number): void {
    if (n > this.#d.maxRows) throw new ServiceError('invalid_request', `${n} items in one request; the limit is ${this.#d.maxRows}`)
  }

  async score(model: ModelVersion, rows: readonly ScoreRow[], opts: ScoreOptions): Promise<{ rows: ScoredRow[]; timings: ScoringTimings }> {
    const piece = opts.pieces ? Math.max(1, Math.min(opts.pieces.rows, rows.length)) : rows.length
    if (!opts.pieces) this.checkRowCount(rows.length)
    const { batcher, metrics } = this.#d
    // One piece's worth of room, reserved before any work (fast 503 when full) and kept to the end.
    const permit = batcher.admit(piece)
    // `used` once a group with media is resolved: a text-only request pins nothing, and releasing it anyway cost
    // every request one more message to the engine worker and a wake-up of its thread
    const lease: Lease = { id: this.#nextLease++, used: false }
    try {
      const t0 = performance.now()
      // A group is tokenized (and its media resolved) once per media count of the rows it is in: the count
      // decides the ixc placement of a single item and hd_num, and is nearly always the same for all its rows.
      // Each piece's new groups are tokenized in one call, off the event loop (the tokenizer's worker thread).
      const segments = new Map<readonly Message[], Map<number, Segment[]>>()
      const rowGroups: Array<Array<{ segs: Segment[]; n: number }>> = []
      for (let i = 0; i < rows.length; i += piece) {
        const slice = rows.slice(i, i + piece)
        // text bounded before any tokenizing: per request, or per piece of a request admitted by token cost
        const chars = [...new Set(slice.flat())].reduce((n, g) => n + textChars(g), 0)
        if (chars > this.#d.maxRequestChars) {
          const where = opts.pieces ? `${slice.length} samples of the request have` : 'request has'
          throw new ServiceError('input_too_long', `${where} ${chars} characters of text; the limit is ${this.#d.maxRequestChars}`)
        }
        const counts = slice.map((row) => row.reduce((a, g) => a + mediaCount(g), 0))
        const fresh: Array<{ group: readonly Message[]; n: number }> = []
        slice.forEach((row, j) => {
          for (const group of row) {
            let byCount = segments.get(group)
            if (!byCount) segments.set(group, (byCount = new Map()))
            if (!byCount.has(counts[j]!)) {
              byCount.set(counts[j]!, [])
              fresh.push({ group, n: counts[j]! })
            }
          }
        })
        const turns = await model.encoder.turnsBatch(
          fresh.map((f) => f.group),
          fresh.map((f) => f.n),
        )
        fresh.forEach((f, k) => segments.get(f.group)!.set(f.n, turns[k]!))
        slice.forEach((row, j) => rowGroups.push(row.map((group) => ({ segs: segments.get(group)!.get(counts[j]!)!, n: counts[j]! }))))
      }
      if (opts.pieces) this.#checkTokenCost(model, rowGroups, opts.pieces.maxTokens)
      let preprocessMs = performance.now() - t0
      const scored: ScoredRow[] = []
      let queueMs = 0
      let inferenceMs = 0
      const resolved = new Set<Segment[]>()
      for (let i = 0; i < rows.length; i += piece) {
        const slice = rowGroups.slice(i, i + piece)
        const t1 = performance.now()
        // Each distinct segment list once (rows sharing a prompt share its segments): one vision run per item.
        const fresh: Array<{ segs: Segment[]; n: number }> = []
        for (const g of slice.flat()) {
          if (resolved.has(g.segs)) continue
          resolved.add(g.segs)
          fresh.push(g)
        }
        await this.#resolveMedia(model, fresh, opts, lease)
        let encoded: EncodedItem[] = slice.map((row) => model.encoder.finish(...row.map((g) => g.segs)))
        preprocessMs += performance.now() - t1
        let results: JobResult[]
        try {
          results = await this.#submit(model, encoded, opts, lease.id)
        } catch (err) {
          if (!(err instanceof EmbeddingsMissing)) throw err
          // The engine's store dropped images this piece uses between our cache hit and the batch (a hit is not
          // pinned until our retain reaches the engine). The bytes are still at hand: compute them again (now
          // pinned by this request's own vision run, so they stay) and score the piece once more.
          encoded = await this.#recompute(model, slice, err.handles, opts, lease)
          results = await this.#submit(model, encoded, opts, lease.id).catch((e: unknown) => {
            if (!(e instanceof EmbeddingsMissing)) throw e
            throw new ServiceError('overloaded', 'image embeddings were evicted from the engine before scoring; retry later', {
              'retry-after': String(this.#d.retryAfterS),
            })
          })
        }
        results.forEach((r, j) => {
          scored.push({
            score: r.score,
            tokens: encoded[j]!.ids.length,
            truncated: encoded[j]!.truncated,
            groupTokens: slice[j]!.map((g) => segmentTokens(g.segs)),
          })
          queueMs = Math.max(queueMs, r.queueMs)
          inferenceMs = Math.max(inferenceMs, r.inferenceMs)
        })
      }
      metrics.preprocessSeconds.observe(preprocessMs / 1000)
      return { rows: scored, timings: { preprocessMs, queueMs, inferenceMs } }
    } finally {
      if (lease.used) this.#d.engine.releaseImages(lease.id)
      permit.release()
    }
  }

  /** The media of the groups that use `handles` again (their cache entries forgotten), and the piece's rows. */
  async #recompute(
    model: ModelVersion,
    slice: ReadonlyArray<ReadonlyArray<{ segs: Segment[]; n: number }>>,
    handles: readonly string[],
    opts: ScoreOptions,
    lease: Lease,
  ): Promise<EncodedItem[]> {
    this.#d.media.forget?.(handles)
    const missing = new Set(handles)
    const stale = new Set<{ segs: Segment[]; n: number }>()
    const seen = new Set<Segment[]>()
    for (const g of slice.flat()) {
      if (seen.has(g.segs) || !handlesOf([g]).some((h) => missing.has(h))) continue
      seen.add(g.segs)
      stale.add(g)
    }
    await this.#resolveMedia(model, [...stale], opts, lease)
    return slice.map((row) => model.encoder.finish(...row.map((g) => g.segs)))
  }

  /** Queues the rows. Those that share a prefix (a prompt's N responses, a response cut after each step) run as
   *  packed rows of the model's reward_packed.onnx when it has one: the batcher groups them in its queue, with
   *  other requests' rows too unless PACK_ACROSS_REQUESTS is off. Same scores either way (to float rounding): a
   *  branch sees exactly its own row's ids, media and positions. `request`: this request's share group. */
  async #submit(model: ModelVersion, rows: EncodedItem[], opts: ScoreOptions, request: number): Promise<JobResult[]> {
    const packable = model.graphs.rewardPacked !== undefined && this.#d.engine.runRewardPacked !== undefined && opts.packed !== false
    return Promise.all(rows.map((row) => this.#d.batcher.submit(model, row, opts.deadline, opts.signal, packable ? request : undefined)))
  }

  /** 413 when the rows' text tokens (each row capped at max_seq_len, which truncation enforces) exceed the budget. */
  #checkTokenCost(model: ModelVersion, rows: ReadonlyArray<ReadonlyArray<{ segs: Segment[] }>>, maxTokens: number): void {
    const cap = model.encoder.maxSeqLen
    let cost = 0
    for (const row of rows) cost += Math.min(cap, row.reduce((n, g) => n + segmentTokens(g.segs), 0))
    if (cost > maxTokens) {
      throw new ServiceError(
        'payload_too_large',
        `request carries ${cost} tokens over ${rows.length} samples; the limit is ${maxTokens} (RLHF_MAX_REQUEST_TOKENS): send it in smaller requests`,
      )
    }
  }

  /** Fills the media segments of each group (vision runs queued in the batcher, via the media hook) and pins
   *  their handles in the engine for `lease`. */
  async #resolveMedia(model: ModelVersion, groups: Array<{ segs: Segment[]; n: number }>, opts: ScoreOptions, lease: Lease): Promise<void> {
    if (!groups.some((g) => g.segs.some((s) => s.kind === 'media'))) return
    lease.used = true
    const remaining = Math.max(0, Math.ceil(opts.deadline - performance.now()))
    const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(remaining)])
    const { batcher, engine } = this.#d
    const vision: VisionRunner = (handle, image, height, width, sig) =>
      batcher.submitVision(model, { handle, lease: lease.id, image, height, width }, opts.deadline, sig)
    try {
      await Promise.all(
        groups.map((g) => resolveSegments(g.segs, this.#d.media, { model, engine, vision, signal, scope: opts.scope, mediaCount: g.n })),
      )
    } catch (err) {
      // Whatever the resolver threw on abort, the cause is the deadline or the client, and the answer says so.
      if (opts.signal.aborted) throw new ServiceError('client_closed', 'client closed the request')
      if (signal.aborted) throw new ServiceError('timeout', 'request deadline passed while preparing media')
      throw err
    }
    // cache hits were not pinned by a vision run of ours (ours are, by lease): pin them before their batch
    engine.retainImages(lease.id, handlesOf(groups))
  }
}
