// A map bounded by the bytes of its values, least recently used evicted first: the media store (files by content
// hash) and the main thread's embedding handle table keep the same bookkeeping, so it lives once here. (The
// engine's embedding store has pins that eviction must skip, and keeps its own loop.)
export class ByteLru<V> {
  private readonly entries = new Map<string, { value: V; size: number }>() // insertion order = recency
  private bytes = 0

  /** onEvict: called once per entry dropped to stay within `maxBytes`. */
  constructor(readonly maxBytes: number, private readonly onEvict?: (key: string, value: V) => void) {}

  get totalBytes(): number {
    return this.bytes
  }

  get size(): number {
    return this.entries.size
  }

  /** The value without touching its recency. */
  peek(key: string): V | undefined {
    return this.entries.get(key)?.value
  }

  /** The value, now the most recently used. */
  get(key: string): V | undefined {
    const e = this.entries.get(key)
    if (!e) return undefined
    this.entries.delete(key)
    this.entries.set(key, e)
    return e.value
  }

  /** Adds `value` of `size` bytes as the most recently used (nothing when it alone exceeds the bound), then
   *  evicts the least recently used entries until the total fits. */
  set(key: string, value: V, size: number): void {
    if (size > this.maxBytes) return
    this.delete(key)
    this.entries.set(key, { value, size })
    this.bytes += size
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.entries.delete(k)
      this.bytes -= e.size
      this.onEvict?.(k, e.value)
    }
  }

  delete(key: string): void {
    const e = this.entries.get(key)
    if (!e) return
    this.entries.delete(key)
    this.bytes -= e.size
  }
}
