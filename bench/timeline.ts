// npm run bench:timeline — where one scoring request's time goes at concurrency 1, segment by segment (issue 13,
// item 5). The service runs as in production with bench/timeline-preload.ts preloaded, which timestamps the points
// a request passes on the event loop (wrapping public functions from outside: the code under test is the code
// that ships); this process timestamps the client's send and receive on the same clock. Per request, one segment
// per pair of consecutive points; the engine worker's session.run (its own inferenceMs) is split out of the engine
// round trip, and what is left of it is the thread hand-off both ways. Medians [IQR] over requests.
// Env: BENCH_ITEMS (hh-rlhf conversations, default 160), BENCH_PASSES (passes over them, default 3).
import http from 'node:http'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.ts'
import { loadConversations } from './dataset.ts'
import { post } from './load.ts'
import { benchModel } from './model.ts'
import { startServer } from './server.ts'
import { pct } from './stats.ts'
import { now, type Mark } from './timeline-preload.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_ITEMS ?? 160)
const PASSES = Number(process.env.BENCH_PASSES ?? 3)

/** The points in the order a text request passes them, and what happens between each and the next. */
export const SEGMENTS: ReadonlyArray<readonly [from: string, to: string, what: string]> = [
  ['send', 'request', 'client send, loopback, Node HTTP parse'],
  ['request', 'score', 'Fastify hooks, body read + JSON parse, schema, route prelude'],
  ['score', 'tokenize', 'admission, row grouping'],
  ['tokenize', 'tokenized', 'tokenization + chat template'],
  ['tokenized', 'submit', 'encoder.finish (ids, truncation)'],
  ['submit', 'post', 'batcher: enqueue, pump, policy, pack'],
  ['post', 'run', 'engine round trip less session.run: postMessage, 2 thread wake-ups'],
  ['run', 'reply', "engine worker's session.run"],
  ['reply', 'submit-settled', 'batcher: scores to the jobs, metrics'],
  ['submit-settled', 'scored', 'scoring service epilogue'],
  ['scored', 'end', "route's answer, serialization, onSend hooks"],
  ['end', 'received', 'response write (writev), loopback, client HTTP parse'],
]

/** One request's marks -> segment durations (ms), or null when the request did not pass the points in order. */
export function segmentsOf(marks: readonly Mark[]): number[] | null {
  const at = new Map<string, number>()
  for (const [label, t, value] of marks) {
    if (at.has(label)) return null // two engine calls (media, packed rows): not the text path measured here
    at.set(label, t)
    // the run ended when the reply was posted; it began inferenceMs before (the worker's own clock)
    if (label === 'reply' && value !== undefined) at.set('run', t - value)
  }
  const out: number[] = []
  for (const [from, to] of SEGMENTS) {
    const a = at.get(from)
    const b = at.get(to)
    if (a === undefined || b === undefined) return null
    out.push(b - a)
  }
  return out
}

/** Splits the merged, time-sorted marks at each client send. */
export function perRequest(marks: readonly Mark[]): Mark[][] {
  const out: Mark[][] = []
  for (const m of marks) {
    if (m[0] === 'send') out.push([])
    out.at(-1)?.push(m)
  }
  return out
}

/** One request through load.ts's post, its send and receipt marked on the preload's clock. */
async function send(agent: http.Agent, url: string, body: string, marks: Mark[]): Promise<void> {
  marks.push(['send', now()])
  await post(agent, url, body)
  marks.push(['received', now()])
}

async function main(): Promise<void> {
  const config = loadConfig(process.env)
  const { modelsDir, entry } = await benchModel(config)
  const convs = loadConversations(root, N)
  const kinds: Array<[string, string[]]> = [
    ['hh-rlhf conversation', convs.map((messages) => JSON.stringify({ items: [{ messages }] }))],
    ['"hi" / "hello"', convs.map(() => JSON.stringify({ items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] }))],
  ]
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeline-'))
  const file = path.join(dir, 'marks.json')
  const client: Array<{ kind: number; marks: Mark[] }> = []
  const { child, base } = await startServer({ MODELS_DIR: modelsDir, TIMELINE_OUT: file }, root, ['--import', path.join(root, 'bench/timeline-preload.ts')])
  console.log(`model ${entry.name}/${entry.version}; ${N} conversations x ${PASSES} passes per kind, concurrency 1; ${os.cpus().length} cpus, load average ${os.loadavg()[0]!.toFixed(1)} at start`)
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    for (const [, bodies] of kinds) for (const b of bodies.slice(0, 40)) await send(agent, `${base}/v1/score`, b, []) // warm-up
    for (let pass = 0; pass < PASSES; pass++) {
      for (let k = 0; k < kinds.length; k++) {
        const marks: Mark[] = []
        for (const b of kinds[k]![1]) await send(agent, `${base}/v1/score`, b, marks)
        client.push({ kind: k, marks })
      }
    }
    agent.destroy()
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
  }
  const server = JSON.parse(readFileSync(file, 'utf8')) as Mark[]
  rmSync(dir, { recursive: true, force: true })
  for (let k = 0; k < kinds.length; k++) {
    const rows: number[][] = []
    let dropped = 0
    for (const c of client.filter((x) => x.kind === k)) {
      const lo = c.marks[0]![1]
      const hi = c.marks.at(-1)![1]
      const merged = [...c.marks, ...server.filter((m) => m[1] >= lo && m[1] <= hi)].sort((a, b) => a[1] - b[1])
      for (const r of perRequest(merged)) {
        const s = segmentsOf(r)
        if (s) rows.push(s)
        else dropped++
      }
    }
    const col = (i: number) => rows.map((r) => r[i]!)
    const fmt = (xs: number[]) => `${pct(xs, 50).toFixed(3).padStart(7)} [${pct(xs, 25).toFixed(3)}–${pct(xs, 75).toFixed(3)}]`
    const totals = rows.map((r) => r.reduce((a, b) => a + b, 0))
    const runs = col(SEGMENTS.findIndex(([from]) => from === 'run'))
    console.log(`\n${kinds[k]![0]}: ${rows.length} requests${dropped ? ` (${dropped} left out: not the text path)` : ''}; ms, median [IQR]`)
    SEGMENTS.forEach(([from, to, what], i) => console.log(`  ${`${from} -> ${to}`.padEnd(30)} ${fmt(col(i))}  ${what}`))
    console.log(`  ${'total (client-measured)'.padEnd(30)} ${fmt(totals)}`)
    console.log(`  ${'total less session.run'.padEnd(30)} ${fmt(totals.map((t, i) => t - runs[i]!))}`)
  }
  console.log(`\nload average at the end ${os.loadavg()[0]!.toFixed(1)}`)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main()
