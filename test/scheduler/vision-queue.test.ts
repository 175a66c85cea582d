// The batcher's vision queue: vision runs are admitted against their own budget (MAX_PENDING_IMAGES), queued,
// counted in metrics, and served with reward rows oldest first; a batch naming embeddings the engine no longer
// holds fails only the rows that need them.
import t from 'tap'
import { Batcher, type BatcherOptions } from '../../src/scheduler/batcher.ts'
import { EmbeddingsMissing } from '../../src/engine/embedding-store.ts'
import type { VisionOutput } from '../../src/engine/types.ts'
import { ServiceError } from '../../src/errors.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import type { BatchModel, EncodedRow } from '../../src/scheduler/types.ts'
import { FakeEngine, fakeRowScore } from '../helpers/fake-engine.ts'

const model: BatchModel = { key: 'm/1', name: 'm', version: 1, manifest: { tokenizer: { pad_id: 0 }, config: { hidden_size: 4 } } }
const far = () => performance.now() + 60_000
const tick = () => new Promise((r) => setImmediate(r))

/** Vision runs that can be held open, and the order of every engine run. */
class Engine extends FakeEngine {
  order: string[] = []
  #gate: Promise<void> | null = null
  #open: (() => void) | null = null
  visionStarted = 0
  holdVision(): void {
    this.#gate = new Promise((r) => (this.#open = r))
  }
  releaseVision(): void {
    this.#open?.()
    this.#gate = null
  }
  override async runVision(_key: string, image: Float32Array): Promise<VisionOutput> {
    this.visionStarted++
    this.order.push(`vision ${image[0]}`)
    if (this.#gate) await this.#gate
    return { embeds: new Float32Array(2 * 4).fill(image[0]!), tokens: 2, dim: 4, inferenceMs: 0.2 }
  }
}

function setup(o: Partial<BatcherOptions> = {}) {
  const engine = new Engine()
  const metrics = createMetrics()
  const b = new Batcher({
    engine,
    limits: { maxBatchTokens: 1000, maxBatchSize: 8, maxQueueDelayMs: 0 },
    pipelineDepth: 1,
    maxPendingItems: 16,
    maxPendingImages: 2,
    retryAfterS: 5,
    metrics,
    log: { error: () => {} },
    ...o,
  })
  const metric = async (name: string) => (await metrics.registry.metrics()).split('\n').filter((l) => l.startsWith(name)).join('\n')
  return { b, engine, metric }
}
const work = (n: number) => ({ handle: `h${n}`, lease: 0, image: new Float32Array(12).fill(n), height: 2, width: 2 })

t.test('vision runs are admitted against MAX_PENDING_IMAGES, queued, and counted', async (t) => {
  const { b, engine, metric } = setup()
  engine.holdVision()
  const first = b.submitVision(model, work(1), far())
  const second = b.submitVision(model, work(2), far())
  const third = b.submitVision(model, work(3), far()).catch((e: unknown) => e)
  const e = (await third) as ServiceError
  t.equal(e.code, 'overloaded')
  t.same(e.headers, { 'retry-after': '5' })
  t.match(e.message, /vision queue is at capacity \(2 images\)/)
  await tick()
  t.equal(engine.visionStarted, 1, 'one image at a time')
  t.equal(b.visionQueueDepth, 1)
  t.equal(b.pendingImages, 2)
  t.match(await metric('scorer_vision_pending_images'), /scorer_vision_pending_images 2/)
  t.match(await metric('scorer_vision_queue_depth'), /scorer_vision_queue_depth 1/)
  t.match(await metric('scorer_rejected_total'), /reason="vision_overloaded"} 1/)
  t.equal(b.pendingItems, 0, 'the reward budget is not touched')
  engine.releaseVision()
  const [r1, r2] = await Promise.all([first, second])
  t.same([r1.tokens, r1.dim, r2.tokens], [2, 4, 2])
  t.ok(r2.queueMs >= 0)
  t.equal(b.pendingImages, 0)
  t.ok(engine.store.has('h1') && engine.store.has('h2'), 'the embeddings stay in the engine')
  t.match(await metric('scorer_vision_pending_images'), /scorer_vision_pending_images 0/)
  t.match(await metric('scorer_vision_queue_seconds_count'), / 2$/)
  t.match(await metric('scorer_inference_seconds_count'), /graph="vision"} 2$/)
  t.equal((await b.submitVision(model, work(4), far())).tokens, 2, 'room again')
})

t.test('a vision job whose client left is dropped from the queue and gives its room back at once', async (t) => {
  const { b, engine } = setup()
  engine.holdVision()
  const running = b.submitVision(model, work(1), far())
  const ac = new AbortController()
  const gone = b.submitVision(model, work(2), far(), ac.signal).catch((e: unknown) => e)
  await tick()
  ac.abort()
  t.equal(((await gone) as ServiceError).code, 'client_closed')
  t.equal(b.pendingImages, 1)
  engine.releaseVision()
  await running
  await tick()
  t.same(engine.order, ['vision 1'], 'the abandoned image never ran')
})

t.test('vision and reward work share the engine oldest first', async (t) => {
  const { b, engine } = setup()
  engine.holdVision()
  const v1 = b.submitVision(model, work(1), far())
  await tick()
  const row: EncodedRow = { ids: Int32Array.from([5, 6]), images: [] }
  const r = b.submit(model, row, far())
  await new Promise((res) => setTimeout(res, 2))
  const v2 = b.submitVision(model, work(2), far())
  const run = engine.runReward.bind(engine)
  engine.runReward = (k, f) => (engine.order.push('reward'), run(k, f))
  engine.releaseVision()
  await Promise.all([v1, r, v2])
  t.same(engine.order, ['vision 1', 'reward', 'vision 2'])
})

t.test('a batch naming evicted embeddings fails only the rows that need them', async (t) => {
  const { b, engine } = setup()
  await b.submitVision(model, work(7), far())
  const img = (handle: string) => [{ start: 1, block: { tokens: 2, dim: 4, handle } }]
  const kept: EncodedRow = { ids: Int32Array.from([1, 0, 0, 2]), images: img('h7') }
  const lost: EncodedRow = { ids: Int32Array.from([1, 0, 0, 3]), images: img('gone') }
  const [a, c] = await Promise.allSettled([b.submit(model, kept, far()), b.submit(model, lost, far())])
  t.equal(a.status, 'fulfilled')
  if (a.status === 'fulfilled') t.equal(a.value.score, Math.fround(fakeRowScore([1, 0, 0, 2], 7 + 7)))
  t.equal(c.status, 'rejected')
  if (c.status === 'rejected') {
    t.ok(c.reason instanceof EmbeddingsMissing)
    t.same((c.reason as EmbeddingsMissing).handles, ['gone'])
  }
  t.same(engine.rowsRun, [[1, 0, 0, 2]], 'the kept row ran (again, alone); the other never did')
})
