// raw: one session at T threads vs R sessions (worker threads) at 1 thread each, b=B, same rows; aggregate items/s
import path from 'node:path'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { loadConfig } from '../src/config.ts'
import { spawnWorker } from '../src/util/worker.ts'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import { readVersion, versionDirs } from '../src/models/load.ts'
import { loadConversations } from './dataset.ts'
const root = path.resolve(import.meta.dirname, '..')
const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const entry = (await versionDirs(path.join(root, 'models')))[0]!
const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: config.maxItemChars })
const rows = loadConversations(root, 160).map((c) => encoder.finish(encoder.turns(c)))
const byLen = [...rows].sort((x, y) => x.ids.length - y.ids.length)
async function stream(threads: number, b: number, part: number, parts: number, passes: number) {
  const { session } = await createSession(path.join(entry.dir, manifest.graphs.reward.file), { providers: ['cpu'], threads, spin: false })
  const mine = byLen.filter((_, i) => i % parts === part)
  const pass = async () => { for (let i = 0; i < mine.length; i += b) await runReward(session, packRewardBatch(mine.slice(i, i + b), manifest.tokenizer.pad_id, manifest.config.hidden_size)) }
  await pass()
  return { session, go: async () => { for (let k = 0; k < passes; k++) await pass(); return mine.length * passes } }
}
if (!isMainThread) {
  const { part, parts, b, passes } = workerData
  const s = await stream(1, b, part, parts, passes)
  parentPort!.postMessage('ready')
  parentPort!.once('message', async () => { const n = await s.go(); parentPort!.postMessage(n) })
} else {
  const PASSES = 3
  for (const [label, T, R, B] of [['1 session T=2 b=1', 2, 1, 1], ['1 session T=2 b=4', 2, 1, 4], ['1 session T=1 b=1', 1, 1, 1], ['2 sessions T=1 b=1', 1, 2, 1], ['2 sessions T=1 b=2', 1, 2, 2]] as const) {
    const c0 = process.cpuUsage()
    let items = 0, wall = 0
    if (R === 1) {
      const s = await stream(T, B, 0, 1, PASSES)
      const c1 = process.cpuUsage(); const t0 = performance.now(); items = await s.go(); wall = performance.now() - t0
      const c = process.cpuUsage(c1); console.log(label, (items / wall * 1000).toFixed(1), 'items/s', ((c.user + c.system) / 1000 / items).toFixed(2), 'ms CPU/item')
      await s.session.release()
    } else {
      const ws = Array.from({ length: R }, (_, part) => spawnWorker(new URL(import.meta.url), { part, parts: R, b: B, passes: PASSES }))
      await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))))
      const c1 = process.cpuUsage(); const t0 = performance.now()
      const ns = await Promise.all(ws.map((w) => new Promise<number>((r) => { w.once('message', r); w.postMessage('go') })))
      wall = performance.now() - t0; items = ns.reduce((a, x) => a + x, 0)
      const c = process.cpuUsage(c1); console.log(label, (items / wall * 1000).toFixed(1), 'items/s', ((c.user + c.system) / 1000 / items).toFixed(2), 'ms CPU/item')
      await Promise.all(ws.map((w) => w.terminate()))
    }
  }
}
