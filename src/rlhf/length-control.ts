// Best-of-N length diagnostics and length-controlled selection. RMs tend to prefer longer answers, so a BoN
// gain can be length exploitation; the paper checks that picks are not longer than N=1 samples. Pure module:
// the rank route and the `bon` CLI share it.
import { z } from 'zod'

export const LengthControlSchema = z.discriminatedUnion('mode', [
  /** Best score among candidates no longer than k x the shortest candidate. */
  z.object({ mode: z.literal('ratio'), k: z.number().min(1).finite() }),
  /** Best of score - per_token x max(0, tokens - threshold). */
  z.object({
    mode: z.literal('penalty'),
    per_token: z.number().min(0).finite(),
    threshold: z.number().int().min(0).default(0),
  }),
])

export type LengthControl = z.infer<typeof LengthControlSchema>

export interface LengthDiagnostics {
  mean_length: number
  chosen_length: number
  /** chosen_length / mean_length (1 = the pick is as long as the average candidate). */
  chosen_vs_mean: number
}

export interface LengthControlledSelection {
  mode: LengthControl['mode']
  best_index: number
  chosen_length: number
  chosen_vs_mean: number
  /** ratio: which candidates were short enough to compete. */
  eligible?: boolean[]
  /** penalty: the adjusted scores the pick was made on. */
  adjusted_scores?: number[]
}

export function describeLengths(lengths: readonly number[], chosen: number): LengthDiagnostics {
  if (lengths.length === 0) throw new Error('describeLengths: no candidates (this is a bug: callers validate N >= 1)')
  const mean = lengths.reduce((a, b) => a + b, 0) / lengths.length
  const chosenLength = lengths[chosen]
  return {
    mean_length: mean,
    chosen_length: chosenLength,
    chosen_vs_mean: mean > 0 ? chosenLength / mean : 1,
  }
}

/** Index of the highest value; ties go to the earliest candidate (what a stable sort by score gives). */
export function argmax(values: readonly number[], eligible?: readonly boolean[]): number {
  let best = -1
  for (let i = 0; i < values.length; i++) {
    if (eligible && !eligible[i]) continue
    if (best < 0 || values[i] > values[best]) best = i
  }
  return best
}

export function selectWithLengthControl(
  scores: readonly number[],
  lengths: readonly number[],
  control: LengthControl,
): LengthControlledSelection {
  if (scores.length !== lengths.length || scores.length === 0) {
    throw new Error('selectWithLengthControl: scores and lengths must be non-empty and aligned (this is a bug)')
  }
  if (control.mode === 'ratio') {
    const limit = control.k * Math.min(...lengths)
    // The shortest candidate always qualifies, so there is always a pick.
    const eligible = lengths.map((l) => l <= limit)
    const best = argmax(scores, eligible)
    return { mode: 'ratio', best_index: best, ...pick(lengths, best), eligible }
  }
  const adjusted = scores.map((s, i) => s - control.per_token * Math.max(0, lengths[i] - control.threshold))
  const best = argmax(adjusted)
  return { mode: 'penalty', best_index: best, ...pick(lengths, best), adjusted_scores: adjusted }
}

function pick(lengths: readonly number[], best: number) {
  const { chosen_length, chosen_vs_mean } = describeLengths(lengths, best)
  return { chosen_length, chosen_vs_mean }
}
