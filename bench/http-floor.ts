// The HTTP floor under issue 13's 1 ms overhead target: what a bare node:http server and a bare Fastify app (no
// plugins, one JSON POST route; then the same with Fastify's request logging at info, as the service runs) cost per
// small JSON request, before any of our hooks or scoring. Each server runs in its own child process; the client
// sends concurrency-1 requests over one keep-alive socket per server, the servers interleaved in rounds (A B C,
// then rotated) so host noise hits all alike, and reads each server's CPU per request from /proc. Then the floor of
// the other fixed cost, the hand-off to the engine worker: a bare worker_threads echo carrying a 235-token row's
// typed arrays, back to back and after 15 ms idle (the worker asleep, as after a run).
//
//   npm run bench:http-floor          # ROUNDS (20), PER_ROUND (1000)
import { fork, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { Writable } from 'node:stream'
import { Worker } from 'node:worker_threads'
import Fastify from 'fastify'
import { cpuMs } from './cpu.ts'
import { post } from './load.ts'
import { fmtSpread, median } from './stats.ts'

const KINDS = ['node-http', 'fastify', 'fastify-logged'] as const
type Kind = (typeof KINDS)[number]
const BODY = JSON.stringify({ items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] })
const reply = (body: { items?: unknown[] }) => ({ scores: [0.5], count: body.items?.length ?? 0 })

async function serve(kind: Kind): Promise<void> {
  let server: http.Server
  if (kind === 'node-http') {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const out = JSON.stringify(reply(JSON.parse(Buffer.concat(chunks).toString('utf8'))))
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(out) })
        res.end(out)
      })
    })
  } else {
    // logged: pino at info into a sink, as the service logs each request (incoming + completed), minus the pipe
    const sink = new Writable({ write: (_c, _e, cb) => cb() })
    const app = Fastify({ logger: kind === 'fastify-logged' ? { level: 'info', stream: sink } : false })
    app.post('/v1/score', async (request) => reply(request.body as { items?: unknown[] }))
    await app.ready()
    server = app.server
  }
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }))
}

function start(kind: Kind): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(new URL(import.meta.url).pathname, ['serve', kind], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  return new Promise((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve({ child, port: m.port }))
    child.once('exit', (code) => reject(new Error(`${kind} server exited ${code}`)))
  })
}

/** One request's latency in ms (load.ts's post: a 200 with its body drained, or a rejection). */
async function timedPost(agent: http.Agent, port: number): Promise<number> {
  const t0 = performance.now()
  await post(agent, `http://127.0.0.1:${port}/v1/score`, BODY)
  return performance.now() - t0
}

async function main(): Promise<void> {
  const rounds = Number(process.env.ROUNDS ?? 20)
  const perRound = Number(process.env.PER_ROUND ?? 1000)
  const servers = await Promise.all(KINDS.map(start))
  const agents = KINDS.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }))
  const lat = KINDS.map(() => [] as number[]) // per round: median latency
  const cpu = KINDS.map(() => [] as number[]) // per round: server CPU ms per request
  try {
    for (let i = 0; i < KINDS.length; i++) for (let w = 0; w < 200; w++) await timedPost(agents[i]!, servers[i]!.port) // warm-up
    for (let r = 0; r < rounds; r++) {
      for (let j = 0; j < KINDS.length; j++) {
        const i = (j + r) % KINDS.length
        const { child, port } = servers[i]!
        const c0 = cpuMs(child.pid!)
        const xs: number[] = []
        for (let n = 0; n < perRound; n++) xs.push(await timedPost(agents[i]!, port))
        cpu[i]!.push((cpuMs(child.pid!) - c0) / perRound)
        lat[i]!.push(median(xs))
      }
    }
  } finally {
    for (const a of agents) a.destroy()
    for (const s of servers) s.child.kill()
  }
  console.log(`concurrency 1, ${rounds} interleaved rounds x ${perRound} requests; per round: median latency, server CPU per request`)
  console.log('server           latency ms (median [min–max] over rounds)   server CPU ms per request')
  KINDS.forEach((k, i) => console.log(`${k.padEnd(16)} ${fmtSpread(lat[i]!, 3).padEnd(42)} ${fmtSpread(cpu[i]!, 3)}`))
  await workerFloor()
}

async function workerFloor(): Promise<void> {
  const w = new Worker(`require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m.id))`, { eval: true })
  let answered: () => void = () => {}
  w.on('message', () => answered())
  // what runReward posts for one 235-token row: int64 ids, mask, image positions; float32 im_mask
  const row = { ids: new BigInt64Array(235), mask: new BigInt64Array(235), positions: new BigInt64Array(235), imMask: new Float32Array(235) }
  console.log('\nengine hand-off floor: worker_threads echo of one row, 200 round trips each, ms median [min–max]')
  const echo = (i: number) =>
    new Promise<void>((r) => {
      answered = r
      w.postMessage({ id: i, ...row })
    })
  try {
    for (let i = 0; i < 20; i++) await echo(i) // the worker's start-up and the first messages' compilation
    for (const idleMs of [0, 15]) {
      const xs: number[] = []
      for (let i = 0; i < 200; i++) {
        if (idleMs) await new Promise((r) => setTimeout(r, idleMs))
        const t0 = performance.now()
        await echo(i)
        xs.push(performance.now() - t0)
      }
      console.log(`${(idleMs ? `after ${idleMs} ms idle` : 'back to back').padEnd(18)} ${median(xs).toFixed(3)} [${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}]`)
    }
  } finally {
    await w.terminate()
  }
}

if (process.argv[2] === 'serve') void serve(process.argv[3] as Kind)
else await main()
