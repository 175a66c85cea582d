// The raw engine's replicas for the benches (`npm run bench` with ENGINE_REPLICAS > 1, `npm run bench:replicas`):
// n worker threads (bench/raw-worker.ts), each with its own session of reward.onnx and the bench's rows, and a pass
// that deals the batches out to them in turn, as the service's replicas share the batcher's batches.
import { once } from 'node:events'
import { spawnWorker } from '../src/util/worker.ts'
import type { EncodedRow } from '../src/scheduler/types.ts'

export interface RawReplicaInit {
  file: string
  threads: number
  spin: boolean
  rows: EncodedRow[]
  padId: number
  dim: number
}

export interface RawReplica {
  /** Runs the batches (row indices) one after the other; each batch's time in ms. */
  run(batches: number[][]): Promise<number[]>
  close(): Promise<void>
}

export async function rawPool(n: number, init: RawReplicaInit): Promise<RawReplica[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const w = spawnWorker(new URL('./raw-worker.ts', import.meta.url), init)
      await once(w, 'message')
      return {
        run: async (batches: number[][]) => {
          w.postMessage({ batches })
          return (await once(w, 'message'))[0] as number[]
        },
        close: async () => {
          w.postMessage('close')
          await once(w, 'exit')
        },
      }
    }),
  )
}

/** Batch k goes to replica k mod n; resolves when every replica is done, with every batch's time. */
export async function dealt(pool: RawReplica[], batches: number[][]): Promise<number[]> {
  const each = await Promise.all(pool.map((w, r) => w.run(batches.filter((_, k) => k % pool.length === r))))
  return each.flat()
}
