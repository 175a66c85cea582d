// Retry policy of the clients: pure, so the delays are table-tested without timers. The service answers
// overload with 503 + Retry-After and a passed deadline with 504; both are safe to retry because scoring has
// no side effects. 4xx are the caller's fault and are never retried (verl's rule too).

export interface RetryPolicy {
  /** Attempts in total, the first included. */
  maxAttempts: number
  /** Backoff before retry n (1-based) is min(maxDelayMs, initialDelayMs * 2^(n-1)), with full jitter. */
  initialDelayMs: number
  maxDelayMs: number
  /** Upper bound on a server-sent Retry-After, so a bad header cannot park a trainer for an hour. */
  maxRetryAfterMs: number
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 6,
  initialDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
})

export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([502, 503, 504])

/** Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3). Returns ms, or null if absent/bad. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (value === null || value === undefined) return null
  const v = value.trim()
  if (v === '') return null
  if (/^\d+$/.test(v)) return Number(v) * 1000
  // HTTP-dates always name a day or month; without a letter Date.parse would accept things like "-1".
  if (!/[a-z]/i.test(v)) return null
  const at = Date.parse(v)
  if (Number.isNaN(at)) return null
  return Math.max(0, at - nowMs)
}

/**
 * Delay before retry `retry` (1 = the first retry). A Retry-After from the server wins over the backoff (the
 * server knows when capacity frees up); otherwise exponential backoff with jitter, so hundreds of RL
 * workers refused together do not come back together. `random` is injectable for tests.
 */
export function retryDelayMs(
  retry: number,
  retryAfterMs: number | null,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== null) return Math.min(retryAfterMs, policy.maxRetryAfterMs)
  const cap = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, retry - 1))
  // "Equal jitter": at least half the backoff, so a retry never comes back at once.
  return Math.round(cap / 2 + (cap / 2) * random())
}
