import t from 'tap'
import { GroupSchema, groupAdvantages, groupIndex } from '../../src/rlhf/group-advantage.ts'

t.test('groupIndex: size splits consecutive samples, ids group in order of first appearance', async (t) => {
  t.same(groupIndex(6, { size: 3 }), [0, 0, 0, 1, 1, 1])
  t.same(groupIndex(5, { ids: ['b', 'a', 'b', 7, '7'] }), [0, 1, 0, 2, 3], 'number 7 and string "7" differ')
  t.throws(() => groupIndex(7, { size: 3 }), { name: 'GroupSpecError' })
  t.throws(() => groupIndex(3, { ids: ['a'] }), { name: 'GroupSpecError' })
})

t.test('groupAdvantages table', async (t) => {
  // [rewards, groups, eps, grpo, dr_grpo, std]
  const s = Math.sqrt(2) // unbiased std of [1, 3] (torch.std)
  const cases: Array<[number[], number[], number, number[], number[], number[]]> = [
    [[1, 3], [0, 0], 0, [-1 / s, 1 / s], [-1, 1], [s, s]],
    [[1, 3, 5, 5], [0, 0, 1, 1], 1e-4, [-1 / (s + 1e-4), 1 / (s + 1e-4), 0, 0], [-1, 1, 0, 0], [s, s, 0, 0]],
    [[2, 4, 9], [0, 1, 0], 0, [-3.5 / Math.sqrt(24.5), 0, 3.5 / Math.sqrt(24.5)], [-3.5, 0, 3.5], [Math.sqrt(24.5), 0, Math.sqrt(24.5)]],
    [[7], [0], 1e-4, [0], [0], [0]],
  ]
  for (const [r, g, eps, grpo, dr, std] of cases) {
    const a = groupAdvantages(r, g, eps)
    a.grpo.forEach((v, i) => t.ok(Math.abs(v - grpo[i]!) < 1e-12, `grpo ${r}[${i}]: ${v} vs ${grpo[i]}`))
    t.same(a.dr_grpo, dr)
    a.group_std.forEach((v, i) => t.ok(Math.abs(v - std[i]!) < 1e-12, `std ${r}[${i}]`))
  }
})

t.test('GroupSchema: exactly one of size and ids; epsilon defaults to 1e-4', async (t) => {
  t.equal(GroupSchema.parse({ size: 8 }).epsilon, 1e-4)
  t.notOk(GroupSchema.safeParse({ size: 8, ids: [1] }).success)
  t.notOk(GroupSchema.safeParse({}).success)
  t.notOk(GroupSchema.safeParse({ size: 0 }).success)
})
