// Shared-prompt scoring on the real default model: rows that share a prompt go through reward_packed.onnx as one
// packed row; their scores must equal scoring each conversation alone through reward.onnx (1e-4), for text and
// image prompts, on /v1/rank, /v1/compare, /v1/score and a GRPO-shaped /get_reward, in one call or one call per
// sample (packed across requests).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { groupAdvantages } from '../../src/rlhf/group-advantage.ts'
import type { Message } from '../../src/conversation/types.ts'
import { testConfig } from '../helpers/build-app.ts'
import { MODELS_DIR, REPO_ROOT, realModelDir } from '../helpers/real-model.ts'

const entry = await realModelDir()
const app = buildApp(testConfig({ MODELS_DIR, MAX_BATCH_TOKENS: '16384' }))
await app.ready()
t.teardown(() => app.close())

const image = readFileSync(path.join(REPO_ROOT, '../shared/fixtures/images/real/imagereward-2.webp')).toString('base64')
const textPrompt: Message[] = [
  { role: 'system', content: 'You are a careful assistant. Answer briefly and correctly.' },
  { role: 'user', content: 'How many legs does a spider have, and how many does an insect have? Explain the difference.' },
]
const imagePrompt: Message[] = [{ role: 'user', content: [{ type: 'image', data: image }, { type: 'text', text: 'What is shown in this picture?' }] }]
const answers = [
  'A spider has eight legs; an insect has six.',
  'Spiders: 8. Insects: 6. Spiders are arachnids.',
  'Both have six legs.',
  'Eight and six.',
  'An insect has six legs in three pairs, one pair on each thoracic segment; a spider, an arachnid, has eight.',
  'I do not know.',
]

async function post(url: string, payload: object) {
  const res = await app.inject({ method: 'POST', url, payload })
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`)
  return res.json()
}

/** Each conversation in a request of its own: one row, reward.onnx. */
async function alone(prompt: Message[], responses: string[]): Promise<number[]> {
  const out: number[] = []
  for (const r of responses) out.push((await post('/v1/score', { model: entry.name, items: [{ messages: [...prompt, { role: 'assistant', content: r }] }] })).scores[0])
  return out
}

async function packedRuns(): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const m = /scorer_inference_seconds_count\{graph="reward_packed"\} (\d+)/.exec(text)
  return m ? Number(m[1]) : 0
}

function close(t: { equal(a: unknown, b: unknown): void; ok(v: boolean, m: string): void }, got: number[], want: number[], what: string) {
  t.equal(got.length, want.length)
  const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]!)))
  t.ok(worst <= 1e-4, `${what}: max |packed - alone| = ${worst}`)
}

t.test('the default model has the packed graph', async (t) => {
  t.ok(app.models.resolve(entry.name).graphs.rewardPacked, 'reward_packed.onnx loaded')
})

for (const [kind, prompt] of [['text', textPrompt], ['image', imagePrompt]] as const) {
  t.test(`/v1/rank, ${kind} prompt: packed scores equal separate rows`, async (t) => {
    const before = await packedRuns()
    const rank = await post('/v1/rank', { model: entry.name, prompt, candidates: answers })
    t.ok((await packedRuns()) > before, 'ran through reward_packed.onnx')
    close(t, rank.scores, await alone(prompt, answers), `rank ${kind}`)
  })
}

t.test('/v1/compare and /v1/score items that share a prompt', async (t) => {
  const before = await packedRuns()
  const cmp = await post('/v1/compare', { model: entry.name, prompt: imagePrompt, responses: [answers[0], answers[2]] })
  const mid = await packedRuns()
  t.ok(mid > before, 'compare packed')
  const want = await alone(imagePrompt, [answers[0]!, answers[2]!])
  close(t, cmp.scores, want, 'compare')
  const items = answers.map((a) => ({ messages: [...textPrompt, { role: 'assistant', content: a }] }))
  const sc = await post('/v1/score', { model: entry.name, items })
  t.ok((await packedRuns()) > mid, '/v1/score items packed')
  close(t, sc.scores, await alone(textPrompt, answers), 'score items')
})

t.test('GRPO-shaped /get_reward: repeated prompts detected and packed', async (t) => {
  const prompts = ['What is 7 times 8?', 'Name a primary colour.', 'Spell "cat" backwards.']
  const messages = prompts.flatMap((p) => answers.slice(0, 4).map((a) => [{ role: 'user', content: p }, { role: 'assistant', content: a }]))
  const before = await packedRuns()
  const res = await post('/get_reward', { messages })
  t.ok((await packedRuns()) > before, 'ran through reward_packed.onnx')
  const want: number[] = []
  for (const p of prompts) want.push(...(await alone([{ role: 'user', content: p }], answers.slice(0, 4))))
  close(t, res.extra_logs.raw_reward, want, 'get_reward')
  // GRPO advantages: body group (shaped = the returned rewards) and OpenRLHF's URL form (raw)
  const groups = prompts.flatMap((_, g) => [g, g, g, g])
  const adv = await post('/get_reward', { messages, group: { size: 4 } })
  const exp = groupAdvantages(adv.rewards, groups, 1e-4)
  t.same(adv.advantages.grpo, exp.grpo)
  t.same(adv.extra_logs.advantage, exp.grpo)
  t.same(adv.extra_logs.advantage_dr_grpo, exp.dr_grpo)
  t.match(adv.advantages, { on: 'shaped', epsilon: 1e-4, size: 4 })
  const viaUrl = (await app.inject({ method: 'POST', url: '/get_reward?group_size=4&advantage_on=raw', payload: { messages } })).json()
  t.same(viaUrl.advantages.grpo, groupAdvantages(viaUrl.extra_logs.raw_reward, groups, 1e-4).grpo)
  t.equal(viaUrl.advantages.on, 'raw')
  const bad = await app.inject({ method: 'POST', url: '/get_reward', payload: { messages, group: { size: 5 } } })
  t.equal(bad.statusCode, 422, bad.body)
  t.equal(bad.json().error.code, 'invalid_request')
})

t.test('a GRPO group sent one sample per /get_reward call (OpenRLHF, async reward managers): packed across requests', async (t) => {
  const prompt: Message[] = [{ role: 'user', content: 'Name three planets of the solar system and say which is largest.' }]
  const samples = [...answers, ...answers.map((a) => `${a} Also: Jupiter is the largest.`)]
  const before = await packedRuns()
  // all at once, as a trainer's concurrent per-sample calls arrive: the first runs alone, the rest queue behind it
  const res = await Promise.all(samples.map((a) => post('/get_reward', { messages: [[...prompt, { role: 'assistant', content: a }]] })))
  t.ok((await packedRuns()) > before, 'queued samples of separate calls ran through reward_packed.onnx')
  close(
    t,
    res.map((r) => r.rewards[0]),
    await alone(prompt, samples),
    'per-sample get_reward',
  )
})

t.test('/v1/rank group advantages (ids, normalized)', async (t) => {
  const ids = ['a', 'b', 'a', 'b', 'a', 'b']
  const rank = await post('/v1/rank', { model: entry.name, prompt: textPrompt, candidates: answers, normalize: true, group: { ids, on: 'normalized', epsilon: 0 } })
  const exp = groupAdvantages(rank.normalized_scores, [0, 1, 0, 1, 0, 1], 0)
  t.same(rank.advantages.grpo, exp.grpo)
  t.same(rank.advantages.dr_grpo, exp.dr_grpo)
  t.same(rank.advantages.ids, ids)
  const bad = await app.inject({ method: 'POST', url: '/v1/rank', payload: { prompt: textPrompt, candidates: answers, group: { size: 4 } } })
  t.equal(bad.statusCode, 422, bad.body)
})

for (const [kind, prompt] of [['text', textPrompt], ['image', imagePrompt]] as const) {
  t.test(`/v1/score steps, ${kind} prompt: one pass equals K separate calls on the prefixes`, async (t) => {
    const steps = ['First, count the legs of a spider: eight.', 'Next, an insect: six.', 'So the spider has two more.', 'Done.']
    const response = steps.join('\n\n')
    const before = await packedRuns()
    const bySep = await post('/v1/score', { model: entry.name, items: [{ messages: [...prompt, { role: 'assistant', content: response }], steps: { separator: '\n\n' } }] })
    t.ok((await packedRuns()) === before + 1, 'one packed run')
    const prefixes = steps.map((_, k) => steps.slice(0, k + 1).join('\n\n'))
    const want = await alone(prompt, prefixes)
    close(t, bySep.results[0].step_scores, want, `steps ${kind} (separator)`)
    t.equal(bySep.results[0].score, bySep.results[0].step_scores[3], 'score = the whole response')
    const listed = steps.map((s, k) => (k < steps.length - 1 ? `${s}\n\n` : s))
    const byList = await post('/v1/score', { model: entry.name, items: [{ messages: [...prompt, { role: 'assistant', content: 'ignored' }], steps: listed }] })
    // step k of a list is the concatenation of steps 0..k as given: with the trailing separator kept, unless the
    // model's template strips content (then it equals the separator form)
    const strips = app.models.resolve(entry.name).manifest.template.strip_content
    const wantList = strips ? want : await alone(prompt, listed.map((_, k) => listed.slice(0, k + 1).join('')))
    close(t, byList.results[0].step_scores, wantList, `steps ${kind} (list)`)
  })
}

t.test('steps: the last message must be the response', async (t) => {
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: textPrompt, steps: { separator: '\n' } }] } })
  t.equal(res.statusCode, 422, res.body)
})
