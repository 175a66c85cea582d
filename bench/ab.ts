// npm run bench:ab — one server setting against another at saturation (issue 13): two servers of this checkout,
// A with the env in $A and B with $B (comma-separated KEY=VALUE, e.g. B=PIPELINE_DEPTH=2), driven in turn at
// concurrency $C (64) over the hh-rlhf conversations, in ABBA blocks ($BLOCKS, 6) so that drift in the host's
// speed hits both alike. Prints per block items/s and main-thread / other-thread CPU per item (/proc), then B/A:
// the throughput ratio per block, median [min–max]. A code change against its base: A_DIR is another checkout (e.g.
// `git worktree add /tmp/base HEAD` with this checkout's node_modules linked in) that server A runs instead.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { threadCpuMs } from './cpu.ts'
import { loadConversations } from './dataset.ts'
import { drive } from './load.ts'
import { startServer } from './server.ts'
import { median } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const env = (s: string) => Object.fromEntries(s.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]))
const bodies = loadConversations(root, 160).map((messages) => JSON.stringify({ items: [{ messages }] }))
const C = Number(process.env.C ?? 64)
const A = await startServer({ MAX_PENDING_ITEMS: '4096', ...env(process.env.A ?? '') }, process.env.A_DIR ? path.resolve(process.env.A_DIR) : root)
const B = await startServer({ MAX_PENDING_ITEMS: '4096', ...env(process.env.B ?? '') })

async function segment(s: typeof A): Promise<{ ips: number; main: number; others: number }> {
  const c0 = threadCpuMs(s.child.pid!)
  const r = await drive(`${s.base}/v1/score`, bodies, C)
  const c1 = threadCpuMs(s.child.pid!)
  return { ips: r.itemsPerS, main: (c1.main - c0.main) / bodies.length, others: (c1.others - c0.others) / bodies.length }
}

try {
  await segment(A) // warm-up, not counted
  await segment(B)
  const ratios: number[] = []
  for (let k = 0; k < Number(process.env.BLOCKS ?? 6); k++) {
    const a1 = await segment(A)
    const b1 = await segment(B)
    const b2 = await segment(B)
    const a2 = await segment(A)
    // time per item, summed over the block's two segments of each
    const r = (1 / a1.ips + 1 / a2.ips) / (1 / b1.ips + 1 / b2.ips)
    ratios.push(r)
    const avg = (x: number, y: number) => ((x + y) / 2).toFixed(2)
    console.log(
      `block ${k}: A ${avg(a1.ips, a2.ips)} B ${avg(b1.ips, b2.ips)} items/s, B/A ${r.toFixed(3)}; main-thread ms/item ` +
        `A ${avg(a1.main, a2.main)} B ${avg(b1.main, b2.main)}; other threads A ${avg(a1.others, a2.others)} B ${avg(b1.others, b2.others)}`,
    )
  }
  console.log(`B/A median ${median(ratios).toFixed(3)} [${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}]`)
} finally {
  A.child.kill('SIGTERM')
  B.child.kill('SIGTERM')
}
