import t from 'tap'
import { NO_SHAPING, RewardShapingSchema, mergeShaping, shapeReward } from '../../src/rlhf/reward-shaping.ts'

const z = (r: number) => (r - 0.5) / 2 // the model's z-score (mean 0.5, std 2)
const TOL = 1e-12

t.test('defaults are all off: the raw logit passes through', async (t) => {
  t.same(RewardShapingSchema.parse({}), NO_SHAPING)
  t.same(shapeReward(1.25, 900, NO_SHAPING, z), { reward: 1.25, lengthPenalty: 0, clipped: false })
})

t.test('normalize, length penalty, clip, in that order', async (t) => {
  const cases: Array<[string, Partial<typeof NO_SHAPING>, number, number, number, boolean]> = [
    // name, shaping, raw, tokens, expected reward, clipped
    ['normalize', { normalize: true }, 4.5, 10, (4.5 - 0.5) / 2, false],
    ['penalty under threshold', { length_penalty: { threshold: 100, per_token: 0.01 } }, 1, 100, 1, false],
    ['penalty over threshold', { length_penalty: { threshold: 100, per_token: 0.01 } }, 1, 150, 0.5, false],
    ['clip high', { clip: { min: -1, max: 1 } }, 3, 10, 1, true],
    ['clip low', { clip: { min: -1, max: 1 } }, -3, 10, -1, true],
    ['clip inside', { clip: { min: -1, max: 1 } }, 0.25, 10, 0.25, false],
    // (4.5-0.5)/2 = 2, minus 50*0.02 = 1, clip to [-0.5, 0.5] -> 0.5
    ['all three', { normalize: true, length_penalty: { threshold: 100, per_token: 0.02 }, clip: { min: -0.5, max: 0.5 } }, 4.5, 150, 0.5, true],
  ]
  for (const [name, override, raw, tokens, want, clipped] of cases) {
    const shaping = mergeShaping(NO_SHAPING, override)
    const got = shapeReward(raw, tokens, shaping, z)
    t.ok(Math.abs(got.reward - want) < TOL, `${name}: ${got.reward} ~ ${want}`)
    t.equal(got.clipped, clipped, `${name}: clipped`)
  }
  t.ok(Math.abs(shapeReward(1, 150, mergeShaping(NO_SHAPING, { length_penalty: { threshold: 100, per_token: 0.01 } }), z).lengthPenalty - 0.5) < TOL)
})

t.test('normalize without the model statistics is a bug, not a silent raw score', async (t) => {
  t.throws(() => shapeReward(3, 1, { ...NO_SHAPING, normalize: true }), /this is a bug/)
})

t.test('mergeShaping: request fields override, null switches off', async (t) => {
  const base = { normalize: true, clip: { min: -5, max: 5 }, length_penalty: null }
  t.same(mergeShaping(base, undefined), base)
  t.same(mergeShaping(base, { clip: null }), { normalize: true, clip: null, length_penalty: null })
  t.same(mergeShaping(base, { normalize: false }).clip, { min: -5, max: 5 })
})

t.test('schema refuses nonsense', async (t) => {
  t.notOk(RewardShapingSchema.safeParse({ clip: { min: 1, max: 0 } }).success)
  t.notOk(RewardShapingSchema.safeParse({ length_penalty: { threshold: -1, per_token: 1 } }).success)
  t.notOk(RewardShapingSchema.safeParse({ length_penalty: { threshold: 1, per_token: -1 } }).success)
})

t.test('clip and length_penalty spec strings (config and URL form)', async (t) => {
  const { parseClipSpec, parseLengthPenaltySpec } = await import('../../src/rlhf/reward-shaping.ts')
  t.same(parseClipSpec('-5:5'), { min: -5, max: 5 }, 'the URL form needs no comma')
  t.same(parseClipSpec('-5,5'), { min: -5, max: 5 }, 'the old comma form still reads (env values)')
  t.same(parseClipSpec(' -1.5e0 , 2.25 '), { min: -1.5, max: 2.25 })
  t.equal(parseClipSpec(''), null)
  t.equal(parseClipSpec('off'), null)
  t.throws(() => parseClipSpec('5,-5'), /min <= max/)
  t.throws(() => parseClipSpec('5'), /min:max/)
  t.same(parseLengthPenaltySpec('512:0.001'), { threshold: 512, per_token: 0.001 })
  t.equal(parseLengthPenaltySpec('none'), null)
  t.throws(() => parseLengthPenaltySpec('512'), /threshold:per_token/)
  t.throws(() => parseLengthPenaltySpec('-1:0.1'), /threshold:per_token/)
})
