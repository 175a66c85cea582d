// The one batching loop (TEI's Infer + queue): admission permits, a FIFO queue, the pure policy deciding what
// runs next, and the engine call. Handlers admit first (cheap, before any tokenization or media work), then
// submit encoded rows and await their scores. A failing batch rejects only its own jobs. Vision runs (one
// image each) are a second queue with its own budget (MAX_PENDING_IMAGES) in the same loop: the engine runs one
// thing at a time, and the lane policy (takeNextAcross) serves the queues oldest first. Before each decision,
// queued rows that share a prefix are viewed as one packed row of reward_packed.onnx (coalesce.ts): a request's
// own rows, and with packAcrossRequests other requests' rows too, so a GRPO group sent as separate calls costs
// what it costs in one call.
import { performance } from 'node:perf_hooks'
import { ServiceError } from '../errors.ts'
import { EmbeddingsMissing } from '../engine/embedding-store.ts'
import type { Engine, StoredVision } from '../engine/types.ts'
import { modelLabels, type Metrics } from '../metrics/metrics.ts'
import { paddedCost, takeNextAcross } from './batch-policy.ts'
import { coalesceQueue, isCoalesced, type Coalesced } from './coalesce.ts'
import { packRewardBatch } from './pack.ts'
import { packPackedBatch, packedLength, type PackedRow } from './pack-shared.ts'
import type { BatchLimits, BatchModel, JobTimings, QueuedJob, EncodedRow } from './types.ts'

export interface BatcherOptions {
  engine: Engine
  limits: BatchLimits
  pipelineDepth: number
  /** Pack queued rows of different requests that share a prefix together (PACK_ACROSS_REQUESTS); a request's
   *  own rows are packed either way. */
  packAcrossRequests?: boolean
  maxPendingItems: number
  /** Images admitted to the vision queue at once (queued + running); beyond it submitVision answers 503. */
  maxPendingImages: number
  retryAfterS: number
  metrics: Metrics
  log: { error(o: object, msg: string): void }
}

export interface JobResult extends JobTimings {
  score: number
}

/** One transformed image for vision.onnx; its embeddings stay in the engine under `handle`, pinned for `lease`. */
export interface VisionWork {
  handle: string
  lease: number
  image: Float32Array
  height: number
  width: number
}

export interface VisionResult extends StoredVision {
  queueMs: number
}

export interface Permit {
  release(): void
}

interface Job extends QueuedJob {
  model: BatchModel
  row: EncodedRow | null
  /** a reward_packed.onnx row (group jobs, batch key `<model key>#packed`): never shares a batch with plain rows */
  packed: PackedRow | null
  /** a vision-queue job (one image) */
  image: VisionWork | null
  /** a plain row that may be packed with queued rows of this key (coalesce.ts; the model's key, or the model's
   *  and the request's without packAcrossRequests); null: never packed */
  shareKey: string | null
  /** a view job standing for queued rows packed together: branch k is members[k]'s row; answers go to them */
  members?: Job[]
  /** vision: it counts in pendingImages until it has run or left the queue */
  holdsImage: boolean
  running: boolean
  resolve(r: JobResult & { scores?: number[] } & Partial<VisionResult>): void
  reject(e: Error): void
  timer: NodeJS.Timeout | undefined
  onAbort: (() => void) | undefined
  signal: AbortSignal | undefined
}

/** One image per vision run (vision.onnx takes [1, 3, H, W]), never held back for company. */
const VISION_LIMITS = { maxBatchTokens: Infinity, maxBatchSize: 1, maxQueueDelayMs: 0 }

export class Batcher {
  readonly #o: BatcherOptions
  #queue: Job[] = []
  #visionQueue: Job[] = []
  #pending = 0
  #pendingImages = 0
  #inflight = 0
  #timer: NodeJS.Timeout | undefined
  #closed = false
  #pumpScheduled = false

  constructor(opts: BatcherOptions) {
    this.#o = opts
  }

  get pendingItems(): number {
    return this.#pending
  }

  get queueDepth(): number {
    return this.#queue.length
  }

  get visionQueueDepth(): number {
    return this.#visionQueue.length
  }

  get pendingImages(): number {
    return this.#pendingImages
  }

  /** Reserves room for `n` items or throws 503 overloaded at once (fail fast, like TEI's try_acquire). */
  admit(n: number): Permit {
    if (this.#closed) throw new ServiceError('shutting_down', 'server is closed', { 'retry-after': String(this.#o.retryAfterS) })
    if (this.#pending + n > this.#o.maxPendingItems) {
      this.#o.metrics.rejected.inc({ reason: 'overloaded' })
      throw new ServiceError('overloaded', `server is at capacity (${this.#o.maxPendingItems} items); retry later`, {
        'retry-after': String(this.#o.retryAfterS),
      })
    }
    this.#pending += n
    this.#o.metrics.pendingItems.set(this.#pending)
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        this.#pending -= n
        this.#o.metrics.pendingItems.set(this.#pending)
      },
    }
  }

  /** Queues one encoded row of `model`. Rejects with 504 timeout at `deadline` (performance.now() clock), and
   *  with a client_gone error as soon as `signal` aborts; either way the row is dropped if it has not run.
   *  `request` (the model has reward_packed.onnx and the caller allows it): the row may run packed with the
   *  queued rows it shares a prefix with — of the same request, or of any request with packAcrossRequests. */
  submit(model: BatchModel, row: EncodedRow, deadline: number, signal?: AbortSignal, request?: number): Promise<JobResult> {
    const shareKey = request === undefined ? null : this.#o.packAcrossRequests ? model.key : `${model.key}#${request}`
    return this.#enqueue(model, row, null, deadline, signal, shareKey)
  }

  /** Queues one vision run in the vision queue: admitted at once or 503 overloaded (its own budget,
   *  MAX_PENDING_IMAGES: a cache miss costs a whole vision run, a hit nothing, so only misses are counted);
   *  same deadline and abort rules as submit(). `work.image`'s buffer goes to the engine. */
  async submitVision(model: BatchModel, work: VisionWork, deadline: number, signal?: AbortSignal): Promise<VisionResult> {
    if (this.#closed) throw new ServiceError('shutting_down', 'server is closed', { 'retry-after': String(this.#o.retryAfterS) })
    if (this.#pendingImages + 1 > this.#o.maxPendingImages) {
      this.#o.metrics.rejected.inc({ reason: 'vision_overloaded' })
      throw new ServiceError('overloaded', `vision queue is at capacity (${this.#o.maxPendingImages} images); retry later`, {
        'retry-after': String(this.#o.retryAfterS),
      })
    }
    const r = await this.#enqueue(model, null, work, deadline, signal)
    return { tokens: r.tokens!, dim: r.dim!, evicted: r.evicted!, inferenceMs: r.inferenceMs, queueMs: r.queueMs, image: r.image }
  }

  #enqueue(model: BatchModel, row: EncodedRow | null, image: VisionWork | null, deadline: number, signal?: AbortSignal, shareKey: string | null = null) {
    return new Promise<JobResult & { scores?: number[] } & Partial<VisionResult>>((resolve, reject) => {
      const now = performance.now()
      const job: Job = {
        batchKey: model.key,
        length: row ? row.ids.length : 1,
        tokenBudget: model.batchTokens,
        enqueuedAt: now,
        deadline,
        cancelled: false,
        model,
        row,
        packed: null,
        image,
        shareKey,
        holdsImage: false,
        running: false,
        timer: undefined,
        onAbort: undefined,
        signal,
        resolve: (r) => {
          this.#settle(job)
          resolve(r)
        },
        reject: (e) => {
          this.#settle(job)
          reject(e)
        },
      }
      if (signal?.aborted) {
        this.#o.metrics.rejected.inc({ reason: 'client_gone' })
        return reject(new ServiceError('client_closed', 'client closed the request'))
      }
      job.timer = setTimeout(() => {
        if (job.cancelled) return
        this.#o.metrics.rejected.inc({ reason: 'timeout' })
        job.reject(new ServiceError('timeout', 'request deadline passed before it was scored'))
      }, Math.max(0, deadline - now))
      if (signal) {
        job.onAbort = () => {
          if (job.cancelled) return
          this.#o.metrics.rejected.inc({ reason: 'client_gone' })
          job.reject(new ServiceError('client_closed', 'client closed the request'))
        }
        signal.addEventListener('abort', job.onAbort, { once: true })
      }
      if (image) {
        job.holdsImage = true
        this.#pendingImages++
        this.#visionQueue.push(job)
      } else this.#queue.push(job)
      this.#gauges()
      this.#schedulePump()
    })
  }

  /** Stops admitting (app close); queued and running jobs still finish. Graceful shutdown does not call this
   *  early: requests that arrived before the signal must still be admitted (see server.ts). */
  close(): void {
    this.#closed = true
  }

  #settle(job: Job): void {
    job.cancelled = true
    if (job.timer) clearTimeout(job.timer)
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort)
    // a cancelled image leaves the budget at once (it will never run); a running one when its run is over
    if (!job.running) this.#releaseImage(job)
  }

  #releaseImage(job: Job): void {
    if (!job.holdsImage) return
    job.holdsImage = false
    this.#pendingImages--
    this.#gauges()
  }

  #gauges(): void {
    const m = this.#o.metrics
    m.queueDepth.set(this.#queue.length)
    m.visionQueueDepth.set(this.#visionQueue.length)
    m.pendingImages.set(this.#pendingImages)
  }

  /** Pumps once per microtask turn, so that all rows submitted in the same tick (one request's items, or
   *  requests parsed together) are seen by the policy together instead of the first one running alone. */
  #schedulePump(): void {
    if (this.#pumpScheduled) return
    this.#pumpScheduled = true
    queueMicrotask(() => {
      this.#pumpScheduled = false
      this.#pump()
    })
  }

  #pump(): void {
    if (this.#timer) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    while (this.#inflight < this.#o.pipelineDepth && this.#queue.length + this.#visionQueue.length > 0) {
      const queued = this.#queue
      const coalesced = coalesceQueue(queued)
      const view = coalesced === queued ? queued : coalesced.map((x) => (isCoalesced(x) ? groupJob(x) : x))
      const lanes = [
        { queue: this.#visionQueue, limits: VISION_LIMITS },
        { queue: view, limits: this.#o.limits },
      ]
      const next = takeNextAcross(lanes, performance.now())
      // Cancelled and expired jobs were already answered by their own abort/timeout path; just forget them.
      this.#visionQueue = next.queues[0] as Job[]
      if (view === queued) this.#queue = next.queues[1] as Job[]
      else {
        // rows of a group the policy did not take stay queued one by one, in arrival order: the next view
        // groups them again, with whatever arrived meanwhile
        const out = new Set([...next.cancelled, ...next.expired, ...(next.lane === 1 ? next.batch : [])].flatMap((j) => j.members ?? [j]))
        this.#queue = queued.filter((j) => !j.cancelled && !out.has(j))
      }
      for (const j of next.expired) j.reject(new ServiceError('timeout', 'request deadline passed before it was scored'))
      this.#gauges()
      if (next.lane === null) {
        if (next.waitMs !== null) this.#timer = setTimeout(() => this.#pump(), next.waitMs)
        return
      }
      this.#inflight++
      const run = next.lane === 0 ? this.#runVision(next.batch[0]!) : this.#run(next.batch)
      void run.finally(() => {
        this.#inflight--
        this.#pump()
      })
    }
  }

  async #runVision(job: Job): Promise<void> {
    const m = this.#o.metrics
    const start = performance.now()
    m.visionQueueSeconds.observe((start - job.enqueuedAt) / 1000)
    job.running = true
    try {
      const w = job.image!
      const out = await this.#o.engine.encodeImage(job.model.key, w.handle, w.lease, w.image, w.height, w.width)
      m.inferenceSeconds.observe({ graph: 'vision' }, out.inferenceMs / 1000)
      if (!job.cancelled) job.resolve({ ...out, queueMs: start - job.enqueuedAt, score: NaN, batchSize: 1 })
    } catch (err) {
      this.#o.log.error({ err, model: job.model.key }, 'vision run failed')
      if (!job.cancelled) job.reject(new ServiceError('engine_error', 'inference failed'))
    } finally {
      job.running = false
      this.#releaseImage(job)
    }
  }

  async #run(batch: Job[]): Promise<void> {
    const m = this.#o.metrics
    const model = batch[0]!.model
    const start = performance.now()
    for (const j of batch) for (const x of j.members ?? [j]) m.queueSeconds.observe((start - x.enqueuedAt) / 1000)
    m.batchSize.observe(batch.length)
    m.batchTokens.observe(paddedCost(batch))
    try {
      const { pad_id: padId } = model.manifest.tokenizer
      const dim = model.manifest.config.hidden_size
      const packed = batch[0]!.packed !== null
      let out: { scores: Float32Array; inferenceMs: number }
      let perRow: number
      if (packed) {
        const feeds = packPackedBatch(batch.map((j) => j.packed!), padId, dim)
        if (!this.#o.engine.runRewardPacked) throw new Error('engine has no packed reward graph (this is a bug)')
        out = await this.#o.engine.runRewardPacked(model.key, feeds)
        perRow = feeds.branches
      } else {
        out = await this.#o.engine.runReward(model.key, packRewardBatch(batch.map((j) => j.row!), padId, dim))
        perRow = 1
      }
      m.inferenceSeconds.observe({ graph: packed ? 'reward_packed' : 'reward' }, out.inferenceMs / 1000)
      let tokens = 0
      let items = 0
      batch.forEach((j, i) => {
        const n = j.packed ? j.packed.branches.length : 1
        const scores = Array.from(out.scores.subarray(i * perRow, i * perRow + n))
        tokens += j.length
        items += n
        // a non-finite score fails its own row only (prom-client would throw on it and fail the whole batch)
        for (const s of scores) if (Number.isFinite(s)) m.score.observe(modelLabels(model), s)
        if (j.cancelled) return // answered already (timeout / client gone); the work is done anyway
        // rows of other requests packed together: each member checks its own score (groupJob)
        const bad = j.members ? undefined : scores.find((s) => !Number.isFinite(s))
        if (bad !== undefined) {
          j.reject(nonFinite(bad))
          return
        }
        const timings = { queueMs: start - j.enqueuedAt, inferenceMs: out.inferenceMs, batchSize: batch.length }
        j.resolve({ score: scores[0]!, ...(j.packed ? { scores } : {}), ...timings })
      })
      m.tokensScored.inc(modelLabels(model), tokens)
      m.itemsScored.inc(modelLabels(model), items)
    } catch (err) {
      if (err instanceof EmbeddingsMissing) return this.#withoutMissing(batch, err)
      this.#o.log.error({ err, model: model.key, rows: batch.length }, 'batch failed')
      for (const j of batch) {
        if (!j.cancelled) j.reject(new ServiceError('engine_error', 'inference failed'))
      }
    }
  }

  /** The engine no longer held some image embeddings the batch named (evicted since their vision run): the jobs
   *  that need them fail with EmbeddingsMissing (their request computes them again), the others run again. */
  #withoutMissing(batch: Job[], err: EmbeddingsMissing): Promise<void> {
    const missing = new Set(err.handles)
    const needs = (j: Job) => {
      const rows = j.packed ? [j.packed.trunk, ...j.packed.branches.map((b) => b.row)] : [j.row!]
      return rows.some((r) => r.images.some((img) => img.block.handle !== undefined && missing.has(img.block.handle)))
    }
    const rest: Job[] = []
    for (const j of batch) {
      if (!needs(j)) rest.push(j)
      else if (!j.cancelled) j.reject(new EmbeddingsMissing(err.handles))
    }
    // every batch naming a missing handle loses a job here, so this ends
    return rest.length > 0 && rest.length < batch.length ? this.#run(rest) : Promise.resolve()
  }
}

/** The policy's view of queued rows packed together: one job of the packed batch key, as old as its oldest
 *  member, live while any member is, kept until the last member's deadline (each member still times out on its
 *  own timer); its answer goes to each member still waiting, with that member's own queue time. */
function groupJob(g: Coalesced<Job>): Job {
  const { members, packed } = g
  const first = members[0]!
  const enqueuedAt = Math.min(...members.map((m) => m.enqueuedAt))
  return {
    batchKey: `${first.model.key}#packed`,
    length: packedLength(packed),
    tokenBudget: first.tokenBudget,
    enqueuedAt,
    deadline: Math.max(...members.map((m) => m.deadline)),
    get cancelled() {
      return members.every((m) => m.cancelled)
    },
    set cancelled(_: boolean) {
      // answered through its members (each settles itself)
    },
    model: first.model,
    row: null,
    packed,
    image: null,
    shareKey: null,
    members,
    holdsImage: false,
    running: false,
    timer: undefined,
    onAbort: undefined,
    signal: undefined,
    resolve: (r) =>
      members.forEach((m, k) => {
        const score = r.scores![k]!
        if (m.cancelled) return
        if (!Number.isFinite(score)) m.reject(nonFinite(score))
        else m.resolve({ score, queueMs: r.queueMs + enqueuedAt - m.enqueuedAt, inferenceMs: r.inferenceMs, batchSize: r.batchSize })
      }),
    reject: (e) => {
      for (const m of members) if (!m.cancelled) m.reject(e)
    },
  }
}

function nonFinite(score: number): ServiceError {
  return new ServiceError('engine_error', `model returned a non-finite score (${score})`)
}
