// npm run bench:large — a large model version (the full-width import of `npm run check:full-width --keep DIR`,
// or a real import) on this machine's cpu: start-up time and peak RSS of the service (first start hashes every
// file; the second reuses the checksum cache), then decoder tokens/s at a few row lengths, raw engine vs service.
//
// The raw engine (reward.onnx in this process) and the service (src/server.ts as a child, POST /v1/score) both hold
// the model: ONNX Runtime maps external data files, so two sessions of the full-width 2-layer model (3.4 GB) take
// ~5 GB together. BENCH_ROUNDS ABBA blocks per row length (raw, service, service, raw over the same BENCH_ROWS
// rows, one row per run: batch 1, the cpu default for long rows); reported: median and min–max of tokens/s over
// passes and of the per-block service/raw ratio.
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

  // the service: a cold start on a fresh checksum cache (hashes every file), stopped; then a warm start (reuses
  // the hashes) that stays up for the throughput blocks
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'bench-large-'))
  const env = { MODELS_DIR: path.dirname(path.dirname(abs)), DEFAULT_MODEL: name, THREADS: String(THREADS), EXECUTION_PROVIDERS: 'cpu', CHECKSUM_CACHE: path.join(tmp, 'sha.json'), MODEL_POLL_INTERVAL_MS: '0' }
  const starts: number[] = []
  const stop = async (child: import('node:child_process').ChildProcess) => {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
  }
  let t0 = performance.now()
  const cold = await startServer(env)
  starts.push((performance.now() - t0) / 1000)
  await stop(cold.child)
  t0 = performance.now()
  const { child, base } = await startServer(env)
  starts.push((performance.now() - t0) / 1000)

  t0 = performance.now()
  const { session } = await createSession(path.join(abs, manifest.graphs.reward.file), { providers: ['cpu'], threads: THREADS, spin: false })
  const rawLoadS = (performance.now() - t0) / 1000
  const pad = manifest.tokenizer.pad_id
  const dim = manifest.config.hidden_size
  const post = (c: unknown) =>
    fetch(`${base}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: name, items: [{ messages: c }] }) }).then(async (r) => {
      if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`)
      await r.arrayBuffer()
    })
  const rawPass = async (k: number) => {
    const t = performance.now()
    for (const row of rows[k]!) await runReward(session, packRewardBatch([row], pad, dim))
    return tokens[k]! / ((performance.now() - t) / 1000)
  }
  const svcPass = async (k: number) => {
    const t = performance.now()
    for (const c of convs[k]!) await post(c)
    return tokens[k]! / ((performance.now() - t) / 1000)
  }
  const raw = LENGTHS.map(() => [] as number[])
  const svc = LENGTHS.map(() => [] as number[])
  const ratio = LENGTHS.map(() => [] as number[])
  let rawRss = NaN
  let svcRss = NaN
  try {
    await rawPass(0) // warm-up of both sides, not counted
    await svcPass(0)
    // ABBA blocks (raw, service, service, raw): a linear drift of the shared host cancels within a block
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < LENGTHS.length; k++) {
        const a1 = await rawPass(k)
        const b1 = await svcPass(k)
        const b2 = await svcPass(k)
        const a2 = await rawPass(k)
        raw[k]!.push(a1, a2)
        svc[k]!.push(b1, b2)
        ratio[k]!.push((1 / a1 + 1 / a2) / (1 / b1 + 1 / b2)) // raw time / service time for the same tokens
      }
    }
    rawRss = peakRssBytes(process.pid)
    svcRss = peakRssBytes(child.pid!)
  } finally {
    await session.release()
    await stop(child)
    await rm(tmp, { recursive: true, force: true })
  }

  console.log(`\nraw session create ${f(rawLoadS)} s; raw process peak RSS ${f(rawRss / 2 ** 30, 2)} GiB`)
  console.log(`service start to ready: cold (hash every file) ${f(starts[0]!)} s, warm (checksum cache) ${f(starts[1]!)} s; service peak RSS ${f(svcRss / 2 ** 30, 2)} GiB (${f(svcRss / bytes, 2)}x bytes on disk)`)
  console.log('\n| row tokens | raw tokens/s | service tokens/s | service/raw (per ABBA block) |')
  console.log('|---|---|---|---|')
  LENGTHS.forEach((_, k) => {
    const n = Math.round(tokens[k]! / ROWS)
    console.log(`| ${n} | ${spread(raw[k]!)} | ${spread(svc[k]!)} | ${f(median(ratio[k]!), 2)} (${f(Math.min(...ratio[k]!), 2)}–${f(Math.max(...ratio[k]!), 2)}) |`)
  })
}

await main()
