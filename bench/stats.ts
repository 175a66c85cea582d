// Small statistics and seeded-randomness helpers shared by the bench scripts (deterministic, so reruns compare).

/** Nearest-rank percentile (p in 0..100) of xs; NaN for an empty list. */
export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

/** Median (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** "median [min–max]" with d decimals. */
export function fmtSpread(xs: readonly number[], d: number): string {
  return `${median(xs).toFixed(d)} [${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}]`
}

/** mulberry32: a tiny seeded PRNG in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed | 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Seeded Fisher–Yates shuffle (a copy). */
export function shuffled<T>(xs: readonly T[], seed = 7): T[] {
  const out = [...xs]
  const rnd = mulberry32(seed)
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** `rounds` rounds of A B B A (drift within a round hits both sides alike): per round, the mean of each side's
 *  two measurements. */
export async function abbaRounds(a: () => Promise<number>, b: () => Promise<number>, rounds: number): Promise<{ a: number[]; b: number[] }> {
  const out = { a: [] as number[], b: [] as number[] }
  for (let round = 0; round < rounds; round++) {
    const a1 = await a()
    const b1 = await b()
    const b2 = await b()
    const a2 = await a()
    out.a.push((a1 + a2) / 2)
    out.b.push((b1 + b2) / 2)
  }
  return out
}
