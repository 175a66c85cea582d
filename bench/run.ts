// One command (npm run bench): the raw engine and the service, measured in one run on this machine.
//  1. raw: the model's reward.onnx in this process (src/engine/onnx.ts, same threads/spin settings as the
//     service), the same conversations tokenized the same way, batches of length-sorted rows (least padding:
//     the strictest baseline) at sizes 1..32 -> items/s; the best size is the baseline.
//  2. service: src/server.ts as a child process; autocannon at concurrency 1..64, one conversation per request,
//     a fixed number of requests per level (so slow levels are counted fully); plus a sequential keep-alive
//     client at concurrency 1 for sub-millisecond latency.
// Env: BENCH_SECONDS (target seconds per level, default 8), BENCH_ITEMS (dataset size, default 256), and the
// server's own knobs (MODELS_DIR, DEFAULT_MODEL, THREADS, MAX_BATCH_SIZE, ...), which both sides read.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { loadConfig } from '../src/config.ts'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/engine/pack.ts'
import { readVersion, versionDirs } from '../src/models/load.ts'
import { loadConversations } from './dataset.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)
const N_ITEMS = Number(process.env.BENCH_ITEMS ?? 256)
const CONCURRENCY = [1, 2, 4, 8, 16, 32, 64]
const BATCHES = [1, 2, 4, 8, 16, 32].filter((b) => b <= config.batch.maxBatchSize)

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const f = (x: number, d = 1) => x.toFixed(d)
const pad = (x: string | number, n: number) => String(x).padStart(n)

async function freePort(): Promise<number> {
  const srv = net.createServer().listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as net.AddressInfo).port
  srv.close()
  return port
}

/** Deterministic shuffle (mulberry32) so runs are comparable. */
function shuffled<T>(xs: T[], seed = 7): T[] {
  const out = [...xs]
  let a = seed
  const rnd = () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

function post(agent: http.Agent, url: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function main() {
  const modelsDir = path.resolve(root, config.modelsDir)
  const entries = (await versionDirs(modelsDir)).filter((e) => !config.defaultModel || e.name === config.defaultModel)
  const entry = entries.sort((a, b) => b.version - a.version)[0]
  if (!entry) throw new Error(`no model under ${modelsDir}`)
  const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: config.batch.maxBatchTokens, maxItemChars: config.maxItemChars })
  const convs = loadConversations(root, N_ITEMS)
  const rows = convs.map((c) => encoder.finish(encoder.turns(c)))
  const meanTokens = rows.reduce((a, r) => a + r.ids.length, 0) / rows.length
  console.log(
    `model ${entry.name}/${entry.version}; ${rows.length} hh-rlhf conversations, mean ${f(meanTokens)} tokens ` +
      `(max_seq_len ${manifest.max_seq_len}); threads ${config.threads}, spin ${config.ortSpin}; ~${SECONDS}s per level`,
  )

  // ---- raw engine --------------------------------------------------------------------------------------
  const { session, executionProvider } = await createSession(path.join(entry.dir, manifest.graphs.reward.file), {
    providers: ['cpu'],
    threads: config.threads,
    spin: config.ortSpin,
  })
  const padId = manifest.tokenizer.pad_id
  const dim = manifest.config.hidden_size
  const byLength = [...rows].sort((a, b) => a.ids.length - b.ids.length)
  await runReward(session, packRewardBatch(byLength.slice(0, 2), padId, dim)) // warm-up
  console.log(`\nraw engine (in-process, ${executionProvider}; length-sorted batches in shuffled order)`)
  console.log('batch  items/s  tokens/s  ms/batch p50')
  let rawBest = { b: 0, itemsPerS: 0 }
  let rawSingleP50 = 0
  for (const b of BATCHES) {
    const batches = shuffled(Array.from({ length: Math.ceil(byLength.length / b) }, (_, i) => byLength.slice(i * b, i * b + b)))
    const times: number[] = []
    let items = 0
    let tokens = 0
    const t0 = performance.now()
    for (let i = 0; performance.now() - t0 < SECONDS * 1000 || i < 2; i++) {
      const batch = batches[i % batches.length]!
      const s = performance.now()
      await runReward(session, packRewardBatch(batch, padId, dim))
      times.push(performance.now() - s)
      items += batch.length
      tokens += batch.reduce((a, r) => a + r.ids.length, 0)
    }
    const secs = (performance.now() - t0) / 1000
    const itemsPerS = items / secs
    if (b === 1) rawSingleP50 = pct(times, 50)
    if (itemsPerS > rawBest.itemsPerS) rawBest = { b, itemsPerS }
    console.log(`${pad(b, 5)}  ${pad(f(itemsPerS), 7)}  ${pad(f(tokens / secs, 0), 8)}  ${pad(f(pct(times, 50), 2), 12)}`)
  }
  await session.release()

  // ---- service -----------------------------------------------------------------------------------------
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/server.ts')], {
    cwd: root,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', MODELS_DIR: modelsDir, MAX_PENDING_ITEMS: '4096' },
    stdio: ['ignore', 'inherit', 'ignore'],
  })
  try {
    const base = `http://127.0.0.1:${port}`
    for (let i = 0; ; i++) {
      if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break
      if (i > 1200 || child.exitCode !== null) throw new Error('service did not become ready')
      await new Promise((r) => setTimeout(r, 100))
    }
    const bodies = convs.map((c) => JSON.stringify({ items: [{ messages: c }] }))
    // Warm the service path (JIT, first batches) before measuring.
    const warm = new http.Agent({ keepAlive: true })
    await Promise.all(bodies.slice(0, 4).map((b) => post(warm, `${base}/v1/score`, b)))
    warm.destroy()

    // Concurrency 1 with a keep-alive client and performance.now(): autocannon's latencies are whole ms.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const seq: number[] = []
    const s0 = performance.now()
    while (performance.now() - s0 < SECONDS * 1000 || seq.length < 5) {
      const s = performance.now()
      await post(agent, `${base}/v1/score`, bodies[seq.length % bodies.length]!)
      seq.push(performance.now() - s)
    }
    agent.destroy()
    const c1p50 = pct(seq, 50)

    let next = 0
    console.log(`\nservice (HTTP/1.1 keep-alive, autocannon, 1 conversation per request; raw best = batch ${rawBest.b})`)
    console.log('conc  requests  items/s  tokens/s  p50 ms  p99 ms  errors  service/raw')
    let serviceBest = 0
    for (const connections of CONCURRENCY) {
      const amount = Math.max(4 * connections, Math.ceil(rawBest.itemsPerS * SECONDS))
      const r = await autocannon({
        url: `${base}/v1/score`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        connections,
        amount,
        timeout: 600,
        requests: [{ setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }) }],
      })
      const ok = r['2xx']
      const itemsPerS = ok / r.duration
      serviceBest = Math.max(serviceBest, itemsPerS)
      console.log(
        `${pad(connections, 4)}  ${pad(ok, 8)}  ${pad(f(itemsPerS), 7)}  ${pad(f(itemsPerS * meanTokens, 0), 8)}  ` +
          `${pad(f(r.latency.p50), 6)}  ${pad(f(r.latency.p99), 6)}  ${pad(r.errors + r.non2xx, 6)}  ${pad(f(itemsPerS / rawBest.itemsPerS, 2), 11)}`,
      )
    }
    console.log(`sequential keep-alive client (concurrency 1): ${seq.length} requests, p50 ${f(c1p50, 2)} ms, p99 ${f(pct(seq, 99), 2)} ms`)
    console.log('\nsummary')
    console.log(
      `throughput: raw best ${f(rawBest.itemsPerS)} items/s (batch ${rawBest.b}); service best ${f(serviceBest)} items/s; ` +
        `service/raw ${f(serviceBest / rawBest.itemsPerS, 2)} (target >= 0.85)`,
    )
    console.log(
      `latency at concurrency 1: service p50 ${f(c1p50, 2)} ms, raw single-item p50 ${f(rawSingleP50, 2)} ms, ` +
        `overhead ${f(c1p50 - rawSingleP50, 2)} ms (target <= 2 ms)`,
    )
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
}

await main()
