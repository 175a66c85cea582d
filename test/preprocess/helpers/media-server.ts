// Child-process server for memory tests: the real media path (sharp, IXC transforms) in front of a fake engine
// (buildMediaApp), real HTTP on an ephemeral port. Talks over IPC: sends { port, baseRss, tempRoot } when listening, answers
// 'peak' with { peakRss } (sampled every 5 ms since start), exits on 'stop'. Env: the usual config knobs.
import { buildMediaApp } from './media-app.ts'

const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(MEDIA_|MAX_|REQUEST_|EMBEDDING_)/.test(k))) as Record<string, string>
const { app, tempRoot } = await buildMediaApp(env)
const address = await app.listen({ port: 0, host: '127.0.0.1' })
let peakRss = process.memoryUsage().rss
setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5).unref()
process.on('message', (msg) => {
  if (msg === 'peak') process.send!({ peakRss })
  if (msg === 'stop') void app.close().then(() => process.exit(0))
})
process.send!({ port: Number(new URL(address).port), baseRss: process.memoryUsage().rss, tempRoot })
