import t from 'tap'
import { LengthControlSchema, argmax, describeLengths, selectWithLengthControl } from '../../src/rlhf/length-control.ts'

t.test('describeLengths', async (t) => {
  const d = describeLengths([10, 20, 30], 2)
  t.equal(d.mean_length, 20)
  t.equal(d.chosen_length, 30)
  t.ok(Math.abs(d.chosen_vs_mean - 1.5) < 1e-12)
  t.equal(describeLengths([0, 0], 1).chosen_vs_mean, 1)
})

t.test('argmax: ties go to the earliest, ineligible skipped', async (t) => {
  t.equal(argmax([1, 3, 3]), 1)
  t.equal(argmax([1, 3, 2], [true, false, true]), 2)
})

t.test('ratio: the longest high scorer is excluded', async (t) => {
  // scores favour the 300-token answer; k=2 x shortest (50) = 100 allows 50 and 90 only.
  const sel = selectWithLengthControl([1.0, 5.0, 2.0], [50, 300, 90], LengthControlSchema.parse({ mode: 'ratio', k: 2 }))
  t.equal(sel.best_index, 2)
  t.same(sel.eligible, [true, false, true])
  t.equal(sel.chosen_length, 90)
  t.ok(Math.abs(sel.chosen_vs_mean - 90 / (440 / 3)) < 1e-12)
  // k large enough: plain argmax
  t.equal(selectWithLengthControl([1.0, 5.0, 2.0], [50, 300, 90], { mode: 'ratio', k: 10 }).best_index, 1)
})

t.test('penalty: score minus per-token penalty beyond threshold', async (t) => {
  const sel = selectWithLengthControl([1.0, 5.0], [50, 300], LengthControlSchema.parse({ mode: 'penalty', per_token: 0.02, threshold: 60 }))
  // 5 - 0.02 * 240 = 0.2 < 1
  t.equal(sel.best_index, 0)
  t.ok(Math.abs(sel.adjusted_scores![1] - 0.2) < 1e-9)
  t.equal(LengthControlSchema.parse({ mode: 'penalty', per_token: 0.1 }).mode, 'penalty')
})

t.test('schema refuses k < 1 and unknown modes', async (t) => {
  t.notOk(LengthControlSchema.safeParse({ mode: 'ratio', k: 0.5 }).success)
  t.notOk(LengthControlSchema.safeParse({ mode: 'magic' }).success)
})
