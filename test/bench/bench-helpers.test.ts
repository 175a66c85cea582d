// The bench's own measuring parts: a wrong timer or a wrong precision here would publish wrong figures.
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { scoreFlags } from '../../bench/flag-score.ts'
import { abbaRatio, drive } from '../../bench/load.ts'
import { abbaRounds, fmtSpread, median, pct, shuffled } from '../../bench/stats.ts'
import { perRequest, SEGMENTS, segmentsOf } from '../../bench/timeline.ts'

/** A server that answers every POST after `delayMs`, counting the most requests it held at once. */
async function slowServer(delayMs: number, status = 200) {
  let inFlight = 0
  let maxInFlight = 0
  const srv = http.createServer((req, res) => {
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    req.resume()
    req.on('end', () =>
      setTimeout(() => {
        inFlight--
        res.writeHead(status, { 'content-type': 'application/json' }).end('{}')
      }, delayMs),
    )
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`, srv, max: () => maxInFlight }
}

t.test('drive: wall time to the last response, not a 1 s tick; bounded concurrency', async (t) => {
  const s = await slowServer(40)
  t.teardown(() => s.srv.close())
  // 12 requests, 3 in flight, 40 ms each: 4 waves = ~160 ms, i.e. ~75 items/s. A duration rounded up to whole
  // seconds (autocannon's `amount` mode) would report 12 items/s.
  const r = await drive(s.url, Array.from({ length: 12 }, () => '{}'), 3)
  t.equal(r.ok, 12)
  t.equal(r.errors, 0)
  t.equal(s.max(), 3, 'exactly `concurrency` requests in flight')
  t.ok(r.wallMs >= 155 && r.wallMs < 600, `wall ${r.wallMs.toFixed(0)} ms in [155, 600)`)
  t.ok(r.itemsPerS > 20 && r.itemsPerS <= 78, `items/s ${r.itemsPerS.toFixed(1)} in (20, 78]`)
  t.ok(r.p50 >= 39, `p50 ${r.p50.toFixed(1)} ms >= the server delay`)
})

t.test('drive: non-200 answers are errors, not throughput', async (t) => {
  const s = await slowServer(1, 503)
  t.teardown(() => s.srv.close())
  const r = await drive(s.url, ['{}', '{}', '{}'], 2)
  t.equal(r.ok, 0)
  t.equal(r.errors, 3)
  t.equal(r.itemsPerS, 0)
})

t.test('abbaRatio: ratio of total times; a linear drift across the block cancels', async (t) => {
  t.equal(abbaRatio(10, 10, 10, 10), 1)
  // The host slows down steadily: pass k of the block takes (1 + 0.1 k) times as long. The service runs at 0.8 of
  // raw speed throughout, so its passes (k = 1, 2) take 1/0.8 of that. ABBA recovers 0.8 exactly (a plain mean of
  // the four speeds would give 0.788).
  const speed = (k: number) => 1 / (1 + 0.1 * k)
  const r = abbaRatio(speed(0), 0.8 * speed(1), 0.8 * speed(2), speed(3))
  t.ok(Math.abs(r - 0.8) < 1e-12, `ratio ${r} == 0.8`)
})

t.test('scoreFlags: precision over flagged, recall over flipped', async (t) => {
  const flipped = new Set(['a', 'b', 'c', 'd'])
  t.same(scoreFlags(['a', 'b', 'x'], flipped), { flagged: 3, tp: 2, precision: 2 / 3, recall: 0.5 })
  t.same(scoreFlags([], flipped), { flagged: 0, tp: 0, precision: null, recall: 0 }, 'nothing flagged: precision undefined')
  t.same(scoreFlags(['a', 'a'], flipped), { flagged: 1, tp: 1, precision: 1, recall: 0.25 }, 'an id counts once')
})

t.test('stats', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 2, 3]), 2.5)
  t.equal(pct([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 6)
  t.equal(pct([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10)
  t.equal(fmtSpread([0.9, 1.1, 1], 2), '1.00 [0.90–1.10]')
  const xs = Array.from({ length: 20 }, (_, i) => i)
  t.same(shuffled(xs, 5), shuffled(xs, 5), 'seeded: same order for the same seed')
  t.not(shuffled(xs, 5).join(), shuffled(xs, 6).join(), 'different seed, different order')
  t.same([...shuffled(xs, 5)].sort((a, b) => a - b), xs, 'a permutation')
})

t.test('timeline: a request\'s marks -> consecutive segments, session.run split out of the engine round trip', async (t) => {
  const points = ['send', 'request', 'score', 'tokenize', 'tokenized', 'submit', 'post', 'reply', 'submit-settled', 'scored', 'end', 'received']
  // point k at 10 * k ms (post at 60, reply at 70); the reply says its run took 4 ms, so the run began at 66
  const marks = points.map((p, k): [string, number, number?] => (p === 'reply' ? [p, 10 * k, 4] : [p, 10 * k]))
  const s = segmentsOf(marks)!
  t.equal(s.length, SEGMENTS.length)
  const seg = (from: string) => s[SEGMENTS.findIndex(([f]) => f === from)]!
  t.equal(seg('send'), 10)
  t.equal(seg('post'), 6, 'post (60) -> run start (70 - 4)')
  t.equal(seg('run'), 4, "the worker's session.run")
  t.equal(seg('end'), 10)
  t.equal(s.reduce((a, b) => a + b, 0), 110, 'segments add up to send -> received')
  t.equal(segmentsOf(marks.filter(([p]) => p !== 'tokenize')), null, 'a point missing')
  t.equal(segmentsOf([...marks.slice(0, 8), ['post', 75], ...marks.slice(8)]), null, 'two engine calls: not the text path')
  const two = perRequest([['send', 1], ['request', 2], ['send', 3], ['request', 4], ['received', 5]])
  t.same(two.map((r) => r.map(([p]) => p)), [['send', 'request'], ['send', 'request', 'received']])
})

t.test('abbaRounds: A B B A per round, each side the mean of its two measurements', async (t) => {
  const order: string[] = []
  let n = 0
  // each call returns how many calls came before it, so the means say which calls a round used
  const side = (name: string) => async () => {
    order.push(name)
    return n++
  }
  const out = await abbaRounds(side('A'), side('B'), 2)
  t.same(order, ['A', 'B', 'B', 'A', 'A', 'B', 'B', 'A'])
  t.same(out, { a: [(0 + 3) / 2, (4 + 7) / 2], b: [(1 + 2) / 2, (5 + 6) / 2] })
})
