// POST /get_reward (src/http/routes/get-reward.ts) with the fake engine: GRPO groups from the body and the URL,
// prompt sharing across samples, per-sample logs, the model echo and the refusals' wording. Written against
// the mutants test/http/routes/get-reward.test.ts lets live (npm run test:mutation -- get-reward).
import t, { type Test } from 'tap'
import { groupAdvantages } from '../../src/rlhf/group-advantage.ts'
import { buildTestApp } from '../helpers/build-app.ts'

const TOL = 1e-6
const chatml = (user: string, answer: string) => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n${answer}<|im_end|>`
const conv = (user: string, answer: string) => [{ role: 'user', content: user }, { role: 'assistant', content: answer }]
const close = (t: Test, got: number[], want: number[], msg: string) =>
  t.ok(got.length === want.length && got.every((g, i) => Math.abs(g - want[i]!) < TOL), `${msg}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`)

async function setup(t: Test, env: Record<string, string> = {}, model = {}) {
  const { app } = await buildTestApp(env, { model })
  t.teardown(() => app.close())
  const post = async (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object })
  const score = async (items: ReturnType<typeof conv>[]) => (await post('/v1/score', { items: items.map((messages) => ({ messages })) })).json().scores as number[]
  return { app, post, score }
}

t.test('each sample keeps its own prompt (identical prompts shared, different ones not) and its own response', async (t) => {
  const { post, score } = await setup(t)
  const pairs: Array<[string, string]> = [['P1', 'A1'], ['P1', 'Another answer'], ['A different prompt', 'A1'], ['P1', 'A1']]
  const res = await post('/get_reward', { query: pairs.map(([u, a]) => chatml(u, a)) })
  t.equal(res.statusCode, 200)
  const body = res.json()
  close(t, body.rewards, await score(pairs.map(([u, a]) => conv(u, a))), 'each reward is its own conversation\'s')
  t.not(body.rewards[0], body.rewards[2], 'different prompts, same answer: different rewards')
  t.equal(body.rewards[0], body.rewards[3])
  close(t, body.extra_logs.raw_reward, body.rewards, 'raw = reward without shaping')
  t.same(body.extra_logs.clipped, [0, 0, 0, 0])
  t.same(body.extra_logs.truncated, [0, 0, 0, 0])
  t.same(body.extra_logs.length_penalty, [0, 0, 0, 0])
  t.same(body.model, { name: 'fake-rm', version: 1 })
  t.notOk('advantages' in body, 'no group, no advantages')
  t.notOk('advantage' in body.extra_logs)
  t.notOk('advantage_dr_grpo' in body.extra_logs)
  // response_tokens counts the response's turn only: a longer answer, more tokens; the prompt does not count
  const [short, long, , same] = body.extra_logs.response_tokens as number[]
  t.equal(long! - short!, 'Another answer'.length - 'A1'.length)
  t.equal(same, short)
  t.equal(body.extra_logs.response_tokens[2], short, 'a longer prompt does not change the response count')
})

t.test('multi-turn messages: every turn but the last is the prompt', async (t) => {
  const { post, score } = await setup(t)
  const m = [{ role: 'system', content: 'S' }, { role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }, { role: 'user', content: 'V' }, { role: 'assistant', content: 'B' }]
  const res = (await post('/get_reward', { messages: [m] })).json()
  close(t, res.rewards, await score([m as ReturnType<typeof conv>]), 'scored as the whole conversation')
  t.same(res.templates, ['messages'])
  t.same(res.extra_logs.template_messages, [1])
  t.same(res.extra_logs.template_chatml, [0])
})

t.test('truncated and clipped logs are 1 where it happened', async (t) => {
  const { post } = await setup(t, {}, { maxSeqLen: 64 })
  const res = (await post('/get_reward?clip=-0.0001:1000', { query: [chatml('U', 'A'), chatml('U', 'x'.repeat(200))] })).json()
  t.same(res.extra_logs.truncated, [0, 1])
  t.equal(res.extra_logs.clipped.length, 2)
  t.ok(res.extra_logs.clipped.every((c: number, i: number) => c === (res.extra_logs.raw_reward[i] < -0.0001 ? 1 : 0)), 'clipped exactly when below the minimum')
})

t.test('scores: sigmoid of the rewards by default, the rewards with RLHF_SCORES=reward', async (t) => {
  const { post } = await setup(t)
  const res = (await post('/get_reward', { query: [chatml('U', 'A'), chatml('V', 'B')] })).json()
  close(t, res.scores, res.rewards.map((r: number) => 1 / (1 + Math.exp(-r))), 'sigmoid')
  t.equal(res.shaping.scores, 'sigmoid')
  const { post: raw } = await setup(t, { RLHF_SCORES: 'reward' })
  const r2 = (await raw('/get_reward', { query: [chatml('U', 'A')] })).json()
  t.same(r2.scores, r2.rewards)
  t.equal(r2.shaping.scores, 'reward')
})

t.test('GRPO groups: body (shaped or raw) and URL; advantages in the answer and in extra_logs', async (t) => {
  const { post } = await setup(t)
  const query = [chatml('P', 'a'), chatml('P', 'bb'), chatml('Q', 'c'), chatml('Q', 'dddd')]
  const groups = [0, 0, 1, 1]
  // shaped: the length penalty makes shaped and raw differ, so the choice is visible
  const shaped = (await post('/get_reward?length_penalty=0:0.1', { query, group: { size: 2 } })).json()
  const want = groupAdvantages(shaped.rewards, groups, 1e-4)
  close(t, shaped.advantages.grpo, want.grpo, 'grpo on the shaped rewards')
  close(t, shaped.extra_logs.advantage, want.grpo, 'extra_logs.advantage')
  close(t, shaped.extra_logs.advantage_dr_grpo, want.dr_grpo, 'extra_logs.advantage_dr_grpo')
  t.match(shaped.advantages, { on: 'shaped', size: 2, epsilon: 1e-4 })
  const raw = (await post('/get_reward?length_penalty=0:0.1', { query, group: { size: 2, on: 'raw' } })).json()
  close(t, raw.advantages.dr_grpo, groupAdvantages(raw.extra_logs.raw_reward, groups, 1e-4).dr_grpo, 'dr_grpo on the raw rewards')
  t.notSame(raw.advantages.dr_grpo, shaped.advantages.dr_grpo, 'raw and shaped advantages differ here')
  t.equal(raw.advantages.on, 'raw')
  // URL: group_size with advantage_on, or alone (shaped)
  const url = (await post('/get_reward?length_penalty=0:0.1&group_size=2&advantage_on=raw', { query })).json()
  t.same(url.advantages.dr_grpo, raw.advantages.dr_grpo)
  t.match(url.advantages, { on: 'raw', size: 2 })
  const urlShaped = (await post('/get_reward?length_penalty=0:0.1&group_size=2', { query })).json()
  t.same(urlShaped.advantages.dr_grpo, shaped.advantages.dr_grpo)
  t.equal(urlShaped.advantages.on, 'shaped')
  // the body's group wins over the URL's
  const both = (await post('/get_reward?group_size=4', { query, group: { size: 2 } })).json()
  t.equal(both.advantages.size, 2)
  // ids instead of a size
  const ids = (await post('/get_reward', { query, group: { ids: ['x', 'y', 'x', 'y'] } })).json()
  t.same(ids.advantages.group, [0, 1, 0, 1])
})

t.test('GRPO refusals and the empty shard', async (t) => {
  const { post } = await setup(t)
  const bad = await post('/get_reward', { query: [chatml('P', 'a'), chatml('P', 'b'), chatml('P', 'c')], group: { size: 2 } })
  t.equal(bad.statusCode, 422)
  t.match(bad.json().error.message, /^group: 3 samples do not split into groups of 2$/)
  const norm = await post('/get_reward', { query: [chatml('P', 'a')], group: { size: 1, on: 'normalized' } })
  t.equal(norm.statusCode, 422)
  t.match(norm.json().error.message, /^group\.on: \/get_reward has raw or shaped rewards/)
  const empty = (await post('/get_reward?group_size=4&advantage_on=raw', { query: [] })).json()
  t.same(empty.extra_logs.advantage, [])
  t.same(empty.extra_logs.advantage_dr_grpo, [])
  t.match(empty.advantages, { on: 'raw', size: 4, grpo: [], dr_grpo: [] })
  const plain = (await post('/get_reward', { query: [] })).json()
  t.notOk('advantages' in plain)
  t.notOk('advantage' in plain.extra_logs)
  t.same(plain.shaping, { template: 'auto', normalize: false, clip: null, length_penalty: null, scores: 'sigmoid' })
})

t.test('model: named in the body or the URL; an unknown one is refused', async (t) => {
  const { post } = await setup(t)
  for (const [url, body] of [['/get_reward?model=fake-rm', {}], ['/get_reward', { model: 'fake-rm' }]] as const) {
    const r = await post(url, { query: [chatml('U', 'A')], ...body })
    t.equal(r.statusCode, 200, url)
    t.same(r.json().model, { name: 'fake-rm', version: 1 })
  }
  for (const [url, body] of [['/get_reward?model=other', {}], ['/get_reward', { model: 'other' }], ['/get_reward?model=fake-rm', { model: 'other' }]] as const) {
    const r = await post(url, { query: [chatml('U', 'A')], ...body })
    t.equal(r.statusCode, 404, `${url} ${JSON.stringify(body)}`)
  }
})

t.test('a bad query names its index and keeps the parser\'s reason', async (t) => {
  const { post } = await setup(t)
  const r = await post('/get_reward?template=chatml', { query: [chatml('U', 'A'), chatml('U', 'A'), 'no markers'] })
  t.equal(r.statusCode, 422)
  t.equal(r.json().error.message, 'query[2]: query has no chatml turn marker "<|im_start|>"')
  // the prompt of the same index is used to split the query (plain)
  const p = (await post('/get_reward?template=plain', { query: ['Q1 answer one', 'Q2 answer two'], prompts: ['Q1', 'Q2'] })).json()
  t.same(p.templates, ['plain', 'plain'])
  const { score } = await setup(t)
  close(t, p.rewards, await score([conv('Q1', 'answer one'), conv('Q2', 'answer two')]), 'prompts[i] splits query[i]')
  // the config's template applies when neither the body nor the URL names one
  const { post: cfg } = await setup(t, { RLHF_QUERY_TEMPLATE: 'plain' })
  const c = (await cfg('/get_reward', { query: ['Q1 answer one'], prompts: ['Q1'] })).json()
  t.same(c.templates, ['plain'])
  t.equal(c.shaping.template, 'plain')
})
