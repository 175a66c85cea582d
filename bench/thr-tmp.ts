import path from 'node:path'
import { loadConfig } from '../src/config.ts'
import { createSession, runReward } from '../src/engine/onnx.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import { readVersion, versionDirs } from '../src/models/load.ts'
import { loadConversations } from './dataset.ts'
const root = '/work/main'
const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const entry = (await versionDirs(path.join(root, 'models')))[0]!
const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: config.maxItemChars })
const rows = loadConversations(root, 80).map((c) => encoder.finish(encoder.turns(c)))
const threads = Number(process.env.T ?? 2), b = Number(process.env.B ?? 1)
const { session } = await createSession(path.join(entry.dir, manifest.graphs.reward.file), { providers: ['cpu'], threads, spin: false })
const byLen = [...rows].sort((x, y) => x.ids.length - y.ids.length)
const pass = async () => { for (let i = 0; i < byLen.length; i += b) await runReward(session, packRewardBatch(byLen.slice(i, i + b), manifest.tokenizer.pad_id, manifest.config.hidden_size)) }
await pass()
const c0 = process.cpuUsage(); const t0 = performance.now()
for (let k = 0; k < 3; k++) await pass()
const c = process.cpuUsage(c0); const wall = performance.now() - t0
console.log(`threads ${threads} b ${b}: ${((c.user + c.system) / 1000 / (3 * rows.length)).toFixed(2)} ms CPU/item, ${(3 * rows.length / wall * 1000).toFixed(1)} items/s`)
await session.release()
