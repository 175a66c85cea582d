// worker_threads entry for media pixel work (transform-ops.ts); see transformer.ts.
import { parentPort } from 'node:worker_threads'
import { runTransform, transferables, type TransformRequest } from './transform-ops.ts'

parentPort!.on('message', (msg: TransformRequest & { id: number }) => {
  try {
    const result = runTransform(msg)
    parentPort!.postMessage({ id: msg.id, ok: true, result }, transferables(result))
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, ok: false, message: (err as Error).message })
  }
})
