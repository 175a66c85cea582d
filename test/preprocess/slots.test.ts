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
