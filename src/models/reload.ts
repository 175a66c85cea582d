// Model hot reload (Triton's POLL/EXPLICIT modes, made safe): a new models/<name>/<version>/ directory is
// loaded, validated and warmed in the background by the same code as start-up (loadVersion), then published
// with one registry write. Requests keep the ModelVersion they resolved, so the ones in flight finish on the
// old version; once every request that started before the swap has ended, the old version's ONNX sessions are
// released and it leaves the listing. A version that fails never serves and the old one keeps serving.
//
// Polling sees directories that are still being written (Triton's docs warn about exactly this), so the
// watcher loads a directory only once it looks the same on two consecutive scans; a failed directory is
// retried only if its contents change. POST /admin/models/reload loads what is there at once. The HTTP side
// (decoration, request counting, start and stop) is src/http/plugins/hot-reload.ts.
import { readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { loadVersion, versionDirs, type LoadOptions } from './load.ts'
import type { ModelVersion } from './model-version.ts'

export interface ReloadOptions extends LoadOptions {
  root: string
  /** 0 = no watcher (the admin route still reloads). */
  pollIntervalMs: number
  /** Upper bound on waiting for old requests before the old sessions are released anyway. */
  drainTimeoutMs: number
  /** Test seam; the real loader by default. */
  load?: typeof loadVersion
}

export interface ReloadResult {
  loaded: Array<{ name: string; version: number; replaced: number | null }>
  failed: Array<{ name: string; version: number; error: string }>
  /** New directories not loaded yet because they changed since the previous scan (still being written). */
  waiting: Array<{ name: string; version: number }>
}

type Entry = { name: string; version: number; dir: string }

/** Names, sizes and mtimes of a version directory: changes while a copy is in progress. */
async function signature(dir: string): Promise<string> {
  const names = (await readdir(dir).catch(() => [] as string[])).sort()
  const parts = await Promise.all(
    names.map(async (n) => {
      const s = await stat(path.join(dir, n)).catch(() => null)
      return s ? `${n}:${s.size}:${s.mtimeMs}` : `${n}:gone`
    }),
  )
  return parts.join('|')
}

export class ModelReloader {
  readonly #o: ReloadOptions
  readonly #load: typeof loadVersion
  /** name/version -> signature when last attempted (loaded or failed): not attempted again unless it changes. */
  readonly #attempted = new Map<string, string>()
  /** name/version -> signature seen by the previous poll, for the two-scans stability rule. */
  readonly #candidates = new Map<string, string>()
  /** Requests open per generation; a swap starts a new generation. */
  readonly #open = new Map<number, number>()
  #generation = 0
  #running: Promise<ReloadResult> = Promise.resolve({ loaded: [], failed: [], waiting: [] })
  #timer: NodeJS.Timeout | undefined
  #retiring = new Set<Promise<void>>()
  #closed = false

  constructor(opts: ReloadOptions) {
    this.#o = opts
    this.#load = opts.load ?? loadVersion
  }

  /** Marks what is on disk now as handled (start-up has loaded or rejected it). */
  async markCurrent(): Promise<void> {
    for (const e of await versionDirs(this.#o.root)) this.#attempted.set(`${e.name}/${e.version}`, await signature(e.dir))
  }

  /** Requests started and not yet ended, over all generations (tests; 0 on an idle server). */
  get openRequests(): number {
    let n = 0
    for (const v of this.#open.values()) n += v
    return n
  }

  /** Call when a request starts; call the returned function when it has ended (answered or aborted). */
  requestStarted(): () => void {
    const gen = this.#generation
    this.#open.set(gen, (this.#open.get(gen) ?? 0) + 1)
    let done = false
    return () => {
      if (done) return
      done = true
      const n = this.#open.get(gen)! - 1
      if (n === 0) this.#open.delete(gen)
      else this.#open.set(gen, n)
    }
  }

  /** Scans the repository and loads new versions; serialised, so concurrent calls queue. `force` (the admin
   *  route) loads directories at once instead of waiting for them to look stable. */
  reload(opts: { force?: boolean } = {}): Promise<ReloadResult> {
    const run = this.#running.catch(() => undefined).then(() => this.#scan(opts.force ?? false))
    this.#running = run
    return run
  }

  start(): void {
    if (this.#o.pollIntervalMs <= 0 || this.#timer) return
    const tick = () => {
      void this.reload()
        .then((r) => {
          if (r.loaded.length || r.failed.length) this.#o.log.info(r, 'model repository poll')
        })
        .catch((err) => this.#o.log.error({ err }, 'model repository poll failed'))
        .finally(() => {
          if (!this.#closed) this.#timer = setTimeout(tick, this.#o.pollIntervalMs).unref()
        })
    }
    this.#timer = setTimeout(tick, this.#o.pollIntervalMs).unref()
  }

  /** Stops the watcher and waits for a running load and for retirements in progress. */
  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer) clearTimeout(this.#timer)
    await this.#running.catch(() => undefined)
    await Promise.all(this.#retiring)
  }

  async #scan(force: boolean): Promise<ReloadResult> {
    const result: ReloadResult = { loaded: [], failed: [], waiting: [] }
    if (this.#closed) return result
    const reg = this.#o.registry
    for (const e of await versionDirs(this.#o.root)) {
      const key = `${e.name}/${e.version}`
      const sig = await signature(e.dir)
      if (this.#attempted.get(key) === sig) continue
      const serving = reg.list().find((s) => s.name === e.name && s.serving)
      // Only newer versions: the highest version serves (publish), so loading an older one would hold
      // sessions that never answer an unpinned request.
      if (serving && serving.version >= e.version) continue
      if (!force && this.#candidates.get(key) !== sig) {
        this.#candidates.set(key, sig)
        result.waiting.push({ name: e.name, version: e.version })
        continue
      }
      this.#candidates.delete(key)
      this.#attempted.set(key, sig)
      await this.#loadOne(e, result)
    }
    return result
  }

  async #loadOne(e: Entry, result: ReloadResult): Promise<void> {
    const reg = this.#o.registry
    reg.setStatus({ ...e, state: 'loading' })
    let model: ModelVersion
    try {
      model = await this.#load(e, this.#o)
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err)
      reg.setStatus({ ...e, state: 'failed', error })
      result.failed.push({ name: e.name, version: e.version, error })
      this.#o.log.error({ model: `${e.name}/${e.version}`, err: error }, 'new model version failed; the previous version keeps serving')
      return
    }
    let previous: ModelVersion | undefined
    try {
      previous = reg.resolve(e.name)
    } catch {
      previous = undefined
    }
    reg.publish(model) // the swap: one Map write
    this.#generation++
    result.loaded.push({ name: e.name, version: e.version, replaced: previous?.version ?? null })
    this.#o.log.info({ model: model.key, replaced: previous?.key ?? null, executionProvider: model.graphs.reward.executionProvider }, 'model version swapped in')
    if (previous && previous.version !== model.version) this.#retire(previous, this.#generation)
  }

  /** Releases `old` once no request from before generation `gen` is still open. */
  #retire(old: ModelVersion, gen: number): void {
    const p = (async () => {
      const until = Date.now() + this.#o.drainTimeoutMs
      while ([...this.#open.keys()].some((g) => g < gen) && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
      if ([...this.#open.keys()].some((g) => g < gen)) this.#o.log.warn({ model: old.key }, 'old requests still open after the drain timeout; releasing anyway')
      await this.#o.engine.unload(old.key).catch((err) => this.#o.log.error({ err, model: old.key }, 'unload failed'))
      this.#o.registry.forget(old.name, old.version)
      this.#o.log.info({ model: old.key }, 'old model version released')
    })()
    this.#retiring.add(p)
    void p.finally(() => this.#retiring.delete(p))
  }

  /** Resolves when every retirement started so far has released its sessions (tests, shutdown). */
  async settled(): Promise<void> {
    await this.#running.catch(() => undefined)
    await Promise.all(this.#retiring)
  }
}
