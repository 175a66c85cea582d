// One worker thread per tokenizer (per model version) for the request path's tokenization. Started on first
// use; an idle worker does not keep the process alive and stops after IDLE_MS (so a hot-reloaded-away model's
// worker goes away by itself); a crashed worker fails its pending calls and is started again on the next one.
import type { Worker } from 'node:worker_threads'
import { spawnWorker } from '../../util/worker.ts'
import type { ControlIds } from './tokenize.ts'

const IDLE_MS = 30_000

export interface TokenizerWorkerInit {
  file: string
  control: ControlIds
  wordSplit?: boolean
}

interface Pending {
  resolve(ids: number[][]): void
  reject(err: Error): void
}

export class TokenizerWorker {
  #worker: Worker | null = null
  #pending = new Map<number, Pending>()
  #next = 1
  #idle: NodeJS.Timeout | undefined

  constructor(private readonly init: TokenizerWorkerInit) {}

  encode(texts: readonly string[]): Promise<number[][]> {
    if (texts.length === 0) return Promise.resolve([])
    const w = this.#start()
    clearTimeout(this.#idle)
    const id = this.#next++
    return new Promise<number[][]>((resolve, reject) => {
      if (this.#pending.size === 0) w.ref()
      this.#pending.set(id, { resolve, reject })
      w.postMessage({ id, texts })
    })
  }

  #start(): Worker {
    if (this.#worker) return this.#worker
    const w = spawnWorker(new URL('./tokenize-worker.ts', import.meta.url), this.init)
    w.unref()
    this.#worker = w
    w.on('message', (msg: { id: number; ok: boolean; flat?: Int32Array; lengths?: Int32Array; message?: string }) => {
      const p = this.#pending.get(msg.id)
      if (!p) return
      this.#pending.delete(msg.id)
      if (this.#pending.size === 0) {
        w.unref()
        this.#idle = setTimeout(() => this.#stop(w), IDLE_MS).unref()
      }
      if (!msg.ok) return p.reject(new Error(`tokenizer worker: ${msg.message}`))
      const out: number[][] = []
      let at = 0
      for (const n of msg.lengths!) {
        out.push(Array.from(msg.flat!.subarray(at, at + n)))
        at += n
      }
      p.resolve(out)
    })
    const fail = (err: Error) => {
      if (this.#worker === w) this.#worker = null
      for (const p of this.#pending.values()) p.reject(new Error(`tokenizer worker stopped: ${err.message}`))
      this.#pending.clear()
    }
    w.on('error', fail)
    w.on('exit', (code) => fail(new Error(`exit code ${code}`)))
    return w
  }

  #stop(w: Worker): void {
    if (this.#worker !== w || this.#pending.size > 0) return
    this.#worker = null
    void w.terminate()
  }
}
