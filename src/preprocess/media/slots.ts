// A counting semaphore for decoder processes: admission bounds items, not videos, so one request with many
// videos (or a burst of video requests) could otherwise start an ffmpeg per video at once.
import { ServiceError } from '../../errors.ts'

export class Slots {
  private used = 0
  private readonly waiting: Array<() => void> = []

  constructor(readonly size: number) {}

  get inUse(): number {
    return this.used
  }

  // Runs `fn` once a slot is free; gives up waiting (and never runs `fn`) when `signal` aborts.
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal)
    try {
      return await fn()
    } finally {
      this.used--
      this.waiting.shift()?.()
    }
  }

  private acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    if (this.used < this.size) {
      this.used++
      return Promise.resolve()
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort)
        this.used++
        resolve()
      }
      const onAbort = () => {
        const i = this.waiting.indexOf(grant)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(abortReason(signal!))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(grant)
    })
  }
}

// The error to surface when media work stops because its request was cancelled (client gone: the reason the
// request hooks set; deadline: 504).
export function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new ServiceError('timeout', 'request cancelled before its media was processed')
}
