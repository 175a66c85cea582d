// One command (npm run bench): the raw engine and the service, measured side by side in one run on this machine.
//
// Every measurement is a *segment* that processes the same BENCH_ITEMS hh-rlhf conversations once and is timed
// from the first item sent to the last result received (performance.now() in this process):
//   raw b     the model's reward.onnx in this process (src/engine/onnx.ts, the service's threads/spin settings),
//             rows tokenized the same way up front, length-sorted batches of b (least padding: the strictest
//             baseline) in shuffled order, b = 1..32; with ENGINE_REPLICAS > 1 as many sessions in worker
//             threads (bench/raw-worker.ts), the batches dealt out to them in turn;
//   svc c     src/server.ts as a child process, POST /v1/score with one conversation per request from a small
//             load generator here (keep-alive, exactly c requests in flight until the list is exhausted),
//             c = 1..64; with PACK_ACROSS_REQUESTS=false unless the env sets it: hh-rlhf's chosen and rejected
//             share their prompt, and queued rows of separate requests that share one run packed (fewer
//             positions than the raw side runs), so the ratio measures the service's overhead on the same work
//             (what packing gains: `B=PACK_ACROSS_REQUESTS=false npm run bench:ab`);
//   paired    BENCH_PAIRED conversations one at a time, each scored raw and then via HTTP: concurrency-1 overhead
//             as paired differences (load changes on a shared host hit both halves of a pair alike).
// BENCH_ROUNDS rounds; each round runs every segment once, in a fresh seeded order, so slow phases of the host
// spread over all segments instead of favouring whichever ran at a quiet moment. Reported: median and min–max
// over rounds; ratios are taken within a round and then summarised. The headline saturation ratio then comes
// from BENCH_HEADLINE_BLOCKS ABBA blocks (raw, service, service, raw, back to back) at the sweep's best batch
// size. Absolute items/s depend on what else runs on the host; the ratios are the result.
//
// Why not autocannon: with a fixed `amount` it returns at its next 1 s sampling tick, so its duration (and every
// ratio computed from it) was quantised to whole seconds (8/k ratios: 0.62, 0.72, 0.80, 0.89, 1.00, 1.14).
//
// Env: BENCH_ROUNDS (5), BENCH_HEADLINE_BLOCKS (8), BENCH_ITEMS (160), BENCH_PAIRED (48), BENCH_SEED (1), and the server's own knobs
// (MODELS_DIR, DEFAULT_MODEL, THREADS, MAX_BATCH_SIZE, ...), which both sides read.
import { once } from 'node:events'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.ts'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import type { EncodedRow } from '../src/scheduler/types.ts'
import { readVersion } from '../src/models/load.ts'
import { loadConversations } from './dataset.ts'
import { benchModel } from './model.ts'
import { dealt, rawPool } from './raw-pool.ts'
import { selfCpuMs, threadCpuMs } from './cpu.ts'
import { abbaRatio, drive } from './load.ts'
import { pairedRounds } from './paired.ts'
import { startServer } from './server.ts'
import { fmtSpread, median, mulberry32, pct, shuffled } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const N_ITEMS = Number(process.env.BENCH_ITEMS ?? 160)
const N_PAIRED = Number(process.env.BENCH_PAIRED ?? 48)
const SEED = Number(process.env.BENCH_SEED ?? 1)
const HEADLINE_BLOCKS = Number(process.env.BENCH_HEADLINE_BLOCKS ?? 8)
const CONCURRENCY = [1, 2, 4, 8, 16, 32, 64]
const SATURATION = 64
const BATCHES = [1, 2, 4, 8, 16, 32].filter((b) => b <= config.batch.maxBatchSize)

const f = (x: number, d = 1) => x.toFixed(d)
const pad = (x: string | number, n: number) => String(x).padStart(n)

interface Segment {
  name: string
  run: () => Promise<void>
}

async function main() {
  const { modelsDir, entry } = await benchModel(config)
  const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: config.batch.maxBatchTokens, maxItemChars: config.maxItemChars })
  const convs = loadConversations(root, N_ITEMS)
  const rows = convs.map((c) => encoder.finish(encoder.turns(c)))
  const totalTokens = rows.reduce((a, r) => a + r.ids.length, 0)
  console.log(
    `model ${entry.name}/${entry.version}; ${rows.length} hh-rlhf conversations per segment, mean ${f(totalTokens / rows.length)} tokens ` +
      `(max_seq_len ${manifest.max_seq_len}); engine replicas ${config.engineReplicas} x threads ${config.threads}, spin ${config.ortSpin}; ${ROUNDS} rounds, seed ${SEED}; ` +
      `${os.cpus().length} cpus, load average ${os.loadavg()[0]!.toFixed(1)} at start`,
  )

  const { session, executionProvider } = await createSession(path.join(entry.dir, manifest.graphs.reward.file), {
    providers: ['cpu'],
    threads: config.threads,
    spin: config.ortSpin,
  })
  const padId = manifest.tokenizer.pad_id
  const dim = manifest.config.hidden_size
  const byLength = [...rows].sort((a, b) => a.ids.length - b.ids.length)
  // ENGINE_REPLICAS > 1: the raw side runs as many sessions, each in a worker thread with the service's threads
  // per replica, and a pass deals its batches out to them in turn (the service's replicas, without HTTP).
  const replicas =
    config.engineReplicas > 1
      ? await rawPool(config.engineReplicas, { file: path.join(entry.dir, manifest.graphs.reward.file), threads: config.threads, spin: config.ortSpin, rows: byLength, padId, dim })
      : []
  /** One pass over all rows in length-sorted batches of b (in shuffled order). */
  const rawPass = async (b: number) => {
    const order = shuffled(Array.from({ length: Math.ceil(byLength.length / b) }, (_, i) => i), 7 + b)
    const times: number[] = []
    const t0 = performance.now()
    if (replicas.length > 0) {
      const all = await dealt(replicas, order.map((i) => range(i * b, Math.min(byLength.length, i * b + b))))
      return { itemsPerS: (rows.length / (performance.now() - t0)) * 1000, batchP50: pct(all, 50) }
    }
    for (const i of order) {
      const s = performance.now()
      await runReward(session, packRewardBatch(byLength.slice(i * b, i * b + b), padId, dim))
      times.push(performance.now() - s)
    }
    return { itemsPerS: (rows.length / (performance.now() - t0)) * 1000, batchP50: pct(times, 50) }
  }

  const { child, base } = await startServer({ MODELS_DIR: modelsDir, MAX_PENDING_ITEMS: '4096', PACK_ACROSS_REQUESTS: process.env.PACK_ACROSS_REQUESTS ?? 'false' })
  try {
    const url = `${base}/v1/score`
    const bodies = shuffled(convs.map((c) => JSON.stringify({ items: [{ messages: c }] })), 11)
    const byConv = convs.map((c) => JSON.stringify({ items: [{ messages: c }] }))

    // Warm-up, not counted: JIT, ORT arenas and the service's first batches on both sides.
    await rawPass(2)
    await drive(url, bodies.slice(0, 32), 8)

    const raw = new Map<number, Array<{ itemsPerS: number; batchP50: number }>>(BATCHES.map((b) => [b, []]))
    const svc = new Map<number, Array<Awaited<ReturnType<typeof drive>>>>(CONCURRENCY.map((c) => [c, []]))
    const paired: Array<{ raw: number; svc: number; diff: number }> = []
    const segments: Segment[] = [
      ...BATCHES.map((b) => ({ name: `raw b=${b}`, run: async () => void raw.get(b)!.push(await rawPass(b)) })),
      ...CONCURRENCY.map((c) => ({ name: `svc c=${c}`, run: async () => void svc.get(c)!.push(await drive(url, bodies, c)) })),
      {
        name: 'paired c=1',
        run: async () => {
          const { raw: r, svc: s } = await pairedRounds({ session, rows, bodies: byConv, url, padId, dim }, N_PAIRED)
          paired.push({ raw: pct(r, 50), svc: pct(s, 50), diff: pct(s.map((x, i) => x - r[i]!), 50) })
        },
      },
    ]

    const rnd = mulberry32(SEED)
    const started = performance.now()
    for (let round = 1; round <= ROUNDS; round++) {
      const order = shuffled(segments, Math.floor(rnd() * 2 ** 31))
      const log: string[] = []
      for (const seg of order) {
        await seg.run()
        log.push(seg.name)
      }
      console.log(`round ${round}/${ROUNDS} done (${f((performance.now() - started) / 1000, 0)} s): ${log.join(', ')}`)
    }

    // ---- summaries -------------------------------------------------------------------------------------
    const rawMedian = (b: number) => median(raw.get(b)!.map((x) => x.itemsPerS))
    const best = BATCHES.reduce((a, b) => (rawMedian(b) > rawMedian(a) ? b : a))
    const bestPerRound = raw.get(best)!.map((x) => x.itemsPerS)
    const meanTokens = totalTokens / rows.length
    console.log(`\nraw engine (${replicas.length > 0 ? `${replicas.length} sessions in worker threads, batches dealt in turn` : 'in-process'}, ${executionProvider}; length-sorted batches in shuffled order; ${ROUNDS} rounds: median [min–max])`)
    console.log('batch  items/s median [min–max]  tokens/s  ms/batch p50')
    for (const b of BATCHES) {
      const xs = raw.get(b)!
      console.log(
        `${pad(b, 5)}  ${pad(fmtSpread(xs.map((x) => x.itemsPerS), 1), 26)}  ${pad(f(rawMedian(b) * meanTokens, 0), 8)}  ` +
          `${pad(f(median(xs.map((x) => x.batchP50)), 2), 12)}${b === best ? '  <- best (baseline)' : ''}`,
      )
    }
    console.log(`\nservice (HTTP/1.1 keep-alive, 1 conversation per request, closed loop; time to the last response; ratio = svc / raw b=${best} of the same round)`)
    console.log('conc  items/s median [min–max]  p50 ms  p99 ms  errors  service/raw median [min–max]')
    const ratiosAt = (c: number) => svc.get(c)!.map((x, i) => x.itemsPerS / bestPerRound[i]!)
    for (const c of CONCURRENCY) {
      const xs = svc.get(c)!
      console.log(
        `${pad(c, 4)}  ${pad(fmtSpread(xs.map((x) => x.itemsPerS), 1), 26)}  ${pad(f(median(xs.map((x) => x.p50))), 6)}  ` +
          `${pad(f(median(xs.map((x) => x.p99))), 6)}  ${pad(xs.reduce((a, x) => a + x.errors, 0), 6)}  ${pad(fmtSpread(ratiosAt(c), 3), 28)}`,
      )
    }
    console.log('\nconcurrency 1, paired per round: ' + ['round', 'raw single p50 ms', 'service p50 ms', 'paired diff p50 ms'].join(' | '))
    paired.forEach((p, i) => console.log(`  ${i + 1} | ${f(p.raw, 2)} | ${f(p.svc, 2)} | ${f(p.diff, 2)}`))

    // Headline saturation ratio: the sweep's two segments can sit a round apart, and load from other jobs on a
    // shared host changes within seconds. So: HEADLINE_BLOCKS blocks of raw, svc, svc, raw (ABBA: a linear drift
    // within a block cancels), adjacent passes over the same items; ratio per block = svc items / raw items.
    console.log(`\nheadline: ${HEADLINE_BLOCKS} ABBA blocks (raw b=${best}, svc c=${SATURATION}, svc c=${SATURATION}, raw b=${best}), one pass of ${rows.length} items each`)
    console.log('block  raw items/s (1st, 2nd)  svc items/s (1st, 2nd)  service/raw')
    const headline: number[] = []
    // CPU per item of each side (from /proc, so load from other jobs does not enter it): where the service's
    // extra CPU goes when the cores are the bottleneck.
    const cpu = { raw: 0, main: 0, others: 0, client: 0, rawItems: 0, svcItems: 0 }
    const rawCpu = async () => {
      const c0 = selfCpuMs()
      const r = await rawPass(best)
      cpu.raw += selfCpuMs() - c0
      cpu.rawItems += rows.length
      return r.itemsPerS
    }
    const svcCpu = async () => {
      const t0 = threadCpuMs(child.pid!)
      const c0 = selfCpuMs()
      const r = await drive(url, bodies, SATURATION)
      const t1 = threadCpuMs(child.pid!)
      cpu.client += selfCpuMs() - c0
      cpu.main += t1.main - t0.main
      cpu.others += t1.others - t0.others
      cpu.svcItems += r.ok
      return r.itemsPerS
    }
    for (let i = 1; i <= HEADLINE_BLOCKS; i++) {
      const r1 = await rawCpu()
      const s1 = await svcCpu()
      const s2 = await svcCpu()
      const r2 = await rawCpu()
      const ratio = abbaRatio(r1, s1, s2, r2)
      headline.push(ratio)
      console.log(`${pad(i, 5)}  ${pad(`${f(r1)}, ${f(r2)}`, 22)}  ${pad(`${f(s1)}, ${f(s2)}`, 22)}  ${pad(f(ratio, 3), 11)}`)
    }
    console.log(`\nsummary (median [min–max]; IQR where given)`)
    console.log(
      `throughput at saturation: service c=${SATURATION} / raw b=${best} = ${fmtSpread(headline, 3)}, IQR ${f(pct(headline, 25), 3)}–${f(pct(headline, 75), 3)} ` +
        `over ${HEADLINE_BLOCKS} ABBA blocks (target >= 0.85); the sweep's per-round ratio: ${fmtSpread(ratiosAt(SATURATION), 3)}`,
    )
    const per = (ms: number, n: number) => f(ms / n, 2)
    const svcTotal = (cpu.main + cpu.others + cpu.client) / cpu.svcItems
    console.log(
      `CPU per item in those blocks (/proc and process.cpuUsage): raw ${per(cpu.raw, cpu.rawItems)} ms; service ` +
        `${per(cpu.main + cpu.others, cpu.svcItems)} ms = main thread ${per(cpu.main, cpu.svcItems)} (HTTP, JSON, tokenization, ` +
        `batching) + other threads ${per(cpu.others, cpu.svcItems)} (engine worker with ONNX Runtime's pool, GC helpers, ` +
        `tokenizer worker); load generator ${per(cpu.client, cpu.svcItems)} ms; raw / (service + load generator) = ` +
        `${f(cpu.raw / cpu.rawItems / svcTotal, 3)} (the ratio to expect where the cores are the bottleneck)`,
    )
    console.log(`load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' / ')} (1 / 5 / 15 min; > ${os.cpus().length} means other jobs competed for the cores)`)
    console.log(
      `latency at concurrency 1: paired (service - raw single-item) p50 = ${fmtSpread(paired.map((p) => p.diff), 2)} ms ` +
        `(raw ${f(median(paired.map((p) => p.raw)), 2)} ms, service ${f(median(paired.map((p) => p.svc)), 2)} ms; target <= 2 ms)`,
    )
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
    await session.release()
    await Promise.all(replicas.map((w) => w.close()))
  }
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i)

await main()
