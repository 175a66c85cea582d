// Concurrency-1 pairs: each encoded conversation scored in-process (raw session.run) and then through the service,
// one right after the other, so that a change in the host's speed hits both halves of a pair alike. Shared by
// run.ts (its "paired c=1" segment) and overhead.ts.
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import type { EncodedRow } from '../src/scheduler/types.ts'
import { post } from './load.ts'

export interface PairedRun {
  /** an in-process session (src/engine/onnx.ts stays the one file that imports onnxruntime-node) */
  session: Parameters<typeof runReward>[0]
  rows: readonly EncodedRow[]
  /** bodies[k]: the service request for rows[k] */
  bodies: readonly string[]
  url: string
  padId: number
  dim: number
}

/** `n` pairs over the rows in turn: per pair the raw and the service time (ms) and the service's answer headers. */
export async function pairedRounds(p: PairedRun, n: number): Promise<{ raw: number[]; svc: number[]; headers: http.IncomingHttpHeaders[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const raw: number[] = []
  const svc: number[] = []
  const headers: http.IncomingHttpHeaders[] = []
  try {
    for (let i = 0; i < n; i++) {
      const k = i % p.rows.length
      let t = performance.now()
      await runReward(p.session, packRewardBatch([p.rows[k]!], p.padId, p.dim))
      raw.push(performance.now() - t)
      t = performance.now()
      headers.push(await post(agent, p.url, p.bodies[k]!))
      svc.push(performance.now() - t)
    }
  } finally {
    agent.destroy()
  }
  return { raw, svc, headers }
}
