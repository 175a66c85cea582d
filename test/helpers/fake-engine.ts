// An Engine without ONNX Runtime for route and batcher tests. A row's score depends only on its own real
// positions (like the real graph), so batch composition and padding cannot change it. Runs can be held open
// with hold() to build queues deterministically.
import type { Engine, LoadedGraph, RewardFeeds, RewardOutput, StoredVision, VisionOutput } from '../../src/engine/types.ts'
import { EmbeddingStore, gatherImageEmbeds } from '../../src/engine/embedding-store.ts'

export function fakeRowScore(ids: ArrayLike<number>, imageSum = 0): number {
  let h = 0
  for (let i = 0; i < ids.length; i++) h = (h * 31 + Number(ids[i]) * (i + 1)) % 100_003
  return h / 10_000 - 5 + imageSum
}

export class FakeEngine implements Engine {
  /** Every row the engine actually ran, as id lists. */
  readonly rowsRun: number[][] = []
  readonly batches: number[] = []
  failNext = false
  /** Fails the run with this index (0 = the first runReward call), whatever runs before it. */
  failRun: number | null = null
  alive = true
  /** The real engine's embedding store logic (engine/embedding-store.ts); encodeImage keeps runVision's output. */
  store = new EmbeddingStore(128 * 2 ** 20)
  #gate: Promise<void> | null = null
  #open: (() => void) | null = null
  #waiting: Array<() => void> = []

  /** Subsequent runs block until release(). */
  hold(): void {
    this.#gate = new Promise((r) => (this.#open = r))
  }

  release(): void {
    this.#open?.()
    this.#gate = null
  }

  /** Resolves once `n` runs have started (and are possibly held). */
  async started(n: number): Promise<void> {
    while (this.batches.length < n) await new Promise<void>((r) => this.#waiting.push(r))
  }

  async load(): Promise<{ reward: LoadedGraph; vision: LoadedGraph }> {
    const g = { inputNames: [], outputNames: [], executionProvider: 'fake', fallbacks: [] }
    return { reward: g, vision: g }
  }

  async unload(): Promise<void> {}

  async runReward(_key: string, f: RewardFeeds): Promise<RewardOutput> {
    const rows: number[][] = []
    const scores = new Float32Array(f.rows)
    const imageEmbeds = gatherImageEmbeds(f, this.store)
    for (let r = 0; r < f.rows; r++) {
      const ids: number[] = []
      let imageSum = 0
      for (let t = 0; t < f.seqLen; t++) {
        const at = r * f.seqLen + t
        if (f.attentionMask[at] === 0n) continue
        ids.push(Number(f.inputIds[at]))
        if (f.imMask[at] === 1) imageSum += imageEmbeds[Number(f.imagePositions[at]) * f.dim]!
      }
      rows.push(ids)
      scores[r] = fakeRowScore(ids, imageSum)
    }
    await this.runStarted(f.rows)
    this.rowsRun.push(...rows)
    return { scores, inferenceMs: 0.1 }
  }

  /** Counts a run of `rows` rows as started, waits while held, and fails it when told to (failRun, failNext). */
  protected async runStarted(rows: number): Promise<void> {
    this.batches.push(rows)
    const index = this.batches.length - 1
    for (const w of this.#waiting.splice(0)) w()
    if (this.#gate) await this.#gate
    if (this.failRun === index) throw new Error('fake engine failure')
    if (this.failNext) {
      this.failNext = false
      throw new Error('fake engine failure')
    }
  }

  async runVision(_key: string, _image: Float32Array, _h: number, _w: number): Promise<VisionOutput> {
    throw new Error('FakeEngine has no vision graph')
  }

  async encodeImage(key: string, handle: string, lease: number, image: Float32Array, h: number, w: number): Promise<StoredVision> {
    return this.store.during(lease, async () => {
      const out = await this.runVision(key, image, h, w)
      const evicted = this.store.put(handle, key, out.embeds, out.tokens, out.dim, lease)
      return { tokens: out.tokens, dim: out.dim, inferenceMs: out.inferenceMs, evicted }
    })
  }

  retainImages(lease: number, handles: readonly string[]): void {
    this.store.retain(lease, handles)
  }

  releaseImages(lease: number): void {
    this.store.release(lease)
  }

  async health(): Promise<boolean> {
    return this.alive
  }

  async close(): Promise<void> {}
}
