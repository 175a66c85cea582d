// ENGINE_REPLICAS > 1: several engines (each a worker thread with its own sessions of every model) behind the one
// Engine interface, like Triton's instance_group count. On CPU a small model's ops are too small to split well
// over intra-op threads: measured on the 2-core host (bench/README.md, "Engine replicas"), two sessions of one
// thread each scored 1.5-1.7x the items/s of one session with two threads. A single item's latency is lower
// with all threads on it, so the default stays one replica.
//
// Image embeddings live in the engine that encoded them (embedding-store.ts, by handle), so every vision run and
// every batch that names stored embeddings goes to replica 0; text-only batches (and batches that carry their
// embeddings as floats) go to whichever replica has the fewest runs in flight, taking turns on ties.
import type { Engine, LoadedGraphs, ModelFiles, PackedRewardFeeds, RewardFeeds, RewardOutput, TransferStats } from './types.ts'

/** The replica a run goes to: 0 when it needs replica 0's embedding store, else the least busy; ties go to the
 *  first in cyclic order from `start`, so that runs sent one at a time (a model's warm-up and golden check, a
 *  lone client) take turns and every replica's sessions run before they serve. */
export function pickReplica(inFlight: readonly number[], needsStore: boolean, start = 0): number {
  if (needsStore) return 0
  const n = inFlight.length
  let best = start % n
  for (let k = 1; k < n; k++) {
    const i = (start + k) % n
    if (inFlight[i]! < inFlight[best]!) best = i
  }
  return best
}

/** Feeds that name embeddings in replica 0's store (rather than carrying them as floats). */
function needsStore(feeds: RewardFeeds | PackedRewardFeeds): boolean {
  return (feeds.imageRefs?.length ?? 0) > 0
}

export class ReplicatedEngine implements Engine {
  readonly #replicas: readonly Engine[]
  readonly #inFlight: number[]
  #start = 0
  /** Reward runs (plain and packed) each replica was given (the tests read it; /metrics has the same count). */
  readonly runs: number[]
  /** Present when every replica has the packed graph's run (the scoring service packs only then). */
  readonly runRewardPacked?: (key: string, feeds: PackedRewardFeeds) => Promise<RewardOutput>

  /** `onRun(replica)`: each reward run as it is dispatched (the app counts them in scorer_engine_replica_runs_total). */
  constructor(replicas: readonly Engine[], private readonly onRun: (replica: number) => void = () => {}) {
    if (replicas.length === 0) throw new Error('ReplicatedEngine needs at least one engine')
    this.#replicas = replicas
    this.#inFlight = replicas.map(() => 0)
    this.runs = replicas.map(() => 0)
    if (replicas.every((e) => e.runRewardPacked)) {
      this.runRewardPacked = (key, feeds) =>
        this.#on(this.#pick(feeds), (e) => e.runRewardPacked!(key, feeds))
    }
  }

  /** The replica for a run, and the next tie-break start after it. */
  #pick(feeds: RewardFeeds | PackedRewardFeeds): number {
    const i = pickReplica(this.#inFlight, needsStore(feeds), this.#start)
    if (!needsStore(feeds)) this.#start = (i + 1) % this.#replicas.length
    return i
  }

  async #on<T>(i: number, run: (e: Engine) => Promise<T>): Promise<T> {
    this.#inFlight[i]!++
    this.runs[i]!++
    this.onRun(i)
    try {
      return await run(this.#replicas[i]!)
    } finally {
      this.#inFlight[i]!--
    }
  }

  /** Every replica loads the version; if any fails, the ones that loaded it unload it again (a version serves
   *  everywhere or nowhere) and the first failure is thrown. */
  async load(key: string, files: ModelFiles): Promise<LoadedGraphs> {
    const results = await Promise.allSettled(this.#replicas.map((e) => e.load(key, files)))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await Promise.all(results.map((r, i) => (r.status === 'fulfilled' ? this.#replicas[i]!.unload(key).catch(() => {}) : undefined)))
      throw failed.reason
    }
    return (results[0] as PromiseFulfilledResult<LoadedGraphs>).value
  }

  async unload(key: string): Promise<void> {
    await Promise.all(this.#replicas.map((e) => e.unload(key)))
  }

  runReward(key: string, feeds: RewardFeeds) {
    return this.#on(this.#pick(feeds), (e) => e.runReward(key, feeds))
  }

  runVision(key: string, image: Float32Array, height: number, width: number) {
    return this.#replicas[0]!.runVision(key, image, height, width)
  }

  encodeImage(key: string, handle: string, lease: number, image: Float32Array, height: number, width: number) {
    return this.#replicas[0]!.encodeImage(key, handle, lease, image, height, width)
  }

  retainImages(lease: number, handles: readonly string[]): void {
    this.#replicas[0]!.retainImages(lease, handles)
  }

  releaseImages(lease: number): void {
    this.#replicas[0]!.releaseImages(lease)
  }

  transferStats(): TransferStats {
    const sum = { toEngine: 0, fromEngine: 0, handedBack: 0 }
    for (const e of this.#replicas) {
      const s = e.transferStats?.()
      if (s) {
        sum.toEngine += s.toEngine
        sum.fromEngine += s.fromEngine
        sum.handedBack += s.handedBack ?? 0
      }
    }
    return sum
  }

  /** Healthy while every replica is: runs sent to a dead one would fail. */
  async health(): Promise<boolean> {
    return (await Promise.all(this.#replicas.map((e) => e.health()))).every(Boolean)
  }

  async close(): Promise<void> {
    await Promise.all(this.#replicas.map((e) => e.close()))
  }
}
