// The bench's HTTP load generator: closed loop, bounded concurrency, timed to the last response. (autocannon with a
// fixed `amount` reports its duration on a 1 s sampling tick, which quantised every throughput ratio.)
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { pct } from './stats.ts'

/** POST a JSON body; resolves with the response headers on a 200 once the body is drained, rejects otherwise. */
export function post(agent: http.Agent, url: string, body: string): Promise<http.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve(res.headers) : reject(new Error(`status ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(body)
  })
}

export interface DriveResult {
  ok: number
  errors: number
  wallMs: number
  itemsPerS: number
  p50: number
  p99: number
}

/** `concurrency` workers each send the next body as soon as their previous answer is in (keep-alive). Wall time
 *  runs from the first send to the last answer: no sampling tick, no trailing idle. */
export async function drive(url: string, bodies: readonly string[], concurrency: number): Promise<DriveResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const latencies: number[] = []
  let errors = 0
  let next = 0
  const worker = async () => {
    while (next < bodies.length) {
      const body = bodies[next++]!
      const s = performance.now()
      try {
        await post(agent, url, body)
        latencies.push(performance.now() - s)
      } catch {
        errors++
      }
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const wallMs = performance.now() - t0
  agent.destroy()
  return { ok: latencies.length, errors, wallMs, itemsPerS: (latencies.length / wallMs) * 1000, p50: pct(latencies, 50), p99: pct(latencies, 99) }
}

/** Service/raw throughput ratio of one ABBA block (raw, svc, svc, raw over the same items per pass): the ratio of
 *  total times, i.e. of harmonic means, so a linear drift across the block cancels. */
export function abbaRatio(raw1: number, svc1: number, svc2: number, raw2: number): number {
  return (1 / raw1 + 1 / raw2) / (1 / svc1 + 1 / svc2)
}
