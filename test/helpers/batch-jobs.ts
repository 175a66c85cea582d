// Queued jobs and limits for the batch-policy tables (test/scheduler and test/mutation share them).
import type { BatchLimits, QueuedJob } from '../../src/scheduler/types.ts'

export interface J extends QueuedJob {
  id: string
}
/** id, length, enqueuedAt; optional model key / cancelled / deadline */
export const job = (id: string, length: number, enqueuedAt = 0, extra: Partial<QueuedJob> = {}): J => ({
  id,
  length,
  enqueuedAt,
  batchKey: 'm/1',
  deadline: 1e9,
  cancelled: false,
  ...extra,
})
export const limits = (o: Partial<BatchLimits> = {}): BatchLimits => ({ maxBatchTokens: 1000, maxBatchSize: 8, maxQueueDelayMs: 0, ...o })
export const ids = (js: J[]) => js.map((j) => j.id)
