// /v1/rank length diagnostics and length-controlled selection (fake engine, char tokenizer: token counts are
// exact and known).
import t from 'tap'
import { buildTestApp } from '../helpers/build-app.ts'
import { charTokenizer } from '../helpers/fake-model.ts'

const candidates = ['Four.', 'The answer is four, because two plus two makes four.', '4', 'It is 4.'.repeat(12)]
const tokensOf = (c: string) => charTokenizer.encode(`[UNUSED_TOKEN_146]assistant\n${c}[UNUSED_TOKEN_145]\n`).length

t.test('length diagnostics and both length-control modes', async (t) => {
  const { app } = await buildTestApp()
  t.teardown(() => app.close())
  const rank = async (extra: object) =>
    app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt: 'What is 2+2?', candidates, ...extra } })
  const plain = (await rank({})).json()
  const lengths = candidates.map(tokensOf)
  t.same(plain.candidate_tokens, lengths)
  const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length
  t.ok(Math.abs(plain.length.mean_length - mean) < 1e-9)
  t.equal(plain.length.chosen_length, lengths[plain.best])
  t.ok(Math.abs(plain.length.chosen_vs_mean - lengths[plain.best] / mean) < 1e-9)
  t.notOk('length_controlled' in plain, 'no control unless asked')

  // ratio: only candidates <= 1.5 x the shortest compete (the shortest is "4").
  const k = 1.5
  const ratio = (await rank({ length_control: { mode: 'ratio', k } })).json()
  const eligible = lengths.map((l) => l <= k * Math.min(...lengths))
  t.same(ratio.length_controlled.eligible, eligible)
  const bestEligible = plain.scores.map((s: number, i: number) => (eligible[i] ? s : -Infinity))
  t.equal(ratio.length_controlled.best_index, bestEligible.indexOf(Math.max(...bestEligible)))
  t.equal(ratio.best, plain.best, 'the plain pick is still reported')

  // penalty: adjusted = score - per_token * max(0, len - threshold)
  const pen = (await rank({ length_control: { mode: 'penalty', per_token: 0.05, threshold: 20 } })).json()
  const adjusted = plain.scores.map((s: number, i: number) => s - 0.05 * Math.max(0, lengths[i] - 20))
  pen.length_controlled.adjusted_scores.forEach((a: number, i: number) => t.ok(Math.abs(a - adjusted[i]) < 1e-9))
  t.equal(pen.length_controlled.best_index, adjusted.indexOf(Math.max(...adjusted)))
  t.equal(pen.length_controlled.chosen_length, lengths[pen.length_controlled.best_index])

  const bad = await rank({ length_control: { mode: 'ratio', k: 0.5 } })
  t.equal(bad.statusCode, 422)
})
