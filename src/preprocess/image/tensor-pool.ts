// Float32 buffers for vision tensors, kept between images. A fresh 15–34 MB Float32Array costs its page faults on
// first write (filling one took 6.9 ms on this host, a reused one 0.28 ms: bench/README.md, media intake), which
// was most of the normalise step for a large image. A buffer travels main thread → transform worker (written
// there) → main → engine worker (transferred each time, never shared, so no two threads ever hold it) and the
// engine worker hands it back after the vision run (StoredVision.image); only then does it come back here. A
// buffer that does not come back (a failed run, a cancelled request) is simply garbage.
export interface TensorPoolStats {
  buffers: number
  bytes: number
  hits: number
  misses: number
}

export class TensorPool {
  // most recently given last; a buffer is taken only for an exact length (tensor sizes come in tile-sized steps,
  // so images of one shape share them) and the oldest goes first when the pool is over its bytes
  #free: Float32Array[] = []
  #bytes = 0
  #hits = 0
  #misses = 0

  /** maxBytes: idle buffers kept at most (0: no pooling, every take is a fresh array). */
  constructor(readonly maxBytes: number) {}

  /** A buffer of `length` values, with whatever an earlier image left in it (callers write every element). */
  take(length: number): Float32Array {
    for (let i = this.#free.length - 1; i >= 0; i--) {
      const a = this.#free[i]!
      if (a.length !== length) continue
      this.#free.splice(i, 1)
      this.#bytes -= a.byteLength
      this.#hits++
      return a
    }
    this.#misses++
    return new Float32Array(length)
  }

  /** Back into the pool; a detached buffer (transferred away, byteLength 0), a view of part of a buffer or one
   *  larger than the whole pool is dropped. */
  give(a: Float32Array | undefined): void {
    if (!a || a.byteLength === 0 || a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength || a.byteLength > this.maxBytes) return
    if (this.#free.includes(a)) return
    this.#free.push(a)
    this.#bytes += a.byteLength
    while (this.#bytes > this.maxBytes) this.#bytes -= this.#free.shift()!.byteLength
  }

  stats(): TensorPoolStats {
    return { buffers: this.#free.length, bytes: this.#bytes, hits: this.#hits, misses: this.#misses }
  }
}
