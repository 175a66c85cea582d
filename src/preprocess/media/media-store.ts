// Media the service has already received, by content hash, so that a client can refer to an image or video it
// sent before as `{"type": "image", "sha256": "<64 hex>"}` instead of re-sending (and re-base64-decoding) its
// bytes: GRPO groups and best-of-N send the same image with every sample. Bounded by bytes, least recently used
// evicted first; the key is the sha256 of the original file bytes (what `sha256sum file` prints), which the
// embedding cache key is then derived from, so the bytes are hashed once per request part at most.
//
// Only media that resolved to an embedding is stored (a file that fails to decode never becomes referable), and
// only by bytes a client sent: a reference is a promise about content, not a name chosen by the client.
// The store is per process: behind a load balancer a reference may land on a replica that never saw the bytes,
// and an entry may be evicted at any time; clients must handle `media_not_cached` by resending the bytes.
import { createHash } from 'node:crypto'
import type { CacheCounter } from './embedding-cache.ts'
import { ByteLru } from '../../util/byte-lru.ts'

/** References resolved (hits) and refused as not cached (misses); stored files evicted to stay in bounds. */
export interface MediaStoreMetrics {
  hits: CacheCounter
  misses: CacheCounter
  evictions?: CacheCounter
}

export const SHA256_HEX = /^[0-9a-f]{64}$/

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export class MediaStore {
  private readonly lru: ByteLru<Uint8Array>

  constructor(private readonly maxBytes: number, evictions?: CacheCounter) {
    this.lru = new ByteLru(maxBytes, () => evictions?.inc())
  }

  get totalBytes(): number {
    return this.lru.totalBytes
  }

  get size(): number {
    return this.lru.size
  }

  /** The bytes of `digest` (now the most recently used), or undefined. */
  get(digest: string): Uint8Array | undefined {
    return this.lru.get(digest)
  }

  /** Remembers `bytes` under `digest` (the caller computed it from these bytes). A copy is kept when `bytes` is a
   *  view into a larger buffer (it would pin the whole buffer otherwise). */
  put(digest: string, bytes: Uint8Array): void {
    if (bytes.byteLength > this.maxBytes || bytes.byteLength === 0) return
    if (this.lru.get(digest)) return // already held: now the most recently used
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice()
    this.lru.set(digest, own, own.byteLength)
  }
}
