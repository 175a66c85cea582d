// Main-thread proxy of an engine worker, which owns one session of each graph of every model and runs one ORT
// call at a time (ENGINE_REPLICAS > 1 puts several behind replicas.ts). Requests are matched to replies by id;
// if the worker dies every pending call is rejected and health() turns false (readiness follows).
import type { Worker } from 'node:worker_threads'
import { spawnWorker } from '../util/worker.ts'
import type { Engine, LoadedGraphs, ModelFiles, PackedRewardFeeds, RewardFeeds, RewardOutput, StoredVision, TransferStats, VisionOutput } from './types.ts'
import type { EngineRequest, EngineResponse, WorkerInit } from './protocol.ts'
import { EmbeddingsMissing } from './embedding-store.ts'

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void }
// Distributes the request union over its members so each op keeps its own fields.
type Outgoing<R> = R extends { id: number } ? Omit<R, 'id'> : never

export class EngineError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'EngineError'
  }
}

export class WorkerEngine implements Engine {
  readonly #worker: Worker
  readonly #pending = new Map<number, Pending>()
  readonly #stop = new SharedArrayBuffer(4)
  readonly #exited: Promise<void>
  #nextId = 1
  #dead: Error | null = null
  readonly #bytes: TransferStats = { toEngine: 0, fromEngine: 0, handedBack: 0 }

  constructor(init: WorkerInit) {
    // Before ORT's environment exists (see onnx.ts): no telemetry, no mat-debug-<pid>.log left in $TMPDIR.
    process.env.ORT_DISABLE_TELEMETRY ??= '1'
    this.#worker = spawnWorker(new URL('./engine-worker.ts', import.meta.url), { ...init, stop: this.#stop })
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()))
    this.#worker.on('message', (msg: EngineResponse) => {
      const p = this.#pending.get(msg.id)
      if (!p) return
      this.#pending.delete(msg.id)
      if (msg.ok) {
        this.#bytes.fromEngine += msg.bytes
        this.#bytes.handedBack! += msg.handedBack
        p.resolve(msg.result)
      } else p.reject(msg.missing ? new EmbeddingsMissing(msg.missing) : new EngineError(msg.message))
    })
    const fail = (err: Error) => {
      this.#dead ??= err
      for (const p of this.#pending.values()) p.reject(new EngineError(`engine worker stopped: ${err.message}`))
      this.#pending.clear()
    }
    this.#worker.on('error', fail)
    this.#worker.on('exit', (code) => fail(new Error(`exit code ${code}`)))
  }

  #call<T>(req: Outgoing<EngineRequest>, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.#dead) return Promise.reject(new EngineError(`engine worker stopped: ${this.#dead.message}`))
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.#send({ ...req, id } as EngineRequest, transfer)
    })
  }

  #send(req: EngineRequest, transfer: ArrayBuffer[]): void {
    this.#bytes.toEngine += transfer.reduce((n, b) => n + b.byteLength, 0)
    this.#worker.postMessage(req, transfer)
  }

  /** Fire and forget (id 0: no reply): nothing to wait for, and a dead worker has no pins to keep. */
  #post(req: Outgoing<EngineRequest>): void {
    if (!this.#dead) this.#send({ ...req, id: 0 } as EngineRequest, [])
  }

  load(key: string, files: ModelFiles) {
    return this.#call<LoadedGraphs>({ op: 'load', key, files })
  }

  unload(key: string) {
    return this.#call<void>({ op: 'unload', key })
  }

  /** The feeds' buffers are transferred to the worker: callers must not touch them afterwards. */
  runReward(key: string, feeds: RewardFeeds) {
    const transfer = [
      feeds.inputIds.buffer,
      feeds.imageEmbeds.buffer,
      feeds.imagePositions.buffer,
      feeds.imMask.buffer,
      feeds.attentionMask.buffer,
      feeds.readoutIndex.buffer,
    ] as ArrayBuffer[]
    return this.#call<RewardOutput>({ op: 'reward', key, feeds }, [...new Set(transfer)])
  }

  /** The feeds' buffers are transferred to the worker. */
  runRewardPacked(key: string, feeds: PackedRewardFeeds) {
    const f = feeds
    const transfer = [f.inputIds, f.imageEmbeds, f.imagePositions, f.imMask, f.attentionMask, f.branchStart, f.branchMask, f.readoutIndex]
    return this.#call<RewardOutput>({ op: 'rewardPacked', key, feeds }, [...new Set(transfer.map((a) => a.buffer as ArrayBuffer))])
  }

  /** `image`'s buffer is transferred to the worker. */
  runVision(key: string, image: Float32Array, height: number, width: number) {
    return this.#call<VisionOutput>({ op: 'vision', key, image, height, width }, [image.buffer as ArrayBuffer])
  }

  /** `image`'s buffer is transferred; the embeddings stay in the worker's store under `handle`. */
  encodeImage(key: string, handle: string, lease: number, image: Float32Array, height: number, width: number) {
    return this.#call<StoredVision>({ op: 'encodeImage', key, handle, lease, image, height, width }, [image.buffer as ArrayBuffer])
  }

  retainImages(lease: number, handles: readonly string[]): void {
    if (handles.length > 0) this.#post({ op: 'retain', lease, handles })
  }

  releaseImages(lease: number): void {
    this.#post({ op: 'release', lease })
  }

  /** Typed-array bytes sent to and received from the worker so far (transfer lists: nothing else is large). */
  transferStats(): TransferStats {
    return { ...this.#bytes }
  }

  /** Liveness of the worker, answered without a round trip: a ping would queue behind a long batch and make
   *  readiness flap exactly when the service is busiest. */
  async health(): Promise<boolean> {
    return this.#dead === null
  }

  /** Stops the worker once it is between native calls. Never worker.terminate() (nor process.exit) while a
   *  session is being created or run: the native call returns into a terminating env, node-addon-api throws a
   *  Napi::Error nothing can catch and the process aborts (exit 134) — what a start-up timeout during a model
   *  load did. The worker reads the stop flag between the sessions of a load and the close message once idle,
   *  so this waits for at most the native call in progress (one session's creation or one run). */
  async close(): Promise<void> {
    this.#dead ??= new Error('closed')
    Atomics.store(new Int32Array(this.#stop), 0, 1)
    this.#worker.postMessage({ op: 'close', id: 0 } satisfies EngineRequest)
    await this.#exited
  }
}
