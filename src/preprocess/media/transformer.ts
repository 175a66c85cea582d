// Runs transform-ops on a small pool of worker threads (MEDIA_WORKERS; 0 = on the calling thread). Input
// buffers are transferred, not copied: callers must not use an RgbImage after handing it over. Workers start on
// first use, a crashed worker fails its pending jobs and is replaced, close() stops them all.
import type { Worker } from 'node:worker_threads'
import { spawnWorker } from '../../util/worker.ts'
import { runTransform, transferables, type TransformRequest, type TransformResult } from './transform-ops.ts'

export interface Transformer {
  run<T extends TransformResult>(req: TransformRequest): Promise<T>
  close(): Promise<void>
}

export const inlineTransformer: Transformer = {
  async run<T extends TransformResult>(req: TransformRequest) {
    return runTransform(req) as T
  },
  async close() {},
}

interface Pending {
  resolve: (v: TransformResult) => void
  reject: (e: Error) => void
}

interface Slot {
  worker: Worker
  pending: Map<number, Pending>
}

export class WorkerTransformer implements Transformer {
  private readonly slots: Array<Slot | null>
  private nextId = 1
  private closed = false

  constructor(size: number) {
    this.slots = Array.from({ length: size }, () => null)
  }

  run<T extends TransformResult>(req: TransformRequest): Promise<T> {
    if (this.closed) return Promise.reject(new Error('media transformer is closed'))
    const slot = this.pick()
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      // a busy worker keeps the process alive until its answer arrives; an idle one does not
      if (slot.pending.size === 0) slot.worker.ref()
      slot.pending.set(id, { resolve: resolve as (v: TransformResult) => void, reject })
      slot.worker.postMessage({ ...req, id }, transferables(req))
    })
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s?.worker.terminate()))
  }

  // the least busy worker, started if needed
  private pick(): Slot {
    let best = -1
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[i]
      if (!s) {
        this.slots[i] = this.start(i)
        return this.slots[i]!
      }
      if (best < 0 || s.pending.size < this.slots[best]!.pending.size) best = i
    }
    return this.slots[best]!
  }

  private start(i: number): Slot {
    const worker = spawnWorker(new URL('./transform-worker.ts', import.meta.url), null)
    worker.unref()
    const slot: Slot = { worker, pending: new Map() }
    worker.on('message', (msg: { id: number; ok: boolean; result?: TransformResult; message?: string }) => {
      const p = slot.pending.get(msg.id)
      if (!p) return
      slot.pending.delete(msg.id)
      if (slot.pending.size === 0) worker.unref()
      if (msg.ok) p.resolve(msg.result!)
      else p.reject(new Error(msg.message))
    })
    const fail = (err: Error) => {
      if (this.slots[i] === slot) this.slots[i] = null
      for (const p of slot.pending.values()) p.reject(new Error(`media worker stopped: ${err.message}`))
      slot.pending.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)))
    return slot
  }
}

export function createTransformer(workers: number): Transformer {
  return workers > 0 ? new WorkerTransformer(workers) : inlineTransformer
}
