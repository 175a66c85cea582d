// The Batcher on its own (no HTTP): admission edges, settle paths, pipelining, metrics and per-batch failure.
// Written against the mutants test/scheduler/batcher.test.ts (HTTP level) lets live (npm run test:mutation).
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { ServiceError } from '../../src/errors.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import { Batcher, type BatcherOptions } from '../../src/scheduler/batcher.ts'
import type { BatchModel, EncodedRow } from '../../src/scheduler/types.ts'
import type { RewardFeeds, RewardOutput } from '../../src/engine/types.ts'
import { FakeEngine, fakeRowScore } from '../helpers/fake-engine.ts'

const model = (key = 'm/1', batchTokens?: number): BatchModel => ({
  key,
  name: key.split('/')[0]!,
  version: Number(key.split('/')[1]),
  batchTokens,
  manifest: { tokenizer: { pad_id: 0 }, config: { hidden_size: 4 } },
})
const row = (...ids: number[]): EncodedRow => ({ ids: Int32Array.from(ids), images: [] })
const far = () => performance.now() + 60_000
const tick = () => new Promise((r) => setImmediate(r))

function setup(o: Partial<BatcherOptions> = {}, engine = new FakeEngine()) {
  const metrics = createMetrics()
  const errors: Array<{ o: object; msg: string }> = []
  const b = new Batcher({
    engine,
    limits: { maxBatchTokens: 1000, maxBatchSize: 8, maxQueueDelayMs: 0 },
    pipelineDepth: 1,
    maxPendingItems: 4,
    maxPendingImages: 2,
    retryAfterS: 7,
    metrics,
    log: { error: (o, msg) => errors.push({ o, msg }) },
    ...o,
  })
  const metric = async (name: string) => (await metrics.registry.metrics()).split('\n').filter((l) => l.startsWith(name)).join('\n')
  return { b, engine, metrics, errors, metric }
}

async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p
  } catch (e) {
    if (e instanceof ServiceError) return e
    throw e
  }
  throw new Error('resolved; expected a rejection')
}

t.test('admit: exactly maxPendingItems fits, one more is 503 overloaded with Retry-After', async (t) => {
  const { b, metric } = setup()
  const p = b.admit(4)
  t.equal(b.pendingItems, 4)
  t.match(await metric('scorer_pending_items'), /scorer_pending_items 4/)
  const e = (() => {
    try {
      b.admit(1)
    } catch (err) {
      return err as ServiceError
    }
  })()
  t.equal(e?.code, 'overloaded')
  t.equal(e?.status, 503)
  t.same(e?.headers, { 'retry-after': '7' })
  t.match(e?.message, /capacity \(4 items\)/)
  t.match(await metric('scorer_rejected_total'), /reason="overloaded"} 1/)
  p.release()
  p.release() // twice: released once only
  t.equal(b.pendingItems, 0)
  t.match(await metric('scorer_pending_items'), /scorer_pending_items 0/)
  const q = b.admit(3)
  t.equal(b.pendingItems, 3, 'room again after release')
  q.release()
})

t.test('admit after close: 503 shutting_down with Retry-After, nothing reserved', async (t) => {
  const { b } = setup()
  b.close()
  try {
    b.admit(1)
    t.fail('admitted after close')
  } catch (err) {
    const e = err as ServiceError
    t.equal(e.code, 'shutting_down')
    t.equal(e.message, 'server is closed')
    t.same(e.headers, { 'retry-after': '7' })
  }
  t.equal(b.pendingItems, 0)
})

t.test('rows submitted in one tick run as one batch; each gets its own score and timings', async (t) => {
  const { b, engine, metric } = setup()
  const rows = [row(1, 2, 3), row(4, 5), row(6)]
  const t0 = performance.now()
  const res = await Promise.all(rows.map((r) => b.submit(model(), r, far())))
  const elapsed = performance.now() - t0
  t.same(engine.batches, [3])
  res.forEach((r, i) => {
    t.equal(r.score, Math.fround(fakeRowScore(rows[i]!.ids)))
    t.equal(r.batchSize, 3)
    t.equal(r.inferenceMs, 0.1)
    t.ok(r.queueMs >= 0 && r.queueMs <= elapsed, `queueMs ${r.queueMs} within the ${elapsed} ms the call took`)
  })
  t.match(await metric('scorer_inference_seconds_sum'), /scorer_inference_seconds_sum\{graph="reward"\} 0\.0001$/)
  const queued = Number((await metric('scorer_queue_seconds_sum')).split(' ').pop())
  t.ok(queued >= 0 && queued < 5, `queue seconds ${queued}`)
  t.equal(b.queueDepth, 0)
  t.match(await metric('scorer_items_scored_total'), /model="m",version="1"} 3/)
  t.match(await metric('scorer_tokens_scored_total'), /model="m",version="1"} 6/)
  t.match(await metric('scorer_batch_size_sum'), / 3$/)
  t.match(await metric('scorer_batch_tokens_sum'), / 9$/) // padded: 3 rows x 3
  t.match(await metric('scorer_score_count'), /} 3$/)
  t.match(await metric('scorer_queue_depth'), /scorer_queue_depth 0/)
})

t.test('pipelineDepth bounds the batches in flight; the queue runs when one finishes', async (t) => {
  for (const depth of [1, 2]) {
    const { b, engine } = setup({ pipelineDepth: depth, limits: { maxBatchTokens: 1000, maxBatchSize: 1, maxQueueDelayMs: 0 } })
    engine.hold()
    const all = [1, 2, 3].map((i) => b.submit(model(), row(i), far()))
    await engine.started(depth)
    await tick()
    t.equal(engine.batches.length, depth, `depth ${depth}: ${depth} batch(es) started`)
    t.equal(b.queueDepth, 3 - depth)
    engine.release()
    await Promise.all(all)
    t.same(engine.batches, [1, 1, 1])
  }
})

t.test('a batch waits maxQueueDelayMs for company, then runs', async (t) => {
  const { b, engine } = setup({ limits: { maxBatchTokens: 1000, maxBatchSize: 8, maxQueueDelayMs: 40 } })
  const first = b.submit(model(), row(1), far())
  await new Promise((r) => setTimeout(r, 10))
  t.same(engine.batches, [], 'not yet')
  const second = b.submit(model(), row(2), far())
  await Promise.all([first, second])
  t.same(engine.batches, [2], 'the late row joined the waiting one')
})

t.test('deadline: 504 timeout at the deadline, and the row never runs', async (t) => {
  const { b, engine, metric } = setup()
  engine.hold()
  const busy = b.submit(model(), row(1), far())
  await engine.started(1)
  const late = b.submit(model(), row(2), performance.now() + 30)
  const e = await rejection(late)
  t.equal(e.code, 'timeout')
  t.equal(e.status, 504)
  t.equal(e.message, 'request deadline passed before it was scored')
  t.match(await metric('scorer_rejected_total'), /reason="timeout"} 1/)
  engine.release()
  await busy
  await tick()
  t.same(engine.rowsRun, [[1]], 'the timed-out row was dropped')
})

t.test('a job already past its deadline when the policy looks is rejected as expired', async (t) => {
  const { b, engine } = setup()
  engine.hold()
  const busy = b.submit(model(), row(1), far())
  await engine.started(1)
  // deadline in the past: its own timer fires at 0 ms, or the policy drops it; a timeout either way
  const e = await rejection(b.submit(model(), row(2), performance.now() - 1))
  t.equal(e.code, 'timeout')
  engine.release()
  await busy
  t.same(engine.rowsRun, [[1]])
})

t.test('an idle batcher drops a row already past its deadline through the policy (expired), unrun', async (t) => {
  const { b, engine } = setup()
  const e = await rejection(b.submit(model(), row(2), performance.now() - 1))
  t.equal(e.code, 'timeout')
  t.equal(e.message, 'request deadline passed before it was scored')
  await tick()
  t.same(engine.rowsRun, [])
})

t.test('client gone: an aborted signal rejects at once; an abort while queued drops the row', async (t) => {
  const { b, engine, metric } = setup()
  const gone = AbortSignal.abort()
  const e0 = await rejection(b.submit(model(), row(9), far(), gone))
  t.equal(e0.code, 'client_closed')
  t.equal(e0.message, 'client closed the request')
  t.equal(b.queueDepth, 0, 'never queued')
  engine.hold()
  const busy = b.submit(model(), row(1), far())
  await engine.started(1)
  const ac = new AbortController()
  const queued = b.submit(model(), row(2), far(), ac.signal)
  await tick()
  ac.abort()
  const e1 = await rejection(queued)
  t.equal(e1.code, 'client_closed')
  t.equal(e1.message, 'client closed the request')
  t.match(await metric('scorer_rejected_total'), /reason="client_gone"} 2/)
  engine.release()
  await busy
  await tick()
  t.same(engine.rowsRun, [[1]], 'the aborted row never ran')
})

t.test('a finished job removes its abort listener and its timer', async (t) => {
  const { b } = setup()
  const ac = new AbortController()
  let added = 0
  let removed = 0
  const add = ac.signal.addEventListener.bind(ac.signal)
  const rm = ac.signal.removeEventListener.bind(ac.signal)
  ac.signal.addEventListener = ((...a: Parameters<typeof add>) => (a[0] === 'abort' && added++, add(...a))) as typeof add
  ac.signal.removeEventListener = ((...a: Parameters<typeof rm>) => (a[0] === 'abort' && removed++, rm(...a))) as typeof rm
  const r = await b.submit(model(), row(1), performance.now() + 50, ac.signal)
  t.ok(Number.isFinite(r.score))
  t.equal(added, 1)
  t.equal(removed, 1)
  // the timer was cleared: nothing rejects later (an unhandled rejection would fail the test), abort is a no-op
  ac.abort()
  await new Promise((res) => setTimeout(res, 80))
})

t.test('a failing batch rejects only its own rows with a retryable engine_error; the next batch runs', async (t) => {
  const { b, engine, errors } = setup({ limits: { maxBatchTokens: 1000, maxBatchSize: 2, maxQueueDelayMs: 0 } })
  engine.hold()
  const first = [b.submit(model(), row(1), far()), b.submit(model(), row(2), far())]
  await engine.started(1)
  const second = [b.submit(model(), row(3), far()), b.submit(model(), row(4), far())]
  engine.failNext = true
  engine.release()
  for (const p of first) {
    const e = await rejection(p)
    t.equal(e.code, 'engine_error')
    t.equal(e.status, 500)
    t.equal(e.message, 'inference failed')
  }
  const ok = await Promise.all(second)
  t.same(ok.map((r) => r.score), [row(3), row(4)].map((r) => Math.fround(fakeRowScore(r.ids))))
  t.equal(errors.length, 1)
  t.equal(errors[0]!.msg, 'batch failed')
  t.match(errors[0]!.o, { model: 'm/1', rows: 2 })
})

// BUG (src/scheduler/batcher.ts #run, reported; src/ is not this branch's to edit): the score histogram's
// observe() runs before the non-finite guard, and prom-client throws on NaN, so the guard is dead code: the NaN row
// and every row after it in the batch get a generic 'inference failed' and the batch is logged as failed.
t.test('a non-finite score fails only its own row', async (t) => {
  class NaNEngine extends FakeEngine {
    override async runReward(key: string, f: RewardFeeds): Promise<RewardOutput> {
      const out = await super.runReward(key, f)
      out.scores[0] = Number.NaN
      return out
    }
  }
  const { b, errors } = setup({}, new NaNEngine())
  const [bad, good] = [b.submit(model(), row(1), far()), b.submit(model(), row(2), far())]
  const e = await rejection(bad)
  t.equal(e.code, 'engine_error')
  t.match(e.message, /non-finite score \(NaN\)/)
  t.equal((await good.catch((err: Error) => ({ score: err.message }))).score, Math.fround(fakeRowScore([2])))
  t.equal(errors.length, 0, 'not a failed batch')
})

t.test('rows of different model versions never share a batch; the model budget is used', async (t) => {
  const { b, engine } = setup()
  await Promise.all([b.submit(model('m/1'), row(1), far()), b.submit(model('m/2'), row(2), far()), b.submit(model('m/1'), row(3), far())])
  t.same(engine.batches, [2, 1])
  const small = setup()
  // budget 2 tokens: two 2-token rows (padded 4) cannot share
  await Promise.all([small.b.submit(model('m/1', 2), row(1, 1), far()), small.b.submit(model('m/1', 2), row(2, 2), far())])
  t.same(small.engine.batches, [1, 1])
})
