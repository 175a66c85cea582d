// Which queued jobs run next — pure, no timers, `now` passed in (TGI's State; table-tested).
//
// The oldest live job always goes in the next batch (no starvation). Around it, jobs of the same model are
// added in order of length (sorted neighbours, cheapest first) while the padded cost max_len x rows stays in
// the token budget and the row cap holds, so rows of similar length travel together and padding stays low.
// While the engine is idle a batch that is not yet full may wait up to maxQueueDelayMs for company.
import type { BatchLimits, NextBatch, QueuedJob } from './types.ts'

export function paddedCost(jobs: readonly QueuedJob[]): number {
  let max = 0
  for (const j of jobs) max = Math.max(max, j.length)
  return max * jobs.length
}

export function takeNextBatch<J extends QueuedJob>(queue: readonly J[], limits: BatchLimits, now: number): NextBatch<J> {
  const live: J[] = []
  const cancelled: J[] = []
  const expired: J[] = []
  for (const j of queue) {
    if (j.cancelled) cancelled.push(j)
    else if (j.deadline <= now) expired.push(j)
    else live.push(j)
  }
  if (live.length === 0) return { batch: [], rest: [], cancelled, expired, waitMs: null }

  const oldest = live[0]!
  const sorted = live.filter((j) => j.batchKey === oldest.batchKey).sort((a, b) => a.length - b.length)
  let lo = sorted.indexOf(oldest)
  let hi = lo
  let maxLen = oldest.length
  const budget = oldest.tokenBudget ?? limits.maxBatchTokens
  // Grow the window [lo, hi] of the length-sorted candidates one neighbour at a time.
  while (hi - lo + 1 < limits.maxBatchSize) {
    const n = hi - lo + 2
    const left = lo > 0 ? maxLen * n : Infinity // a shorter neighbour never raises the max
    const right = hi < sorted.length - 1 ? Math.max(maxLen, sorted[hi + 1]!.length) * n : Infinity
    const best = Math.min(left, right)
    if (best > budget) break
    if (left <= right) lo--
    else {
      hi++
      maxLen = Math.max(maxLen, sorted[hi]!.length)
    }
  }
  const chosen = sorted.slice(lo, hi + 1)
  const full = chosen.length < sorted.length || chosen.length >= limits.maxBatchSize
  const waited = now - oldest.enqueuedAt
  if (!full && waited < limits.maxQueueDelayMs) {
    return { batch: [], rest: live, cancelled, expired, waitMs: limits.maxQueueDelayMs - waited }
  }
  const taken = new Set<J>(chosen)
  return { batch: chosen, rest: live.filter((j) => !taken.has(j)), cancelled, expired, waitMs: null }
}

/** One queue of the engine (reward rows, vision images) with its own limits. */
export interface Lane<J extends QueuedJob> {
  queue: readonly J[]
  limits: BatchLimits
}

export interface NextAcross<J extends QueuedJob> {
  /** Index of the lane whose batch runs now; null when none should run yet. */
  lane: number | null
  batch: J[]
  /** Every lane's live jobs left queued, in arrival order. */
  queues: J[][]
  cancelled: J[]
  expired: J[]
  /** When nothing runs: ms until the first waiting lane's oldest job must go. */
  waitMs: number | null
}

/** The next batch over several queues sharing one engine: each lane's own policy (takeNextBatch with its limits)
 *  proposes a batch, and of the lanes ready to run, the one whose oldest job has waited longest goes (FIFO
 *  across lanes: vision work and reward rows never starve each other; ties go to the earlier lane). */
export function takeNextAcross<J extends QueuedJob>(lanes: ReadonlyArray<Lane<J>>, now: number): NextAcross<J> {
  const nexts = lanes.map((l) => takeNextBatch(l.queue, l.limits, now))
  let lane: number | null = null
  let oldest = Infinity
  nexts.forEach((n, i) => {
    if (n.batch.length === 0) return
    const at = Math.min(...n.batch.map((j) => j.enqueuedAt))
    if (at < oldest) {
      oldest = at
      lane = i
    }
  })
  const queues = nexts.map((n, i) => {
    if (i === lane || n.batch.length === 0) return n.rest
    const gone = new Set([...n.cancelled, ...n.expired])
    return lanes[i]!.queue.filter((j) => !gone.has(j))
  })
  const waits = nexts.map((n) => n.waitMs).filter((w): w is number => w !== null)
  return {
    lane,
    batch: lane === null ? [] : nexts[lane]!.batch,
    queues,
    cancelled: nexts.flatMap((n) => n.cancelled),
    expired: nexts.flatMap((n) => n.expired),
    waitMs: lane === null && waits.length > 0 ? Math.min(...waits) : null,
  }
}
