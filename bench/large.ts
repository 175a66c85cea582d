// npm run bench:large — a large model version (the full-width import of `npm run check:full-width --keep DIR`,
// or a real import) on this machine's cpu: start-up time and peak RSS of the service (first start hashes every
// file; the second reuses the checksum cache), then decoder tokens/s at a few row lengths, raw engine vs service.
//
// Memory: a full-width 2-layer model is ~4 GB of fp32 weights; the raw engine and the service each hold a copy, so
// the phases run one after the other (raw, then service), never both at once. Each phase does BENCH_ROUNDS passes
// over the same rows, one row per run (batch 1, the cpu default for long rows); reported: median and min–max of
// tokens/s over passes, and the service/raw ratio of the medians.
//
// Env: LARGE_MODEL_DIR (required: models/<name>/<version>), BENCH_LENGTHS (256,1024), BENCH_ROWS (3),
// BENCH_ROUNDS (3), THREADS (server and raw engine; default: all cores).
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import { readVersion } from '../src/models/load.ts'
import { startServer } from './server.ts'
import { median } from './stats.ts'

const dir = process.env.LARGE_MODEL_DIR
if (!dir) throw new Error('LARGE_MODEL_DIR=models/<name>/<version> is required (npm run check:full-width -- --keep DIR makes one)')
const LENGTHS = (process.env.BENCH_LENGTHS ?? '256,1024').split(',').map(Number)
const ROWS = Number(process.env.BENCH_ROWS ?? 3)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const THREADS = Number(process.env.THREADS || os.availableParallelism())
const f = (x: number, d = 1) => x.toFixed(d)
const spread = (xs: number[]) => `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`

function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : NaN
}

/** A user/assistant conversation of about `tokens` tokens (words of the hh-rlhf kind, repeated). */
function conversation(tokens: number, seed: number) {
  const words = ['the', 'reward', 'model', 'scores', 'this', 'answer', 'because', 'it', 'is', 'helpful', 'and', 'honest']
  const text = Array.from({ length: tokens }, (_, i) => words[(i * 7 + seed) % words.length]).join(' ')
  return [
    { role: 'user', content: `Question ${seed}: ${text.slice(0, text.length / 2)}` },
    { role: 'assistant', content: text.slice(text.length / 2) },
  ]
}

async function main() {
  const abs = path.resolve(dir!)
  const version = Number(path.basename(abs))
  const name = path.basename(path.dirname(abs))
  const { manifest, encoder } = await readVersion({ name, version, dir: abs }, { maxBatchTokens: 0, maxItemChars: 10_000_000 })
  const bytes = Object.values(manifest.files).reduce((n, x) => n + x.bytes, 0)
  console.log(
    `model ${name}/${version}: ${manifest.dtype}, ${manifest.graphs.reward.attention}, ${manifest.config.num_params} parameters, ` +
      `${f(bytes / 2 ** 30, 2)} GiB on disk; threads ${THREADS}; ${os.cpus().length} cpus, load ${f(os.loadavg()[0]!)}`,
  )
  const convs = LENGTHS.map((L) => Array.from({ length: ROWS }, (_, i) => conversation(L, i)))
  const rows = convs.map((cs) => cs.map((c) => encoder.finish(encoder.turns(c as never))))
  const tokens = rows.map((rs) => rs.reduce((n, r) => n + r.ids.length, 0))

  // raw engine
  let t0 = performance.now()
  const { session } = await createSession(path.join(abs, manifest.graphs.reward.file), { providers: ['cpu'], threads: THREADS, spin: false })
  const rawLoadS = (performance.now() - t0) / 1000
  const pad = manifest.tokenizer.pad_id
  const dim = manifest.config.hidden_size
  await runReward(session, packRewardBatch([rows[0]![0]!], pad, dim)) // warm-up, not counted
  const raw = LENGTHS.map(() => [] as number[])
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < LENGTHS.length; k++) {
      t0 = performance.now()
      for (const row of rows[k]!) await runReward(session, packRewardBatch([row], pad, dim))
      raw[k]!.push(tokens[k]! / ((performance.now() - t0) / 1000))
    }
  }
  await session.release()
  const rawRss = process.memoryUsage().rss

  // the service: two starts on a fresh checksum cache (cold: hashes every file; warm: reuses the hashes)
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-large-'))
  const env = { MODELS_DIR: path.dirname(path.dirname(abs)), DEFAULT_MODEL: name, THREADS: String(THREADS), EXECUTION_PROVIDERS: 'cpu', CHECKSUM_CACHE: path.join(tmp, 'sha.json'), MODEL_POLL_INTERVAL_MS: '0' }
  const starts: number[] = []
  const svc = LENGTHS.map(() => [] as number[])
  let svcRss = NaN
  try {
    for (const pass of ['cold', 'warm']) {
      t0 = performance.now()
      const { child, base } = await startServer(env)
      starts.push((performance.now() - t0) / 1000)
      try {
        if (pass === 'warm') {
          const body = (c: unknown) => JSON.stringify({ model: name, items: [{ messages: c }] })
          const post = (c: unknown) =>
            fetch(`${base}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(c) }).then(async (r) => {
              if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`)
              await r.arrayBuffer()
            })
          await post(convs[0]![0]) // warm-up, not counted
          for (let r = 0; r < ROUNDS; r++) {
            for (let k = 0; k < LENGTHS.length; k++) {
              t0 = performance.now()
              for (const c of convs[k]!) await post(c)
              svc[k]!.push(tokens[k]! / ((performance.now() - t0) / 1000))
            }
          }
        }
        svcRss = peakRssBytes(child.pid!)
      } finally {
        child.kill('SIGTERM')
        await new Promise((r) => child.once('exit', r))
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }

  console.log(`\nraw session create ${f(rawLoadS)} s; raw process RSS ${f(rawRss / 2 ** 30, 2)} GiB`)
  console.log(`service start to ready: cold (hash every file) ${f(starts[0]!)} s, warm (checksum cache) ${f(starts[1]!)} s; service peak RSS ${f(svcRss / 2 ** 30, 2)} GiB (${f(svcRss / bytes, 2)}x bytes on disk)`)
  console.log('\n| row tokens | raw tokens/s | service tokens/s | service/raw |')
  console.log('|---|---|---|---|')
  LENGTHS.forEach((_, k) => {
    const n = Math.round(tokens[k]! / ROWS)
    console.log(`| ${n} | ${spread(raw[k]!)} | ${spread(svc[k]!)} | ${f(median(svc[k]!) / median(raw[k]!), 2)} |`)
  })
}

await main()
