import t from 'tap'
import { DEFAULT_RETRY_POLICY, parseRetryAfter, retryDelayMs } from '../../clients/typescript/index.js'

t.test('parseRetryAfter: delta-seconds, HTTP-date, garbage', async (t) => {
  const now = Date.parse('Thu, 26 Nov 2026 05:00:00 GMT')
  t.equal(parseRetryAfter('3', now), 3000)
  t.equal(parseRetryAfter(' 0 ', now), 0)
  t.equal(parseRetryAfter('Thu, 26 Nov 2026 05:00:07 GMT', now), 7000)
  t.equal(parseRetryAfter('Thu, 26 Nov 2026 04:00:00 GMT', now), 0, 'a date in the past means now')
  t.equal(parseRetryAfter('soon', now), null)
  t.equal(parseRetryAfter('-1', now), null)
  t.equal(parseRetryAfter(undefined, now), null)
  t.equal(parseRetryAfter('', now), null)
})

t.test('retryDelayMs: Retry-After wins (capped), else exponential backoff with jitter', async (t) => {
  const p = { ...DEFAULT_RETRY_POLICY, initialDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 5000 }
  t.equal(retryDelayMs(1, 2000, p, () => 0.5), 2000)
  t.equal(retryDelayMs(1, 999_999, p, () => 0.5), 5000)
  const table: Array<[number, number, number]> = [
    // retry, random, expected: cap/2 + cap/2*random with cap = min(1000, 100*2^(retry-1))
    [1, 0, 50],
    [1, 1, 100],
    [2, 0, 100],
    [3, 1, 400],
    [5, 0, 500],
    [9, 1, 1000],
  ]
  for (const [retry, r, want] of table) t.equal(retryDelayMs(retry, null, p, () => r), want, `retry ${retry} random ${r}`)
})
