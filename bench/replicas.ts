// npm run bench:replicas — ENGINE_REPLICAS on this host, one run:
// 1. raw engine: one session with all cores as intra-op threads against one session per core with one thread
//    each (bench/raw-worker.ts, every configuration in worker threads, same rows, length-sorted batches dealt out
//    in turn), BENCH_ROUNDS rounds in a fresh order each; items/s and CPU ms per item (process.cpuUsage).
// 2. service: two servers side by side (ENGINE_REPLICAS=1 with THREADS=cores, the default; ENGINE_REPLICAS=cores
//    with THREADS=1), ABBA blocks of one closed-loop pass at concurrency 64, and the concurrency-1 p50 of each.
// Env: BENCH_ITEMS (160), BENCH_ROUNDS (4), BENCH_BLOCKS (4).
import { once } from 'node:events'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.ts'
import { readVersion, versionDirs } from '../src/models/load.ts'
import { selfCpuMs } from './cpu.ts'
import { dealt, rawPool } from './raw-pool.ts'
import { loadConversations } from './dataset.ts'
import { abbaRatio, drive } from './load.ts'
import { startServer } from './server.ts'
import { fmtSpread, median, mulberry32, shuffled } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_ITEMS ?? 160)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4)
const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 4)
const cores = os.availableParallelism()
const f = (x: number, d = 1) => x.toFixed(d)

async function main() {
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
  const modelsDir = path.resolve(root, config.modelsDir)
  const entry = (await versionDirs(modelsDir)).sort((a, b) => b.version - a.version)[0]
  if (!entry) throw new Error(`no model under ${modelsDir}`)
  const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: config.maxItemChars })
  const convs = loadConversations(root, N)
  const rows = convs.map((c) => encoder.finish(encoder.turns(c))).sort((a, b) => a.ids.length - b.ids.length)
  console.log(`model ${entry.name}/${entry.version}; ${N} hh-rlhf conversations; ${cores} cpus, load average ${f(os.loadavg()[0]!)} at start`)

  // ---- raw --------------------------------------------------------------------------------------------------
  const file = path.join(entry.dir, manifest.graphs.reward.file)
  const init = { file, spin: false, rows, padId: manifest.tokenizer.pad_id, dim: manifest.config.hidden_size }
  const configs = [
    { name: `1 session x ${cores} threads, b=1`, sessions: 1, threads: cores, b: 1 },
    { name: `1 session x ${cores} threads, b=4`, sessions: 1, threads: cores, b: 4 },
    { name: `${cores} sessions x 1 thread, b=1`, sessions: cores, threads: 1, b: 1 },
    { name: `${cores} sessions x 1 thread, b=2`, sessions: cores, threads: 1, b: 2 },
  ]
  const pools = await Promise.all(configs.map((c) => rawPool(c.sessions, { ...init, threads: c.threads })))
  const results = configs.map(() => ({ itemsPerS: [] as number[], cpuMs: [] as number[] }))
  const pass = async (k: number, record = true) => {
    const c = configs[k]!
    const batches = shuffled(Array.from({ length: Math.ceil(rows.length / c.b) }, (_, i) => i), 7 + c.b).map((i) =>
      Array.from({ length: Math.min(rows.length, i * c.b + c.b) - i * c.b }, (_, j) => i * c.b + j),
    )
    const c0 = selfCpuMs()
    const t0 = performance.now()
    await dealt(pools[k]!, batches)
    if (!record) return
    results[k]!.itemsPerS.push((rows.length / (performance.now() - t0)) * 1000)
    results[k]!.cpuMs.push((selfCpuMs() - c0) / rows.length)
  }
  for (let k = 0; k < configs.length; k++) await pass(k, false) // warm-up: JIT, ORT arenas
  const rnd = mulberry32(1)
  for (let round = 0; round < ROUNDS; round++) for (const k of shuffled([0, 1, 2, 3], Math.floor(rnd() * 2 ** 31))) await pass(k)
  await Promise.all(pools.flat().map((w) => w.close()))
  console.log(`\nraw engine, ${ROUNDS} rounds (median [min–max])`)
  console.log('configuration                        items/s                 CPU ms/item')
  configs.forEach((c, k) =>
    console.log(`${c.name.padEnd(36)} ${fmtSpread(results[k]!.itemsPerS, 1).padEnd(22)}  ${f(median(results[k]!.cpuMs), 2)}`),
  )
  const bestOf = (ks: number[]) => Math.max(...ks.map((k) => median(results[k]!.itemsPerS)))
  console.log(`best ${cores} x 1 / best 1 x ${cores}: ${f(bestOf([2, 3]) / bestOf([0, 1]), 2)}`)

  // ---- service ----------------------------------------------------------------------------------------------
  const bodies = shuffled(convs.map((c) => JSON.stringify({ items: [{ messages: c }] })), 11)
  const a = await startServer({ MODELS_DIR: modelsDir, MAX_PENDING_ITEMS: '4096', ENGINE_REPLICAS: '1', THREADS: String(cores) })
  const b = await startServer({ MODELS_DIR: modelsDir, MAX_PENDING_ITEMS: '4096', ENGINE_REPLICAS: String(cores), THREADS: '1' })
  try {
    const url = (s: { base: string }) => `${s.base}/v1/score`
    await drive(url(a), bodies.slice(0, 32), 8)
    await drive(url(b), bodies.slice(0, 32), 8)
    const ratios: number[] = []
    const sat = { a: [] as number[], b: [] as number[] }
    console.log(`\nservice, ${BLOCKS} ABBA blocks at concurrency 64 (A: ENGINE_REPLICAS=1 THREADS=${cores}; B: ENGINE_REPLICAS=${cores} THREADS=1)`)
    for (let i = 1; i <= BLOCKS; i++) {
      const a1 = (await drive(url(a), bodies, 64)).itemsPerS
      const b1 = (await drive(url(b), bodies, 64)).itemsPerS
      const b2 = (await drive(url(b), bodies, 64)).itemsPerS
      const a2 = (await drive(url(a), bodies, 64)).itemsPerS
      const r = abbaRatio(a1, b1, b2, a2)
      ratios.push(r)
      sat.a.push(a1, a2)
      sat.b.push(b1, b2)
      console.log(`block ${i}: A ${f(a1)}, ${f(a2)} items/s; B ${f(b1)}, ${f(b2)} items/s; B/A ${f(r, 3)}`)
    }
    const c1 = { a: [] as number[], b: [] as number[] }
    for (let i = 0; i < 2; i++) {
      c1.a.push((await drive(url(a), bodies.slice(0, 48), 1)).p50)
      c1.b.push((await drive(url(b), bodies.slice(0, 48), 1)).p50)
    }
    console.log(
      `\nsummary: at concurrency 64 B/A = ${fmtSpread(ratios, 3)} (A ${f(median(sat.a))}, B ${f(median(sat.b))} items/s); ` +
        `concurrency-1 p50 A ${f(median(c1.a), 2)} ms, B ${f(median(c1.b), 2)} ms; load average at the end ${f(os.loadavg()[0]!)}`,
    )
  } finally {
    for (const s of [a, b]) {
      s.child.kill('SIGTERM')
      await once(s.child, 'exit')
    }
  }
}

await main()
