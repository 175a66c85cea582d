// Image/video embedding cache: identical media (same bytes, same preprocessing, same model) is encoded by the
// vision graph once. Keyed by a content hash, bounded by bytes (least recently used evicted first). The floats
// live in the engine (engine/embedding-store.ts, same keys, same bound): this table holds their handles and
// shapes, and drops what the engine reports evicted. Concurrent
// requests for the same key share one computation: a best-of-N call with one image and N candidates resolves its
// N conversations in parallel, and without the in-flight map all N would miss together.
import { createHash } from 'node:crypto'
import { ByteLru } from '../../util/byte-lru.ts'

/** The engine holds [tokens, dim] floats (`bytes`) under the entry's key. */
export interface CachedEmbedding {
  tokens: number
  dim: number
  bytes: number
}

export interface CacheCounter {
  inc(n?: number): void
}

export interface EmbeddingCacheMetrics {
  hits: CacheCounter
  misses: CacheCounter
  evictions?: CacheCounter
}

/** Key of the media whose content hash (sha256 hex of the file bytes, media-store.ts) is `digest`, under
 *  `parts` (kind, hd_num, model, ...): derived from the digest, so the bytes are hashed once per part and a
 *  `{"sha256": ...}` reference finds the embedding without any bytes. */
export function mediaCacheKey(digest: string, parts: Record<string, unknown>): string {
  return createHash('sha256').update(digest).update('\0').update(JSON.stringify(parts)).digest('hex')
}

export class EmbeddingCache {
  private readonly entries: ByteLru<CachedEmbedding>
  private readonly inflight = new Map<string, Promise<CachedEmbedding>>()
  hits = 0
  misses = 0

  constructor(maxBytes: number, private readonly metrics?: EmbeddingCacheMetrics) {
    this.entries = new ByteLru(maxBytes, () => this.metrics?.evictions?.inc())
  }

  get totalBytes(): number {
    return this.entries.totalBytes
  }

  peek(key: string): CachedEmbedding | undefined {
    return this.entries.peek(key)
  }

  // Returns the cached value, or runs `compute` once for all concurrent callers and stores its result.
  async getOrCompute(key: string, compute: () => Promise<CachedEmbedding>): Promise<CachedEmbedding> {
    const hit = this.entries.get(key) // now the most recently used
    if (hit) {
      this.hit()
      return hit
    }
    const pending = this.inflight.get(key)
    if (pending) {
      this.hit()
      return pending
    }
    this.misses++
    this.metrics?.misses.inc()
    const p = compute().then(
      (value) => {
        this.inflight.delete(key)
        this.entries.set(key, value, value.bytes)
        return value
      },
      (err) => {
        this.inflight.delete(key)
        throw err
      },
    )
    this.inflight.set(key, p)
    return p
  }

  /** The engine no longer holds `key` (evicted there): the next request computes it again. */
  delete(key: string): void {
    this.entries.delete(key)
  }

  private hit(): void {
    this.hits++
    this.metrics?.hits.inc()
  }
}
