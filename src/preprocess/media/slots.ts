// A counting semaphore for decoder work: admission bounds items, not media, so one request with many videos or
// images (or a burst of media requests) could otherwise decode them all at once. Weighted: video decodes take
// one slot each (VIDEO_MAX_CONCURRENT); image decodes take their pixel count out of MEDIA_DECODE_PIXEL_BUDGET, so
// the decoded-pixel memory of all in-flight images together is bounded. Waiters run in arrival order.
import { ServiceError } from '../../errors.ts'

interface Waiter {
  weight: number
  grant(): void
}

export class Slots {
  private used = 0
  private queued = 0
  private readonly waiting: Waiter[] = []

  /** `maxQueued`: the total weight that may wait; beyond it `run` refuses at once with 503 overloaded. */
  constructor(
    readonly size: number,
    private readonly maxQueued = Number.POSITIVE_INFINITY,
    private readonly retryAfterS = 1,
  ) {}

  get inUse(): number {
    return this.used
  }

  // Runs `fn` once `weight` is free (a weight over `size` runs alone); gives up waiting (and never runs `fn`)
  // when `signal` aborts.
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal, weight = 1): Promise<T> {
    await this.acquire(weight, signal)
    try {
      return await fn()
    } finally {
      this.used -= weight
      this.wake()
    }
  }

  private fits(weight: number): boolean {
    return this.used === 0 || this.used + weight <= this.size
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.weight)) this.waiting.shift()!.grant()
  }

  private acquire(weight: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    if (this.waiting.length === 0 && this.fits(weight)) {
      this.used += weight
      return Promise.resolve()
    }
    if (this.queued + weight > this.maxQueued) {
      return Promise.reject(new ServiceError('overloaded', 'too much media is waiting to be decoded; retry later', { 'retry-after': String(this.retryAfterS) }))
    }
    this.queued += weight
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        weight,
        grant: () => {
          signal?.removeEventListener('abort', onAbort)
          this.queued -= weight
          this.used += weight
          resolve()
        },
      }
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter)
        if (i >= 0) this.waiting.splice(i, 1)
        this.queued -= weight
        this.wake() // a smaller waiter behind it may fit now
        reject(abortReason(signal!))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(waiter)
    })
  }
}

// The error to surface when media work stops because its request was cancelled (client gone: the reason the
// request hooks set; deadline: 504).
export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new ServiceError('timeout', 'request cancelled before its media was processed')
}
