// Cases that kill the mutants test/scheduler/batch-policy.test.ts let live (npm run test:mutation, batch-policy):
// every case there has the oldest job as the shortest of its model, so the window never grew to the left.
import t from 'tap'
import { takeNextBatch } from '../../src/scheduler/batch-policy.ts'

import { ids, job, limits, type J } from '../helpers/batch-jobs.ts'

t.test('a job whose deadline is exactly now is expired, not run', async (t) => {
  const r = takeNextBatch([job('due', 10, 0, { deadline: 7 }), job('b', 10)], limits(), 7)
  t.same(ids(r.expired), ['due'])
  t.same(ids(r.batch), ['b'])
})

t.test('the window grows to the left: a shorter neighbour costs less than a longer one', async (t) => {
  // sorted s(40) m(50) l(60); the oldest m takes s (50 x 2 = 100) before l (60 x 2 = 120)
  const r = takeNextBatch([job('m', 50), job('l', 60), job('s', 40)], limits({ maxBatchSize: 2 }), 0)
  t.same(ids(r.batch), ['s', 'm'])
  t.same(ids(r.rest), ['l'])
})

t.test('at equal padded cost the shorter neighbour is preferred', async (t) => {
  // s(40) and e(50) both give 50 x 2 = 100 next to m(50): take the shorter (less real work)
  const r = takeNextBatch([job('m', 50), job('e', 50), job('s', 40)], limits({ maxBatchSize: 2 }), 0)
  t.same(ids(r.batch), ['s', 'm'])
})

t.test('the row cap counts the window width, wherever the oldest job sits', async (t) => {
  // the oldest job is the longest: index 3 of the sorted list, the window grows left to 3 rows
  const r = takeNextBatch([job('m', 10), job('a', 7), job('b', 8), job('c', 9)], limits({ maxBatchSize: 3 }), 0)
  t.same(ids(r.batch), ['b', 'c', 'm'])
  t.same(ids(r.rest), ['a'])
})

t.test('the padded cost counts the window width, wherever the oldest job sits', async (t) => {
  // sorted a(8) b(9) m(10): 10 x 3 = 30 fits a budget of exactly 30 (the budget is inclusive)
  const r = takeNextBatch([job('m', 10), job('a', 8), job('b', 9)], limits({ maxBatchTokens: 30 }), 0)
  t.same(ids(r.batch), ['a', 'b', 'm'])
})

t.test('a batch cut short by the token budget does not wait for company', async (t) => {
  // b cannot join (300 x 2 > 500), so nothing a wait could add: a goes at once despite maxQueueDelayMs
  const r = takeNextBatch([job('a', 100), job('b', 300)], limits({ maxBatchTokens: 500, maxQueueDelayMs: 100 }), 0)
  t.same(ids(r.batch), ['a'])
  t.equal(r.waitMs, null)
})

t.test('a batch that waits reports the remaining delay of the oldest job', async (t) => {
  const r = takeNextBatch([job('a', 10, 10), job('b', 10, 12)], limits({ maxQueueDelayMs: 5 }), 14)
  t.same(ids(r.batch), [])
  t.same(ids(r.rest), ['a', 'b'])
  t.equal(r.waitMs, 1)
})
