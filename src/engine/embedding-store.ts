// Image embeddings kept where they are used: in the engine (its worker thread), keyed by the media cache key the
// main thread computed (the handle). vision.onnx writes them here and reward feeds name them by handle, so an
// image's [tokens, dim] block (≈ 47 MB at IXC scale) never crosses the thread boundary. Bounded by bytes, least
// recently used evicted first; entries a request still needs (pinned under its lease) are never evicted, so a
// request whose images alone exceed the bound still scores (the pinned bytes are bounded by admission).
// Plain JS, no ONNX Runtime: the worker and the tests' fake engine share it.
import type { ImageRef } from './types.ts'

interface Entry {
  embeds: Float32Array
  tokens: number
  dim: number
  /** engine session key of the model that made it: dropped with the model */
  model: string
  pins: number
}

/** Thrown when reward feeds name a handle the store no longer holds (evicted, or its model unloaded). */
export class EmbeddingsMissing extends Error {
  constructor(readonly handles: string[]) {
    super(`image embeddings not in the engine: ${handles.length} handle(s)`)
    this.name = 'EmbeddingsMissing'
  }
}

export class EmbeddingStore {
  readonly #entries = new Map<string, Entry>() // insertion order = recency
  readonly #leases = new Map<number, Set<string>>()
  /** vision runs in progress per lease, and leases released while one was: messages are handled concurrently,
   *  so a request's release can overtake its own vision run, whose pin must then not outlive it */
  readonly #running = new Map<number, number>()
  readonly #releaseAfter = new Set<number>()
  #bytes = 0

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.#bytes
  }

  /** Bytes of entries some request still pins. */
  get pinnedBytes(): number {
    let n = 0
    for (const e of this.#entries.values()) if (e.pins > 0) n += e.embeds.byteLength
    return n
  }

  get size(): number {
    return this.#entries.size
  }

  has(handle: string): boolean {
    return this.#entries.has(handle)
  }

  /** Stores `embeds` under `handle` (pinned for `lease` when it is not 0) and evicts unpinned entries, least
   *  recently used first, until the store is within its bound again; the new entry itself always stays (its
   *  request needs it next). Returns the evicted handles, for the main thread's handle table. */
  put(handle: string, model: string, embeds: Float32Array, tokens: number, dim: number, lease = 0): string[] {
    const old = this.#entries.get(handle)
    if (old) {
      this.#bytes -= old.embeds.byteLength
      this.#entries.delete(handle)
    }
    this.#entries.set(handle, { embeds, tokens, dim, model, pins: old?.pins ?? 0 })
    this.#bytes += embeds.byteLength
    if (lease !== 0) this.retain(lease, [handle])
    const evicted: string[] = []
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break
      if (e.pins > 0 || k === handle) continue
      this.#entries.delete(k)
      this.#bytes -= e.embeds.byteLength
      evicted.push(k)
    }
    return evicted
  }

  /** The entry, marked as just used. */
  get(handle: string): Entry | undefined {
    const e = this.#entries.get(handle)
    if (e) {
      this.#entries.delete(handle)
      this.#entries.set(handle, e)
    }
    return e
  }

  /** Pins the handles still held for `lease` (a request on the main thread); handles already gone are skipped:
   *  the request's batch then misses them and the request computes them again. */
  retain(lease: number, handles: readonly string[]): void {
    let set = this.#leases.get(lease)
    if (!set) this.#leases.set(lease, (set = new Set()))
    for (const h of handles) {
      const e = this.#entries.get(h)
      if (!e || set.has(h)) continue
      set.add(h)
      e.pins++
    }
  }

  /** Runs `fn` (a vision run that ends in put() for `lease`) so that a release(lease) arriving meanwhile waits
   *  for it. */
  async during<T>(lease: number, fn: () => Promise<T>): Promise<T> {
    this.#running.set(lease, (this.#running.get(lease) ?? 0) + 1)
    try {
      return await fn()
    } finally {
      const n = this.#running.get(lease)! - 1
      if (n > 0) this.#running.set(lease, n)
      else {
        this.#running.delete(lease)
        if (this.#releaseAfter.delete(lease)) this.release(lease)
      }
    }
  }

  /** Unpins everything `lease` pinned (its request is over). */
  release(lease: number): void {
    if (this.#running.has(lease)) {
      this.#releaseAfter.add(lease)
      return
    }
    const set = this.#leases.get(lease)
    if (!set) return
    this.#leases.delete(lease)
    for (const h of set) {
      const e = this.#entries.get(h)
      if (e) e.pins--
    }
  }

  /** Forgets every entry `model` made (it was unloaded: its handles can never be asked for again). */
  dropModel(model: string): void {
    for (const [k, e] of this.#entries) {
      if (e.model !== model) continue
      this.#entries.delete(k)
      this.#bytes -= e.embeds.byteLength
    }
  }
}

/** The image_embeds tensor of a batch: the rows its feeds carry inline plus the rows named by `refs`, copied out
 *  of the store. Throws EmbeddingsMissing (naming every missing handle) when one is not there. */
export function gatherImageEmbeds(
  feeds: { imageEmbeds: Float32Array; embedRows: number; dim: number; imageRefs?: readonly ImageRef[] },
  store: EmbeddingStore,
): Float32Array {
  const refs = feeds.imageRefs ?? []
  if (refs.length === 0) return feeds.imageEmbeds
  const { dim } = feeds
  const full = feeds.imageEmbeds.length === feeds.embedRows * dim ? feeds.imageEmbeds : new Float32Array(feeds.embedRows * dim)
  const missing: string[] = []
  for (const r of refs) {
    const e = store.get(r.handle)
    if (!e) {
      if (!missing.includes(r.handle)) missing.push(r.handle)
      continue
    }
    if (e.dim !== dim || e.tokens < r.tokens) {
      throw new Error(`stored image block [${e.tokens}, ${e.dim}] cannot fill [${r.tokens}, ${dim}] (this is a bug)`)
    }
    full.set(e.embeds.subarray(0, r.tokens * dim), r.row * dim)
  }
  if (missing.length > 0) throw new EmbeddingsMissing(missing)
  return full
}
