// Reward shaping for PPO callers. Pure functions: raw RM logits + response lengths in, shaped rewards out.
// Every option is off by default (raw logits are what the RM was trained to produce) and the options actually
// applied are echoed in the response, so a training log always says what its rewards mean.
import { z } from 'zod'

export const LengthPenaltySchema = z.object({
  /** Response tokens allowed for free. */
  threshold: z.number().int().min(0),
  /** Subtracted per response token beyond the threshold (in reward units, after normalisation). */
  per_token: z.number().min(0).finite(),
})

export const ClipSchema = z
  .object({ min: z.number().finite(), max: z.number().finite() })
  .refine((c) => c.min <= c.max, { message: 'clip.min must be <= clip.max' })

export const RewardShapingSchema = z.object({
  /** z = (r - mean) / std with the model manifest's score.train_stats. */
  normalize: z.boolean().default(false),
  clip: ClipSchema.nullable().default(null),
  length_penalty: LengthPenaltySchema.nullable().default(null),
})

export type RewardShaping = z.infer<typeof RewardShapingSchema>
export type RewardShapingInput = z.input<typeof RewardShapingSchema>

export const NO_SHAPING: RewardShaping = Object.freeze({ normalize: false, clip: null, length_penalty: null })

export interface ShapedReward {
  reward: number
  /** The amount the length penalty took off (0 when off or under the threshold). */
  lengthPenalty: number
  /** Whether clipping changed the value. */
  clipped: boolean
}

/**
 * Order: normalise, then subtract the length penalty, then clip (so the clip bounds what PPO finally sees).
 * `normalize` is the model's z-score function (src/scoring/normalize.ts normalizer), required when shaping asks for it.
 */
export function shapeReward(
  raw: number,
  responseTokens: number,
  shaping: RewardShaping,
  normalize?: (r: number) => number,
): ShapedReward {
  let r = raw
  if (shaping.normalize) {
    if (!normalize) throw new Error('shapeReward: normalize requested without the model statistics (this is a bug)')
    r = normalize(r)
  }
  let lengthPenalty = 0
  if (shaping.length_penalty) {
    lengthPenalty = Math.max(0, responseTokens - shaping.length_penalty.threshold) * shaping.length_penalty.per_token
    r -= lengthPenalty
  }
  let clipped = false
  if (shaping.clip) {
    const c = Math.min(shaping.clip.max, Math.max(shaping.clip.min, r))
    clipped = c !== r
    r = c
  }
  return { reward: r, lengthPenalty, clipped }
}

/** Merges request-level overrides onto the configured defaults (a field left out keeps the default). */
export function mergeShaping(base: RewardShaping, override: Partial<RewardShaping> | undefined): RewardShaping {
  if (!override) return base
  return {
    normalize: override.normalize ?? base.normalize,
    clip: override.clip === undefined ? base.clip : override.clip,
    length_penalty: override.length_penalty === undefined ? base.length_penalty : override.length_penalty,
  }
}

/** "min:max" (config and URL form of `clip`; "min,max" is still read, but OpenRLHF splits --remote_rm_url at
 *  commas, so the URL form must not need one); "", "off" or "none" = off. */
export function parseClipSpec(spec: string): RewardShaping['clip'] {
  const s = spec.trim()
  if (s === '' || s === 'off' || s === 'none') return null
  const m = /^(-?[\d.]+(?:e-?\d+)?)\s*[:,]\s*(-?[\d.]+(?:e-?\d+)?)$/i.exec(s)
  const parsed = m ? ClipSchema.safeParse({ min: Number(m[1]), max: Number(m[2]) }) : undefined
  if (!parsed?.success) throw new Error(`clip must be "min:max" with min <= max, got ${JSON.stringify(spec)}`)
  return parsed.data
}

/** "threshold:per_token" (config and URL form of `length_penalty`); "", "off" or "none" = off. */
export function parseLengthPenaltySpec(spec: string): RewardShaping['length_penalty'] {
  const s = spec.trim()
  if (s === '' || s === 'off' || s === 'none') return null
  const m = /^(\d+)\s*:\s*([\d.]+(?:e-?\d+)?)$/i.exec(s)
  const parsed = m ? LengthPenaltySchema.safeParse({ threshold: Number(m[1]), per_token: Number(m[2]) }) : undefined
  if (!parsed?.success) throw new Error(`length_penalty must be "threshold:per_token", got ${JSON.stringify(spec)}`)
  return parsed.data
}

/** A zod field for config/URL strings parsed by one of the spec parsers above. */
export function specField<T>(parse: (s: string) => T) {
  return z.string().transform((s, ctx) => {
    try {
      return parse(s)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  })
}

/** How /get_reward fills OpenRLHF's optional `scores` (used for dynamic filtering, expected in 0..1). */
export const SCORES_MODES = ['sigmoid', 'reward'] as const
export type ScoresMode = (typeof SCORES_MODES)[number]
