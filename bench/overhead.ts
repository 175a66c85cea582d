// npm run bench:overhead — where the service's concurrency-1 overhead over the raw engine goes (issue 13, item 5).
//
// 1. Paired concurrency 1: each hh-rlhf conversation scored in-process (raw, src/engine/onnx.ts) and then through the
//    service; the service's own timing headers split its latency: x-inference-time (session.run in the engine
//    worker), x-preprocess-time (tokenization + template), x-queue-time (batcher). What is left is HTTP, Fastify's
//    hooks, JSON, the handler and the engine worker's message round trip. Medians of per-pair differences.
// 2. Main-thread CPU per request (/proc: utime + stime of the event loop's thread) at concurrency 1 for those
//    conversations, for a two-message conversation ("hi" / "hello": no tokenizing to speak of) and for GET /healthz
//    (Node HTTP + Fastify + our hooks, no scoring): the serial CPU a request costs the event loop.
// Env: BENCH_ITEMS (conversations, default 160), BENCH_PAIRS (default 320).
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.ts'
import { createSession } from '../src/engine/onnx.ts'
import { readVersion } from '../src/models/load.ts'
import { threadCpuMs } from './cpu.ts'
import { loadConversations } from './dataset.ts'
import { drive } from './load.ts'
import { pairedRounds } from './paired.ts'
import { benchModel } from './model.ts'
import { startServer } from './server.ts'
import { pct } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_ITEMS ?? 160)
const PAIRS = Number(process.env.BENCH_PAIRS ?? 320)
const config = loadConfig(process.env)

function getLoop(url: string, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const one = () => new Promise<void>((resolve, reject) => http.get(url, { agent }, (r) => r.resume().on('end', () => resolve())).on('error', reject))
  return (async () => {
    for (let i = 0; i < n; i++) await one()
    agent.destroy()
  })()
}

const med = (xs: number[]) => pct(xs, 50)
const f = (x: number) => x.toFixed(2)

async function main(): Promise<void> {
  const { modelsDir, entry } = await benchModel(config)
  const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: config.maxItemChars })
  const convs = loadConversations(root, N)
  const rows = convs.map((c) => encoder.finish(encoder.turns(c)))
  const { session } = await createSession(path.join(entry.dir, manifest.graphs.reward.file), { providers: ['cpu'], threads: config.threads, spin: config.ortSpin })
  const padId = manifest.tokenizer.pad_id
  const dim = manifest.config.hidden_size
  console.log(`model ${entry.name}/${entry.version}; ${rows.length} hh-rlhf conversations, ${f(rows.reduce((a, r) => a + r.ids.length, 0) / rows.length)} tokens mean; threads ${config.threads}; ${os.cpus().length} cpus, load average ${os.loadavg()[0]!.toFixed(1)} at start`)

  const { child, base } = await startServer({ MODELS_DIR: modelsDir })
  try {
    const url = `${base}/v1/score`
    const bodies = convs.map((messages) => JSON.stringify({ items: [{ messages }] }))
    const pairs = { session, rows, bodies, url, padId, dim }
    await pairedRounds(pairs, Math.min(40, rows.length)) // warm-up, not counted
    const { raw, svc, headers } = await pairedRounds(pairs, PAIRS)
    const header = (name: string) => headers.map((h) => Number(h[name]))
    const [inf, pre, queue] = [header('x-inference-time'), header('x-preprocess-time'), header('x-queue-time')]
    const diff = (a: number[], b: number[]) => med(a.map((x, i) => x - b[i]!))
    const rest = svc.map((s, i) => s - inf[i]! - pre[i]! - queue[i]!)
    console.log(`\nconcurrency 1, ${PAIRS} pairs (medians, ms)`)
    console.log(`  raw session.run in-process     ${f(med(raw))}`)
    console.log(`  service, client-measured       ${f(med(svc))}   overhead (paired service - raw) ${f(diff(svc, raw))}`)
    console.log(`  of which: engine worker's session.run - raw (paired)   ${f(diff(inf, raw))}`)
    console.log(`            tokenization + template (x-preprocess-time)  ${f(med(pre))}`)
    console.log(`            batcher queue (x-queue-time)                 ${f(med(queue))}`)
    console.log(`            the rest: HTTP, hooks, JSON, handler, engine message round trip  ${f(med(rest))}`)

    const pid = child.pid!
    const tiny = bodies.map(() => JSON.stringify({ items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] }))
    console.log(`\nmain-thread CPU per request at concurrency 1 (ms; /proc, 3 passes each)`)
    for (const [name, bs] of [['hh-rlhf conversation', bodies], ['"hi" / "hello"', tiny]] as const) {
      const a = threadCpuMs(pid)
      const res = await drive(url, [...bs, ...bs, ...bs], 1)
      const b = threadCpuMs(pid)
      console.log(`  POST /v1/score, ${name.padEnd(22)} ${f((b.main - a.main) / res.ok)}   (engine + other threads ${f((b.others - a.others) / res.ok)}; p50 latency ${f(res.p50)})`)
    }
    const n = 2000
    const a = threadCpuMs(pid)
    await getLoop(`${base}/healthz`, n)
    const b = threadCpuMs(pid)
    console.log(`  GET /healthz                           ${f((b.main - a.main) / n)}`)
    console.log(`\nload average at the end ${os.loadavg()[0]!.toFixed(1)}`)
  } finally {
    child.kill('SIGTERM')
    await session.release()
  }
}

await main()
