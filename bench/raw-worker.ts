// One raw-engine replica for `npm run bench` with ENGINE_REPLICAS > 1: its own session of reward.onnx (the
// service's session options), the bench's tokenized rows; runs the batches (row indices) it is sent, one after the
// other, and answers with each batch's time when they are done. The raw counterpart of the service's engine replicas.
import { parentPort, workerData } from 'node:worker_threads'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import type { EncodedRow } from '../src/scheduler/types.ts'

const init = workerData as { file: string; threads: number; spin: boolean; rows: EncodedRow[]; padId: number; dim: number }
const { session } = await createSession(init.file, { providers: ['cpu'], threads: init.threads, spin: init.spin })
parentPort!.on('message', async (msg: { batches: number[][] } | 'close') => {
  if (msg === 'close') {
    await session.release()
    process.exit(0)
  }
  const times: number[] = []
  for (const batch of msg.batches) {
    const t0 = performance.now()
    await runReward(session, packRewardBatch(batch.map((i) => init.rows[i]!), init.padId, init.dim))
    times.push(performance.now() - t0)
  }
  parentPort!.postMessage(times)
})
parentPort!.postMessage('ready')
