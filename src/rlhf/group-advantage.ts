// GRPO group advantages (pure): per sample, the reward normalised within its group — GRPO's (r − mean_g) /
// (std_g + ε) and Dr. GRPO's r − mean_g (no std: "Understanding R1-Zero-Like Training", Liu et al. 2025). std is
// the unbiased (n − 1) one, as TRL, verl and OpenRLHF compute it (torch.std); a group of one sample has
// advantage 0 and std 0. Groups come as a size (consecutive samples: TRL/verl/OpenRLHF lay a prompt's
// completions out one after the other) or as one id per sample (any order).
import { z } from 'zod'
import { ServiceError } from '../errors.ts'

export const GroupSchema = z
  .object({
    /** consecutive samples per group; must divide the sample count */
    size: z.number().int().positive().optional(),
    /** one group id per sample */
    ids: z.array(z.union([z.string(), z.number()])).optional(),
    /** which reward the advantage is computed on (per endpoint: /get_reward raw | shaped, /v1/rank raw | normalized) */
    on: z.enum(['raw', 'shaped', 'normalized']).optional(),
    epsilon: z.number().nonnegative().finite().default(1e-4),
  })
  .strict()
  .refine((g) => (g.size === undefined) !== (g.ids === undefined), 'give group size or group ids, not both')
export type GroupSpec = z.infer<typeof GroupSchema>

export interface GroupAdvantages {
  /** group index per sample (0, 1, … in order of first appearance) */
  group: number[]
  grpo: number[]
  dr_grpo: number[]
  group_mean: number[]
  group_std: number[]
}

export class GroupSpecError extends Error {
  override name = 'GroupSpecError'
}

/** Group index per sample from a size or ids; GroupSpecError when they do not fit `n` samples. */
export function groupIndex(n: number, spec: { size?: number; ids?: ReadonlyArray<string | number> }): number[] {
  if (spec.ids) {
    if (spec.ids.length !== n) throw new GroupSpecError(`group ids has ${spec.ids.length} entries for ${n} samples`)
    const seen = new Map<string, number>()
    return spec.ids.map((id) => {
      const k = `${typeof id}:${id}`
      if (!seen.has(k)) seen.set(k, seen.size)
      return seen.get(k)!
    })
  }
  const size = spec.size!
  if (n % size !== 0) throw new GroupSpecError(`${n} samples do not split into groups of ${size}`)
  return Array.from({ length: n }, (_, i) => Math.floor(i / size))
}

export function groupAdvantages(rewards: readonly number[], group: readonly number[], epsilon: number): GroupAdvantages {
  if (group.length !== rewards.length) throw new Error('one group index per reward (this is a bug)')
  const count = new Map<number, number>()
  const sum = new Map<number, number>()
  rewards.forEach((r, i) => {
    const g = group[i]!
    count.set(g, (count.get(g) ?? 0) + 1)
    sum.set(g, (sum.get(g) ?? 0) + r)
  })
  const mean = new Map([...sum].map(([g, s]) => [g, s / count.get(g)!]))
  const sq = new Map<number, number>()
  rewards.forEach((r, i) => {
    const g = group[i]!
    sq.set(g, (sq.get(g) ?? 0) + (r - mean.get(g)!) ** 2)
  })
  const std = new Map([...sq].map(([g, s]) => [g, count.get(g)! > 1 ? Math.sqrt(s / (count.get(g)! - 1)) : 0]))
  const groupMean = rewards.map((_, i) => mean.get(group[i]!)!)
  const groupStd = rewards.map((_, i) => std.get(group[i]!)!)
  const dr = rewards.map((r, i) => r - groupMean[i]!)
  return {
    group: [...group],
    // 0 where the sample equals its group mean (also a one-sample or all-equal group with ε = 0: never 0/0)
    grpo: dr.map((d, i) => (d === 0 ? 0 : d / (groupStd[i]! + epsilon))),
    dr_grpo: dr,
    group_mean: groupMean,
    group_std: groupStd,
  }
}

/** The answer's `advantages` object: the request's spec echoed (`on` resolved) and the per-sample values. */
export function advantagesAnswer(
  spec: GroupSpec,
  on: 'raw' | 'shaped' | 'normalized',
  rewards: readonly number[],
): GroupAdvantages & { on: string; epsilon: number; size?: number; ids?: ReadonlyArray<string | number> } {
  const group = groupIndex(rewards.length, spec)
  return { on, epsilon: spec.epsilon, ...(spec.size ? { size: spec.size } : { ids: spec.ids }), ...groupAdvantages(rewards, group, spec.epsilon) }
}

/** 422 before any scoring when the group spec does not fit `n` samples. */
export function checkGroup(n: number, spec: { size?: number; ids?: ReadonlyArray<string | number> }): void {
  try {
    groupIndex(n, spec)
  } catch (err) {
    if (err instanceof GroupSpecError) throw new ServiceError('invalid_request', `group: ${err.message}`)
    throw err
  }
}
