// takeNextAcross: reward rows and vision images share one engine, each queue under its own limits, FIFO across
// the queues. Pure, table-tested like takeNextBatch.
import t from 'tap'
import { takeNextAcross } from '../../src/scheduler/batch-policy.ts'
import { ids, job, limits, type J } from '../helpers/batch-jobs.ts'

const VISION = limits({ maxBatchSize: 1 })
const cases: Array<{
  name: string
  reward: J[]
  vision: J[]
  now: number
  lane: 'reward' | 'vision' | null
  batch: string[]
  left: { reward: string[]; vision: string[] }
  waitMs?: number | null
  dropped?: string[]
  rewardLimits?: ReturnType<typeof limits>
}> = [
  { name: 'both empty', reward: [], vision: [], now: 0, lane: null, batch: [], left: { reward: [], vision: [] }, waitMs: null },
  { name: 'only reward', reward: [job('r1', 10), job('r2', 10)], vision: [], now: 5, lane: 'reward', batch: ['r1', 'r2'], left: { reward: [], vision: [] } },
  { name: 'only vision: one image per run', reward: [], vision: [job('v1', 100), job('v2', 100)], now: 5, lane: 'vision', batch: ['v1'], left: { reward: [], vision: ['v2'] } },
  {
    name: 'the older head goes first (vision waited longer)',
    reward: [job('r1', 10, 3)],
    vision: [job('v1', 100, 1), job('v2', 100, 4)],
    now: 5,
    lane: 'vision',
    batch: ['v1'],
    left: { reward: ['r1'], vision: ['v2'] },
  },
  {
    name: 'the older head goes first (reward waited longer); vision keeps its order',
    reward: [job('r1', 10, 1), job('r2', 10, 6)],
    vision: [job('v1', 100, 2), job('v2', 100, 3)],
    now: 7,
    lane: 'reward',
    batch: ['r1', 'r2'],
    left: { reward: [], vision: ['v1', 'v2'] },
  },
  { name: 'a tie goes to the earlier lane (vision first)', reward: [job('r1', 10, 2)], vision: [job('v1', 100, 2)], now: 3, lane: 'vision', batch: ['v1'], left: { reward: ['r1'], vision: [] } },
  {
    name: 'a reward batch waiting for company does not hold back vision',
    reward: [job('r1', 10, 0)],
    vision: [job('v1', 100, 4)],
    now: 5,
    rewardLimits: limits({ maxQueueDelayMs: 20 }),
    lane: 'vision',
    batch: ['v1'],
    left: { reward: ['r1'], vision: [] },
  },
  {
    name: 'nothing ready: wait for the earliest deadline of company',
    reward: [job('r1', 10, 0)],
    vision: [],
    now: 5,
    rewardLimits: limits({ maxQueueDelayMs: 20 }),
    lane: null,
    batch: [],
    left: { reward: ['r1'], vision: [] },
    waitMs: 15,
  },
  {
    name: 'cancelled and expired jobs of both lanes are dropped, wherever the batch comes from',
    reward: [job('rc', 10, 0, { cancelled: true }), job('r1', 10, 1)],
    vision: [job('vx', 100, 0, { deadline: 2 }), job('v1', 100, 3)],
    now: 4,
    lane: 'reward',
    batch: ['r1'],
    left: { reward: [], vision: ['v1'] },
    dropped: ['rc', 'vx'],
  },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const lanes = [
      { queue: c.vision, limits: VISION },
      { queue: c.reward, limits: c.rewardLimits ?? limits() },
    ]
    const next = takeNextAcross(lanes, c.now)
    t.equal(next.lane === null ? null : next.lane === 0 ? 'vision' : 'reward', c.lane)
    t.same(ids(next.batch), c.batch)
    t.same({ vision: ids(next.queues[0]!), reward: ids(next.queues[1]!) }, c.left)
    t.same(ids([...next.cancelled, ...next.expired]).sort(), (c.dropped ?? []).sort())
    if (c.waitMs !== undefined) t.equal(next.waitMs, c.waitMs)
  })
}
