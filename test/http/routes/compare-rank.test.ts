import t from 'tap'
import { buildTestApp } from '../../helpers/build-app.ts'
import { fakeRowScore } from '../../helpers/fake-engine.ts'
import { fakeModel } from '../../helpers/fake-model.ts'
import type { Message } from '../../../src/conversation/types.ts'

const enc = fakeModel().encoder
const expected = (messages: Message[]) => fakeRowScore(enc.finish(enc.turns(messages)).ids)
const sigma = (x: number) => 1 / (1 + Math.exp(-x))

t.test('POST /v1/compare with prompt + two responses', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const res = await app.inject({
    method: 'POST',
    url: '/v1/compare',
    payload: { prompt: 'Which is bigger, 3 or 5?', responses: ['5 is bigger.', '3'] },
  })
  t.equal(res.statusCode, 200, res.body)
  const b = res.json()
  const a0 = expected([{ role: 'user', content: 'Which is bigger, 3 or 5?' }, { role: 'assistant', content: '5 is bigger.' }])
  const a1 = expected([{ role: 'user', content: 'Which is bigger, 3 or 5?' }, { role: 'assistant', content: '3' }])
  t.ok(Math.abs(b.scores[0] - a0) < 1e-5 && Math.abs(b.scores[1] - a1) < 1e-5, 'same as scoring each conversation')
  t.equal(b.preferred, a0 >= a1 ? 0 : 1)
  t.ok(Math.abs(b.probability - sigma(b.scores[0] - b.scores[1])) < 1e-12)
  t.equal(b.tokens.length, 2)
  t.same(b.truncated, [false, false])
})

t.test('POST /v1/compare with two conversations; bad shapes are 422', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const c0: Message[] = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }]
  const c1: Message[] = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'text', text: '  hey  ' }] }]
  const res = await app.inject({ method: 'POST', url: '/v1/compare', payload: { conversations: [c0, c1], normalize: true } })
  t.equal(res.statusCode, 200, res.body)
  t.ok(Math.abs(res.json().scores[1] - expected(c1)) < 1e-5)
  t.equal(res.json().normalized_scores.length, 2)
  for (const payload of [
    { prompt: 'x', responses: ['only one'] },
    { prompt: 'x', responses: ['a', 'b'], conversations: [c0, c1] },
    { responses: ['a', 'b'] },
    {},
  ]) {
    const bad = await app.inject({ method: 'POST', url: '/v1/compare', payload })
    t.equal(bad.statusCode, 422, JSON.stringify(payload))
    t.equal(bad.json().error.code, 'invalid_request')
  }
})

t.test('POST /v1/rank: scores, ranks (0 = best), best, candidate token counts', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const prompt: Message[] = [{ role: 'system', content: 'sys' }, { role: 'user', content: 'name a colour' }]
  const candidates = ['red', 'a nice shade of blue', 'green', 'red']
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt, candidates } })
  t.equal(res.statusCode, 200, res.body)
  const b = res.json()
  const want = candidates.map((c) => expected([...prompt, { role: 'assistant', content: c }]))
  b.scores.forEach((s: number, i: number) => t.ok(Math.abs(s - want[i]!) < 1e-5, `candidate ${i}`))
  const order = want.map((_, i) => i).sort((i, j) => want[j]! - want[i]! || i - j)
  t.equal(b.best, order[0])
  order.forEach((idx, rank) => t.equal(b.ranks[idx], rank))
  t.equal(b.ranks[0], b.ranks[3] - 1, 'ties keep input order')
  // the published rank() value: indices best first, the tie (0 and 3 both 'red') with the lower index first
  t.same(b.order, order)
  t.ok(b.order.indexOf(0) < b.order.indexOf(3), 'order: tie keeps the lower index first')
  b.order.forEach((idx: number, r: number) => t.equal(b.ranks[idx], r, 'order is the inverse of ranks'))
  candidates.forEach((c, i) =>
    t.equal(b.candidate_tokens[i], enc.turns([{ role: 'assistant', content: c }]).reduce((n, s) => n + (s.kind === 'text' ? s.ids.length : 0), 0)),
  )
})

t.test('POST /v1/rank refuses more candidates than MAX_CLIENT_BATCH_SIZE', async (t) => {
  const { app } = await buildTestApp({ MAX_CLIENT_BATCH_SIZE: '3' })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt: 'p', candidates: ['a', 'b', 'c', 'd'] } })
  t.equal(res.statusCode, 422)
})
