import t from 'tap'
import { Slots } from '../../src/preprocess/media/slots.ts'

t.test('at most `size` run at once; waiters run in order; an aborted waiter never runs', async (t) => {
  const slots = new Slots(2)
  const log: string[] = []
  let active = 0
  let peak = 0
  const job = (name: string, ms: number) => async () => {
    active++
    peak = Math.max(peak, active)
    log.push(`start ${name}`)
    await new Promise((r) => setTimeout(r, ms))
    active--
    return name
  }
  const ac = new AbortController()
  const runs = [slots.run(job('a', 30)), slots.run(job('b', 30)), slots.run(job('c', 5), ac.signal), slots.run(job('d', 5))]
  ac.abort(new Error('client gone'))
  const results = await Promise.allSettled(runs)
  t.equal(peak, 2)
  t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'])
  t.notOk(log.includes('start c'), 'the aborted waiter never started')
  t.equal(slots.inUse, 0)
})

t.test('weighted: pixels of in-flight decodes stay within the budget; a huge one runs alone; a full queue is 503', async (t) => {
  const budget = new Slots(100, 150)
  let active = 0
  let peak = 0
  const job = (w: number) => budget.run(async () => {
    active += w
    peak = Math.max(peak, active)
    await new Promise((r) => setTimeout(r, 10))
    active -= w
    return w
  }, undefined, w)
  const runs = [job(60), job(60), job(30), job(250)]
  const results = await Promise.allSettled(runs)
  t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected'], 'the queue holds at most 150 waiting')
  t.match((results[3] as PromiseRejectedResult).reason, { code: 'overloaded', headers: { 'retry-after': '1' } })
  t.ok(peak <= 100, `peak ${peak} within the budget`)
  const alone = await Promise.all([new Slots(100).run(async () => 'big', undefined, 250)])
  t.same(alone, ['big'], 'a weight over the budget runs when nothing else does')
  t.equal(budget.inUse, 0)
})
