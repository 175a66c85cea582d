import t from 'tap'
import { paddedCost, takeNextBatch } from '../../src/scheduler/batch-policy.ts'
import type { BatchLimits } from '../../src/scheduler/types.ts'
import { ids, job, limits, type J } from '../helpers/batch-jobs.ts'

const cases: Array<{
  name: string
  queue: J[]
  limits: BatchLimits
  now: number
  batch: string[]
  rest: string[]
  cancelled?: string[]
  expired?: string[]
  waitMs?: number | null
}> = [
  { name: 'empty queue', queue: [], limits: limits(), now: 0, batch: [], rest: [], waitMs: null },
  { name: 'single job runs at once', queue: [job('a', 10)], limits: limits(), now: 0, batch: ['a'], rest: [] },
  {
    name: 'max batch size caps rows',
    queue: [job('a', 10), job('b', 10), job('c', 10)],
    limits: limits({ maxBatchSize: 2 }),
    now: 0,
    batch: ['a', 'b'],
    rest: ['c'],
  },
  {
    name: 'token budget counts padding (max_len x rows)',
    // a(100) + b(100) = 200; adding c(300) would cost 300 x 3 = 900 > 500
    queue: [job('a', 100), job('b', 100), job('c', 300)],
    limits: limits({ maxBatchTokens: 500 }),
    now: 0,
    batch: ['a', 'b'],
    rest: ['c'],
  },
  {
    name: 'sorted by length: similar lengths travel together, the oldest always goes',
    queue: [job('a', 50), job('long1', 400), job('b', 60), job('long2', 410), job('c', 55)],
    limits: limits({ maxBatchTokens: 300 }),
    now: 0,
    batch: ['a', 'c', 'b'],
    rest: ['long1', 'long2'],
  },
  {
    name: 'a long oldest job is never starved by short ones',
    queue: [job('long', 400), job('s1', 10), job('s2', 10)],
    limits: limits({ maxBatchTokens: 500 }),
    now: 0,
    batch: ['long'],
    rest: ['s1', 's2'],
  },
  {
    name: 'oldest job over the budget still runs alone',
    queue: [job('huge', 2000), job('s', 10)],
    limits: limits({ maxBatchTokens: 1000 }),
    now: 0,
    batch: ['huge'],
    rest: ['s'],
  },
  {
    name: 'cancelled (client gone) jobs are skipped, not run',
    queue: [job('gone', 10, 0, { cancelled: true }), job('b', 10)],
    limits: limits(),
    now: 0,
    batch: ['b'],
    rest: [],
    cancelled: ['gone'],
  },
  {
    name: 'expired jobs are dropped',
    queue: [job('old', 10, 0, { deadline: 5 }), job('b', 10)],
    limits: limits(),
    now: 10,
    batch: ['b'],
    rest: [],
    expired: ['old'],
  },
  {
    name: 'only cancelled jobs: nothing to run',
    queue: [job('gone', 10, 0, { cancelled: true })],
    limits: limits(),
    now: 0,
    batch: [],
    rest: [],
    cancelled: ['gone'],
    waitMs: null,
  },
  {
    name: 'max queue delay: a non-full batch waits for company',
    queue: [job('a', 10, 100)],
    limits: limits({ maxQueueDelayMs: 5 }),
    now: 102,
    batch: [],
    rest: ['a'],
    waitMs: 3,
  },
  {
    name: 'max queue delay reached: it goes',
    queue: [job('a', 10, 100), job('b', 10, 101)],
    limits: limits({ maxQueueDelayMs: 5 }),
    now: 105,
    batch: ['a', 'b'],
    rest: [],
  },
  {
    name: 'max queue delay: a full batch does not wait',
    queue: [job('a', 10, 100), job('b', 10, 100)],
    limits: limits({ maxQueueDelayMs: 50, maxBatchSize: 2 }),
    now: 100,
    batch: ['a', 'b'],
    rest: [],
  },
  {
    name: "the oldest job's model budget (tokenBudget) overrides the global one",
    queue: [job('a', 100, 0, { tokenBudget: 200 }), job('b', 100, 0, { tokenBudget: 200 }), job('c', 100, 0, { tokenBudget: 200 })],
    limits: limits({ maxBatchTokens: 1000 }),
    now: 0,
    batch: ['a', 'b'],
    rest: ['c'],
  },
  {
    name: 'other model versions never share the batch',
    queue: [job('a', 10), job('x', 10, 0, { batchKey: 'm/2' }), job('b', 10)],
    limits: limits(),
    now: 0,
    batch: ['a', 'b'],
    rest: ['x'],
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const r = takeNextBatch(c.queue, c.limits, c.now)
    t.same(ids(r.batch), c.batch, 'batch')
    t.same(ids(r.rest), c.rest, 'rest')
    t.same(ids(r.cancelled), c.cancelled ?? [], 'cancelled')
    t.same(ids(r.expired), c.expired ?? [], 'expired')
    if (c.waitMs !== undefined) t.equal(r.waitMs, c.waitMs, 'waitMs')
    if (r.batch.length > 1) t.ok(paddedCost(r.batch) <= (r.batch[0]!.tokenBudget ?? c.limits.maxBatchTokens), 'within budget')
  })
}

t.test('paddedCost is rows x longest', async (t) => {
  t.equal(paddedCost([job('a', 3), job('b', 7)]), 14)
  t.equal(paddedCost([]), 0)
})
