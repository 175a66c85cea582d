// RL throughput (issue 6): OpenRLHF sends one /get_reward request per sample, hundreds at once. This bench
// shows the service batches such traffic across requests: 256 concurrent single-sample calls vs one call
// carrying all 256 (the same queries), in the same run on the same server. Prints wall time and samples/s of
// each (median of BENCH_ROUNDS), the ratio (target >= 0.80) and the batch-size histogram from /metrics.
//
//   node --import tsx bench/get-reward.ts          (env: BENCH_ROUNDS=3, BENCH_N=256, MODELS_DIR, THREADS)
import { once } from 'node:events'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import type { Message } from '../src/conversation/types.ts'
import { loadConversations } from './dataset.ts'
import { startServer } from './server.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const N = Number(process.env.BENCH_N ?? 256)
const TARGET = 0.8

/** The policy side of OpenRLHF: a ChatML (Qwen-style) prompt+response decoded with its special tokens. */
function chatmlQuery(messages: Message[]): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content as string}<|im_end|>\n`).join('') + '<|endoftext|>'
}

/** Cumulative `scorer_batch_size_bucket` counts by upper bound, plus sum and count. */
async function batchSizeMetrics(base: string): Promise<{ buckets: Map<string, number>; sum: number; count: number }> {
  const text = await (await fetch(`${base}/metrics`)).text()
  const buckets = new Map<string, number>()
  let sum = 0
  let count = 0
  for (const line of text.split('\n')) {
    const b = /^scorer_batch_size_bucket\{le="([^"]+)"\} (\d+)/.exec(line)
    if (b) buckets.set(b[1]!, Number(b[2]))
    else if (line.startsWith('scorer_batch_size_sum ')) sum = Number(line.split(' ')[1])
    else if (line.startsWith('scorer_batch_size_count ')) count = Number(line.split(' ')[1])
  }
  return { buckets, sum, count }
}

type Snapshot = Awaited<ReturnType<typeof batchSizeMetrics>>

function histogramBetween(a: Snapshot, b: Snapshot): string {
  const rows: string[] = []
  let prevA = 0
  let prevB = 0
  let lower = 0
  for (const [le, cb] of b.buckets) {
    const ca = a.buckets.get(le) ?? 0
    const n = cb - prevB - (ca - prevA)
    prevA = ca
    prevB = cb
    if (n > 0) rows.push(`    batch size ${le === '+Inf' ? `> ${lower}` : `${lower + 1}..${le}`}: ${n} batches`)
    lower = le === '+Inf' ? lower : Number(le)
  }
  const batches = b.count - a.count
  const mean = batches > 0 ? (b.sum - a.sum) / batches : 0
  return `${rows.join('\n')}\n    ${batches} batches, mean ${mean.toFixed(1)} rows per batch`
}

/** One workload: ROUNDS x (one request with all queries, then all queries as concurrent 1-query requests). */
async function measure(base: string, name: string, queries: string[]): Promise<boolean> {
  const url = `${base}/get_reward?template=chatml`
  const post = async (query: string[]): Promise<number[]> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query, prompts: query.map(() => ''), labels: query.map(() => null) }),
    })
    if (!res.ok) throw new Error(`/get_reward ${res.status}: ${await res.text()}`)
    return ((await res.json()) as { rewards: number[] }).rewards
  }
  // Warm-up both paths (tokenizer caches, JIT) and open the client's whole connection pool.
  await post(queries.slice(0, 32))
  await Promise.all(queries.map((q) => post([q])))
  const oneCall: number[] = []
  const concurrent: number[] = []
  let batchRewards: number[] = []
  let singleRewards: number[] = []
  let deltaOne = ''
  let deltaConc = ''
  for (let r = 0; r < ROUNDS; r++) {
    const before = await batchSizeMetrics(base)
    let t0 = performance.now()
    batchRewards = await post(queries)
    oneCall.push(performance.now() - t0)
    const middle = await batchSizeMetrics(base)
    t0 = performance.now()
    singleRewards = (await Promise.all(queries.map((q) => post([q])))).map((x) => x[0]!)
    concurrent.push(performance.now() - t0)
    if (r === 0) {
      deltaOne = histogramBetween(before, middle)
      deltaConc = histogramBetween(middle, await batchSizeMetrics(base))
    }
  }
  const n = queries.length
  const maxDiff = Math.max(...batchRewards.map((x, i) => Math.abs(x - singleRewards[i]!)))
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const tOne = median(oneCall)
  const tConc = median(concurrent)
  const ratio = tOne / tConc
  const rounds = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ')
  console.log(`\n== ${name}`)
  console.log(`one request with ${n} queries:     ${tOne.toFixed(0)} ms  ${((n / tOne) * 1000).toFixed(1)} samples/s  (rounds: ${rounds(oneCall)} ms)`)
  console.log(`${n} concurrent 1-query requests: ${tConc.toFixed(0)} ms  ${((n / tConc) * 1000).toFixed(1)} samples/s  (rounds: ${rounds(concurrent)} ms)`)
  console.log(`ratio concurrent/one-request throughput: ${ratio.toFixed(3)} (target >= ${TARGET}) ${ratio >= TARGET ? 'PASS' : 'FAIL'}`)
  console.log(`max |reward difference| between the two modes: ${maxDiff.toExponential(2)}`)
  console.log(`batch sizes, one request of ${n} (round 1, from /metrics scorer_batch_size):\n${deltaOne}`)
  console.log(`batch sizes, ${n} concurrent single requests (round 1):\n${deltaConc}`)
  return ratio >= TARGET
}

async function main() {
  const convs = loadConversations(root, N)
  if (convs.length < N) throw new Error(`only ${convs.length} conversations available`)
  // Whole hh-rlhf dialogues (many hit max_seq_len) and their first exchange only (short, single-turn RL prompts).
  const workloads: Array<[string, string[]]> = [
    ['full hh-rlhf dialogues', convs.map(chatmlQuery)],
    ['first exchange only (short)', convs.map((c) => chatmlQuery(c.slice(0, 2)))],
  ]
  const { child, base } = await startServer({
    // One request may carry all N, and all N single requests are admitted at once.
    MAX_CLIENT_BATCH_SIZE: String(N),
    MAX_PENDING_ITEMS: String(Math.max(4 * N, 1024)),
    REQUEST_TIMEOUT_MS: '300000',
  })
  try {
    const info = (await (await fetch(`${base}/v1/models`)).json()) as {
      limits: { max_batch_tokens: number; max_batch_size: number }
      models: Array<{ name: string; version: number; serving: boolean; execution_provider: string }>
    }
    const serving = info.models.find((m) => m.serving)
    console.log(
      `model ${serving?.name}/${serving?.version} (${serving?.execution_provider}); ${N} queries per workload as ChatML; ` +
        `${ROUNDS} rounds; MAX_BATCH_TOKENS ${info.limits.max_batch_tokens || 'auto'}, MAX_BATCH_SIZE ${info.limits.max_batch_size}`,
    )
    let pass = true
    for (const [name, queries] of workloads) pass = (await measure(base, name, queries)) && pass
    process.exitCode = pass ? 0 : 1
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
}

await main()
