// Scoring a cleaning run against known label flips (bench/clean-precision.ts): pure, so it is unit-tested.

export interface FlagScore {
  flagged: number
  /** Flagged and flipped. */
  tp: number
  /** tp / flagged; null when nothing was flagged (undefined, not 0). */
  precision: number | null
  /** tp / flipped (0 when nothing was flipped). */
  recall: number
}

/** Precision and recall of the flagged ids against the flipped ids. Only ids that were actually scored should be
 *  in `flipped` (a skipped pair cannot be flagged). */
export function scoreFlags(flagged: Iterable<string>, flipped: ReadonlySet<string>): FlagScore {
  const ids = new Set(flagged)
  let tp = 0
  for (const id of ids) if (flipped.has(id)) tp++
  return { flagged: ids.size, tp, precision: ids.size ? tp / ids.size : null, recall: flipped.size ? tp / flipped.size : 0 }
}
