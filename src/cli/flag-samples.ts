// Which samples a cleaning run flags for review. Pure: scored values in, flags out. The value is the
// preference margin (chosen - rejected) for pairs, the score for single responses: a pair the RM ranks the
// wrong way round (or barely apart) is the paper's candidate for a mislabelled or low-quality sample.

export interface FlagRules {
  /** Flag the lowest k percent (0-100). */
  lowestPct?: number
  /** Flag values below this. */
  threshold?: number
  /** Flag values with |z| above this (outliers on either side). */
  zscore?: number
}

export type FlagReason = 'lowest_pct' | 'below_threshold' | 'zscore_outlier'

export interface FlagResult {
  flags: Map<string, FlagReason[]>
  stats: { n: number; mean: number; std: number; min: number; max: number; lowestCutoff: number | null }
}

export function flagSamples(items: ReadonlyArray<{ id: string; value: number }>, rules: FlagRules): FlagResult {
  const vals = items.filter((i) => Number.isFinite(i.value))
  const n = vals.length
  const mean = n ? vals.reduce((a, b) => a + b.value, 0) / n : 0
  const std = n > 1 ? Math.sqrt(vals.reduce((a, b) => a + (b.value - mean) ** 2, 0) / (n - 1)) : 0
  const flags = new Map<string, FlagReason[]>()
  const add = (id: string, r: FlagReason) => {
    const cur = flags.get(id)
    if (cur) cur.push(r)
    else flags.set(id, [r])
  }
  let lowestCutoff: number | null = null
  if (rules.lowestPct !== undefined && rules.lowestPct > 0 && n > 0) {
    const k = Math.min(n, Math.ceil((rules.lowestPct / 100) * n))
    // Stable by input order for equal values, so a rerun flags the same ids.
    const sorted = vals.map((v, i) => ({ ...v, i })).sort((a, b) => a.value - b.value || a.i - b.i)
    for (const v of sorted.slice(0, k)) add(v.id, 'lowest_pct')
    lowestCutoff = sorted[k - 1].value
  }
  for (const v of vals) {
    if (rules.threshold !== undefined && v.value < rules.threshold) add(v.id, 'below_threshold')
    if (rules.zscore !== undefined && std > 0 && Math.abs(v.value - mean) / std > rules.zscore) add(v.id, 'zscore_outlier')
  }
  return {
    flags,
    stats: {
      n,
      mean,
      std,
      min: n ? Math.min(...vals.map((v) => v.value)) : 0,
      max: n ? Math.max(...vals.map((v) => v.value)) : 0,
      lowestCutoff,
    },
  }
}
