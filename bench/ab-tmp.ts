import path from 'node:path'
import { readdirSync, readFileSync } from 'node:fs'
import { loadConversations } from './dataset.ts'
import { drive } from './load.ts'
import { startServer } from './server.ts'
const root = path.resolve(import.meta.dirname, '..')
const bodies = loadConversations(root, 160).map((messages) => JSON.stringify({ items: [{ messages }] }))
const envs = JSON.parse(process.env.AB ?? '[{}]')
const servers = []
for (const e of envs) servers.push(await startServer(e))
const C = Number(process.env.AB_C ?? 64)
const perThread = (pid: number) => new Map(readdirSync(`/proc/${pid}/task`).map((t) => { const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return [t, (Number(f[11]) + Number(f[12])) * 10] as const }))
for (const s of servers) await drive(`${s.base}/v1/score`, bodies, C)
const acc = servers.map(() => ({ t: new Map<string, number>(), n: 0, wall: 0 }))
for (let k = 0; k < Number(process.env.AB_BLOCKS ?? 2); k++) {
  for (const i of (k % 2 ? [...servers.keys()].reverse() : [...servers.keys()])) {
    const s = servers[i]; const t0 = perThread(s.child.pid!)
    const r = await drive(`${s.base}/v1/score`, bodies, C)
    const t1 = perThread(s.child.pid!)
    for (const [t, v] of t1) acc[i].t.set(t, (acc[i].t.get(t) ?? 0) + v - (t0.get(t) ?? 0))
    acc[i].n += r.ok; acc[i].wall += r.wallMs
  }
}
acc.forEach((a, i) => console.log(JSON.stringify(envs[i]), `${(a.n / a.wall * 1000).toFixed(1)} items/s; ms/item by thread:`, [...a.t.values()].map((v) => (v / a.n).toFixed(2)).filter((x) => x !== '0.00').join(' ')))
for (const s of servers) s.child.kill('SIGTERM')
