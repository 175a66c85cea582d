// npm run bench:tokenize-inline — TOKENIZE_INLINE_CHARS on (the default, 2048) against 0 (every request's text
// tokenized on the worker thread), two servers side by side on the same model, one run:
// - concurrency 1: each hh-rlhf conversation sent to A and B in turn (order alternating), paired latency
//   difference per conversation; median [p25–p75].
// - CPU per request: each server's process CPU time (utime + stime from /proc, all its threads) over a closed-loop
//   segment at concurrency 8, ABBA blocks; CPU time is what the 2-core host runs short of at saturation, and it
//   does not depend on what else runs (the latency does).
// Env: BENCH_ITEMS (conversations, default 96), BENCH_BLOCKS (ABBA blocks, default 4).
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { cpuMs } from './cpu.ts'
import { loadConversations } from './dataset.ts'
import { drive, post } from './load.ts'
import { startServer } from './server.ts'
import { abbaRounds, median, pct } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_ITEMS ?? 96)
const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 4)
async function main(): Promise<void> {
  const bodies = loadConversations(root, N).map((messages) => JSON.stringify({ items: [{ messages }] }))
  const chars = bodies.map((b) => b.length)
  console.log(`${N} hh-rlhf conversations, body ${median(chars).toFixed(0)} characters median (max ${Math.max(...chars)}); load average ${os.loadavg()[0]!.toFixed(1)}`)
  const a = await startServer({ TOKENIZE_INLINE_CHARS: '2048' })
  const b = await startServer({ TOKENIZE_INLINE_CHARS: '0' })
  try {
    const url = (s: { base: string }) => `${s.base}/v1/score`
    const agentA = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const agentB = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const timed = async (agent: http.Agent, u: string, body: string) => {
      const s = performance.now()
      await post(agent, u, body)
      return performance.now() - s
    }
    for (const body of bodies.slice(0, 8)) await Promise.all([timed(agentA, url(a), body), timed(agentB, url(b), body)]) // warm-up
    const diff: number[] = []
    const la: number[] = []
    const lb: number[] = []
    for (let round = 0; round < 2; round++) {
      for (const [i, body] of bodies.entries()) {
        // A then B, or B then A (alternating), so neither server is always the one answering second
        let x: number, y: number
        if ((i + round) % 2 === 0) {
          x = await timed(agentA, url(a), body)
          y = await timed(agentB, url(b), body)
        } else {
          y = await timed(agentB, url(b), body)
          x = await timed(agentA, url(a), body)
        }
        la.push(x)
        lb.push(y)
        diff.push(y - x)
      }
    }
    agentA.destroy()
    agentB.destroy()
    console.log(`concurrency 1, ${diff.length} pairs: p50 inline ${median(la).toFixed(2)} ms, worker ${median(lb).toFixed(2)} ms; ` +
      `paired (worker - inline) ${median(diff).toFixed(3)} ms [p25 ${pct(diff, 25).toFixed(3)}, p75 ${pct(diff, 75).toFixed(3)}]`)

    const perReq = (s: { child: { pid?: number } }, segment: () => Promise<unknown>) => async () => {
      const c0 = cpuMs(s.child.pid!)
      await segment()
      return (cpuMs(s.child.pid!) - c0) / bodies.length
    }
    const segA = perReq(a, () => drive(url(a), bodies, 8))
    const segB = perReq(b, () => drive(url(b), bodies, 8))
    const { a: ca, b: cb } = await abbaRounds(segA, segB, BLOCKS)
    const ratio = ca.map((x, i) => cb[i]! / x)
    console.log(`CPU per request (server process, all threads; concurrency 8, ${BLOCKS} ABBA blocks): inline ${median(ca).toFixed(2)} ms, ` +
      `worker ${median(cb).toFixed(2)} ms, worker / inline ${median(ratio).toFixed(3)} [${Math.min(...ratio).toFixed(3)}–${Math.max(...ratio).toFixed(3)}]`)
    console.log(`load average at the end ${os.loadavg()[0]!.toFixed(1)}`)
  } finally {
    a.child.kill('SIGTERM')
    b.child.kill('SIGTERM')
  }
}

await main()
