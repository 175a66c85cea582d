// Which model versions exist, which serve, and why the others do not. Swapping a version is one Map write,
// so a later hot-reload can publish a new version atomically; requests keep the ModelVersion they resolved.
import { ServiceError } from '../errors.ts'
import type { ProviderFallback } from '../engine/types.ts'
import type { ModelVersion } from './model-version.ts'

export type ModelState = 'loading' | 'ready' | 'failed'

export interface ModelStatus {
  name: string
  version: number
  dir: string
  state: ModelState
  error?: string
  executionProvider?: string
  fallbacks?: ProviderFallback[]
}

export class ModelRegistry {
  readonly #status = new Map<string, ModelStatus>()
  readonly #ready = new Map<string, ModelVersion>() // name -> serving version
  #defaultName: string

  constructor(defaultName = '') {
    this.#defaultName = defaultName
  }

  setStatus(status: ModelStatus): void {
    this.#status.set(`${status.name}/${status.version}`, status)
  }

  /** Makes `model` the serving version of its name if it is the highest ready one. */
  publish(model: ModelVersion): void {
    this.setStatus({
      name: model.name,
      version: model.version,
      dir: model.dir,
      state: 'ready',
      executionProvider: model.graphs.reward.executionProvider,
      fallbacks: model.graphs.reward.fallbacks,
    })
    const cur = this.#ready.get(model.name)
    if (!cur || cur.version <= model.version) this.#ready.set(model.name, model)
  }

  get defaultName(): string {
    if (this.#defaultName) return this.#defaultName
    return [...this.#ready.keys()].sort()[0] ?? ''
  }

  /** The serving version for `name` (default model when absent); `name/version` pins a version. */
  resolve(name?: string): ModelVersion {
    const wanted = name ?? this.defaultName
    if (!wanted) throw new ServiceError('model_not_ready', 'no model is loaded; see GET /v1/models for why')
    const [base, ver] = wanted.includes('/') ? wanted.split('/', 2) : [wanted, undefined]
    const current = this.#ready.get(base!)
    if (ver === undefined && current) return current
    if (ver !== undefined && current && String(current.version) === ver) return current
    const known = [...this.#status.values()].filter((s) => s.name === base)
    if (known.length === 0) throw new ServiceError('unknown_model', `no model named ${JSON.stringify(wanted)}`)
    const why = known.map((s) => `${s.name}/${s.version}: ${s.state}${s.error ? ` (${s.error})` : ''}`).join('; ')
    if (ver !== undefined && !known.some((s) => String(s.version) === ver)) {
      throw new ServiceError('unknown_model', `model ${base} has no version ${ver}`)
    }
    throw new ServiceError('model_not_ready', `model ${wanted} is not serving: ${why}`)
  }

  /** Ready means at least one version serves (and the default model, when configured, is among them). */
  isReady(): boolean {
    if (this.#defaultName) return this.#ready.has(this.#defaultName)
    return this.#ready.size > 0
  }

  list(): Array<ModelStatus & { serving: boolean }> {
    return [...this.#status.values()]
      .sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version)
      .map((s) => ({ ...s, serving: this.#ready.get(s.name)?.version === s.version }))
  }

  /** Drops a retired version (hot reload unloaded it) from the listing; the serving version cannot be dropped. */
  forget(name: string, version: number): void {
    if (this.#ready.get(name)?.version === version) throw new Error(`${name}/${version} is serving; it cannot be forgotten`)
    this.#status.delete(`${name}/${version}`)
  }

  servingModels(): ModelVersion[] {
    return [...this.#ready.values()]
  }
}
