// The TS client's GRPO group options against the real service (repository model, real HTTP): getReward and rank
// pass `group` through, typed per endpoint, and the advantages that come back are the group-normalised rewards
// the test computes itself from the same answer (unbiased std, as torch.std), per group.
import t from 'tap'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import { testConfig } from '../helpers/build-app.ts'
import { RewardClient, type GroupAdvantages, type Message, type RankRequest } from '../../clients/typescript/index.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

function expected(rewards: number[], groups: Array<string | number>, eps: number) {
  const key = (g: string | number) => `${typeof g}:${g}`
  const grpo: number[] = []
  const dr: number[] = []
  rewards.forEach((r, i) => {
    const members = rewards.filter((_, j) => key(groups[j]!) === key(groups[i]!))
    const mean = members.reduce((a, b) => a + b, 0) / members.length
    const std = members.length > 1 ? Math.sqrt(members.reduce((a, b) => a + (b - mean) ** 2, 0) / (members.length - 1)) : 0
    dr.push(r - mean)
    grpo.push(r === mean ? 0 : (r - mean) / (std + eps))
  })
  return { grpo, dr_grpo: dr }
}

function close(t: { equal: (a: unknown, b: unknown, m: string) => void; ok: (v: boolean, m: string) => void }, got: number[], want: number[], what: string) {
  t.equal(got.length, want.length, `${what}: one per sample`)
  got.forEach((g, i) => t.ok(Math.abs(g - want[i]!) < 1e-9, `${what}[${i}]: ${g} vs ${want[i]}`))
}

t.test('getReward and rank with group: advantages per group, on the requested rewards, echoed', async (t) => {
  const app = buildApp(testConfig({ MODELS_DIR: path.join(root, 'models'), EXECUTION_PROVIDERS: 'cpu' }))
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const client = new RewardClient({ baseUrl: base })
  const conv = (q: string, a: string): Message[] => [{ role: 'user', content: q }, { role: 'assistant', content: a }]
  const answers = ['The answer is 7.', 'It is 12.', 'Paris.', 'I do not know.', 'Seven.']
  const messages = answers.map((a, i) => conv(i % 2 ? 'What is the capital of France?' : 'Please calculate 2 + 5.', a))
  const ids = ['q', 7, 'q', '7', 7] // 7 and '7' are different groups

  const shaped = await client.getReward({ messages, options: { normalize: true }, group: { ids } })
  const adv: GroupAdvantages = shaped.advantages!
  t.match(adv, { on: 'shaped', epsilon: 1e-4, ids, group: [0, 1, 0, 2, 1] })
  const want = expected(shaped.rewards, ids, 1e-4)
  close(t, adv.grpo, want.grpo, 'grpo on shaped rewards')
  close(t, adv.dr_grpo, want.dr_grpo, 'dr_grpo on shaped rewards')
  const raw = await client.getReward({ messages, options: { normalize: true }, group: { size: 1, on: 'raw', epsilon: 0 } })
  t.match(raw.advantages, { on: 'raw', epsilon: 0, size: 1 })
  t.same(raw.advantages!.dr_grpo, [0, 0, 0, 0, 0], 'groups of one: no advantage')
  const rawIds = await client.getReward({ messages, options: { normalize: true }, group: { ids, on: 'raw' } })
  close(t, rawIds.advantages!.dr_grpo, expected(rawIds.extra_logs.raw_reward as number[], ids, 1e-4).dr_grpo, 'dr_grpo on raw scores')

  const body: RankRequest = { prompt: 'Please calculate 2 + 5.', candidates: answers.slice(0, 4), normalize: true, group: { size: 2, on: 'normalized' } }
  const ranked = await client.rank(body)
  t.match(ranked.advantages, { on: 'normalized', size: 2, group: [0, 0, 1, 1] })
  close(t, ranked.advantages!.grpo, expected(ranked.normalized_scores!, [0, 0, 1, 1], 1e-4).grpo, 'rank grpo on normalized scores')
  const plain = await client.rank({ prompt: body.prompt, candidates: body.candidates })
  t.equal(plain.advantages, undefined, 'no group, no advantages')
})
