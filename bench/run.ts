// One command (npm run bench): the raw engine and the service, measured in one run on this machine.
//  1. raw: the model's reward.onnx in this process (src/engine/onnx.ts, same threads/spin settings as the
//     service), the same conversations tokenized the same way, batches of length-sorted rows (least padding:
//     the strictest baseline) at sizes 1..32 -> items/s; the best size is the baseline.
//  2. service: src/server.ts as a child process; autocannon at concurrency 1..64, one conversation per request,
//     a fixed number of requests per level (so slow levels are counted fully).
//  3. headline: BENCH_ROUNDS interleaved rounds of raw-vs-service at saturation, and concurrency-1 latency as
//     paired differences (each conversation raw then via HTTP with a keep-alive client, performance.now()).
// Env: BENCH_SECONDS (target seconds per level, default 8), BENCH_ITEMS (dataset size, default 256), and the
// server's own knobs (MODELS_DIR, DEFAULT_MODEL, THREADS, MAX_BATCH_SIZE, ...), which both sides read.
import { once } from 'node:events'
import http from 'node:http'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { loadConfig } from '../src/config.ts'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import { readVersion, versionDirs } from '../src/models/load.ts'
import { loadConversations } from './dataset.ts'
import { startServer } from './server.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)
const N_ITEMS = Number(process.env.BENCH_ITEMS ?? 256)
const CONCURRENCY = [1, 2, 4, 8, 16, 32, 64]
const SATURATION = 64
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const BATCHES = [1, 2, 4, 8, 16, 32].filter((b) => b <= config.batch.maxBatchSize)

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
const f = (x: number, d = 1) => x.toFixed(d)
const pad = (x: string | number, n: number) => String(x).padStart(n)

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
  /** Runs length-sorted batches of size b (in shuffled order) for ~seconds; items/s, tokens/s, per-batch ms. */
  const measureRaw = async (b: number, seconds: number) => {
    const batches = shuffled(Array.from({ length: Math.ceil(byLength.length / b) }, (_, i) => byLength.slice(i * b, i * b + b)))
    const times: number[] = []
    let items = 0
    let tokens = 0
    const t0 = performance.now()
    for (let i = 0; performance.now() - t0 < seconds * 1000 || i < 2; i++) {
      const batch = batches[i % batches.length]!
      const s = performance.now()
      await runReward(session, packRewardBatch(batch, padId, dim))
      times.push(performance.now() - s)
      items += batch.length
      tokens += batch.reduce((a, r) => a + r.ids.length, 0)
    }
    const secs = (performance.now() - t0) / 1000
    return { itemsPerS: items / secs, tokensPerS: tokens / secs, p50: pct(times, 50) }
  }
  let rawBest = { b: 0, itemsPerS: 0 }
  for (const b of BATCHES) {
    const r = await measureRaw(b, SECONDS)
    if (r.itemsPerS > rawBest.itemsPerS) rawBest = { b, itemsPerS: r.itemsPerS }
    console.log(`${pad(b, 5)}  ${pad(f(r.itemsPerS), 7)}  ${pad(f(r.tokensPerS, 0), 8)}  ${pad(f(r.p50, 2), 12)}`)
  }

  // ---- service -----------------------------------------------------------------------------------------
  const { child, base } = await startServer({ MODELS_DIR: modelsDir, MAX_PENDING_ITEMS: '4096' })
  try {
    const bodies = convs.map((c) => JSON.stringify({ items: [{ messages: c }] }))
    // Warm the service path (JIT, first batches) before measuring.
    const warm = new http.Agent({ keepAlive: true })
    await Promise.all(bodies.slice(0, 4).map((b) => post(warm, `${base}/v1/score`, b)))
    warm.destroy()

    // Concurrency-1 overhead, paired: each conversation is scored raw (in-process) and then through the service,
    // alternately, so load changes on the shared host hit both sides of each pair alike.
    const measurePaired = async (seconds: number) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const raw: number[] = []
      const svc: number[] = []
      const s0 = performance.now()
      for (let i = 0; performance.now() - s0 < seconds * 1000 || i < 5; i++) {
        const k = i % rows.length
        let s = performance.now()
        await runReward(session, packRewardBatch([rows[k]!], padId, dim))
        raw.push(performance.now() - s)
        s = performance.now()
        await post(agent, `${base}/v1/score`, bodies[k]!)
        svc.push(performance.now() - s)
      }
      agent.destroy()
      return { n: raw.length, raw: pct(raw, 50), svc: pct(svc, 50), diff: pct(svc.map((x, i) => x - raw[i]!), 50) }
    }
    let next = 0
    console.log(`\nservice (HTTP/1.1 keep-alive, autocannon, 1 conversation per request; raw best = batch ${rawBest.b})`)
    console.log('conc  requests  items/s  tokens/s  p50 ms  p99 ms  errors  service/raw')
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
      console.log(
        `${pad(connections, 4)}  ${pad(ok, 8)}  ${pad(f(itemsPerS), 7)}  ${pad(f(itemsPerS * meanTokens, 0), 8)}  ` +
          `${pad(f(r.latency.p50), 6)}  ${pad(f(r.latency.p99), 6)}  ${pad(r.errors + r.non2xx, 6)}  ${pad(f(itemsPerS / rawBest.itemsPerS, 2), 11)}`,
      )
    }
    // The host is shared (other jobs come and go), so the headline ratios come from interleaved rounds: each
    // round measures raw and service back to back, and the medians over rounds are reported.
    console.log(`\nheadline (${ROUNDS} interleaved rounds: raw batch ${rawBest.b} vs service at concurrency ${SATURATION}; then the same conversations one at a time, raw and service alternately)`)
    console.log('round  raw items/s  service items/s  ratio  raw single p50 ms  service c=1 p50 ms  paired overhead p50')
    const ratios: number[] = []
    const overheads: number[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      const raw = await measureRaw(rawBest.b, SECONDS)
      const r = await autocannon({
        url: `${base}/v1/score`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        connections: SATURATION,
        amount: Math.max(2 * SATURATION, Math.ceil(raw.itemsPerS * SECONDS)),
        timeout: 600,
        requests: [{ setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }) }],
      })
      const svc = r['2xx'] / r.duration
      const paired = await measurePaired(SECONDS)
      ratios.push(svc / raw.itemsPerS)
      overheads.push(paired.diff)
      console.log(
        `${pad(round, 5)}  ${pad(f(raw.itemsPerS), 11)}  ${pad(f(svc), 15)}  ${pad(f(svc / raw.itemsPerS, 2), 5)}  ` +
          `${pad(f(paired.raw, 2), 17)}  ${pad(f(paired.svc, 2), 18)}  ${pad(f(paired.diff, 2), 20)}`,
      )
    }
    console.log('\nsummary (medians over rounds)')
    console.log(`throughput at saturation: service/raw ${f(pct(ratios, 50), 2)} (target >= 0.85)`)
    console.log(`latency at concurrency 1: median paired (service - raw single-item) = ${f(pct(overheads, 50), 2)} ms (target <= 2 ms)`)
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
    await session.release()
  }
}

await main()
