// sha256 of model files, hashed once per file *state* and remembered in a cache file (models/README.md
// §Checksums), so that a 15 GB model is not re-read on every start. An entry is reused only when the file is the
// same inode on the same device with the same size, mtime and ctime (nanoseconds): any write changes mtime and
// ctime, and ctime cannot be set back by a user (touch/utimes set mtime, and setting it updates ctime), so a file
// changed in place or replaced is hashed again. The cache file is trusted as much as the model files themselves,
// hence its default place inside MODELS_DIR.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, rename, stat, writeFile } from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import path from 'node:path'

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer)
  return h.digest('hex')
}

interface Entry {
  dev: string
  ino: string
  size: string
  mtimeNs: string
  ctimeNs: string
  sha256: string
}

const identity = (st: BigIntStats) => ({
  dev: String(st.dev),
  ino: String(st.ino),
  size: String(st.size),
  mtimeNs: String(st.mtimeNs),
  ctimeNs: String(st.ctimeNs),
})

const same = (a: Omit<Entry, 'sha256'>, b: Omit<Entry, 'sha256'>) =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs

export interface ChecksumStats {
  hashed: number
  hashedBytes: number
  cached: number
}

let flushes = 0

export class ChecksumCache {
  readonly #file: string
  #entries: Record<string, Entry> | null = null
  #dirty = false
  /** What this cache did so far (logged after a load; tests read it). */
  readonly stats: ChecksumStats = { hashed: 0, hashedBytes: 0, cached: 0 }

  /** `file` = '' : no cache file, every call hashes (CHECKSUM_CACHE=off). */
  constructor(file: string, private readonly hash: (file: string) => Promise<string> = sha256File) {
    this.#file = file
  }

  async #load(): Promise<Record<string, Entry>> {
    if (this.#entries) return this.#entries
    this.#entries = {}
    if (!this.#file) return this.#entries
    try {
      const raw = JSON.parse(await readFile(this.#file, 'utf8'))
      if (raw && raw.version === 1 && typeof raw.files === 'object') this.#entries = raw.files
    } catch {
      // absent or unreadable: start empty (it only costs a re-hash)
    }
    return this.#entries!
  }

  /** The sha256 of `file` and its size, from the cache when the file is unchanged since it was hashed. */
  async sha256(file: string): Promise<{ sha256: string; size: number }> {
    const abs = path.resolve(file)
    const before = await stat(abs, { bigint: true })
    const id = identity(before)
    const entries = await this.#load()
    const hit = this.#file ? entries[abs] : undefined
    if (hit && same(hit, id)) {
      this.stats.cached++
      return { sha256: hit.sha256, size: Number(before.size) }
    }
    const sha256 = await this.hash(abs)
    this.stats.hashed++
    this.stats.hashedBytes += Number(before.size)
    // A file written while it was being read gives a hash of no state in particular: use it, never remember it.
    if (same(identity(await stat(abs, { bigint: true })), id)) {
      entries[abs] = { ...id, sha256 }
      this.#dirty = true
    }
    return { sha256, size: Number(before.size) }
  }

  /** Writes the cache file (temp file + rename) when something new was hashed; failures only cost a re-hash
   *  next start and are returned for the caller to log. */
  async flush(): Promise<Error | null> {
    if (!this.#file || !this.#dirty || !this.#entries) return null
    const tmp = `${this.#file}.${process.pid}-${++flushes}.tmp`
    try {
      for (const f of Object.keys(this.#entries)) {
        if (!(await stat(f).catch(() => null))) delete this.#entries[f] // removed versions do not pile up
      }
      await writeFile(tmp, JSON.stringify({ version: 1, files: this.#entries }))
      await rename(tmp, this.#file)
      this.#dirty = false
      return null
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err))
    }
  }
}
