// Before/after of issue 13 item 4 (embeddings stay in the engine; vision runs queued in the batcher), in one run:
// the service of BENCH_BASE_REF (default: the commit before the change) and this checkout's, side by side on the
// same model and host, driven with the same image requests (one image, the same for every request, so the
// vision run happens once and every request after it is a cache hit: the path where embeddings used to be
// copied main thread -> worker with every batch). BENCH_BLOCKS ABBA blocks (before, after, after, before; a
// linear drift within a block cancels); per block the throughput ratio after/before (total times) and the p50
// latency ratio after/before. Median [min–max] over blocks.
//
//   npm run bench:embeddings     (env: BENCH_BASE_REF=78b1d73, BENCH_BLOCKS=6, BENCH_N=64, BENCH_CONC=8, THREADS=2)
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, realpathSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { abbaRatio, drive } from './load.ts'
import { startServer } from './server.ts'
import { fmtSpread, median } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BASE_REF = process.env.BENCH_BASE_REF ?? '78b1d73'
const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 6)
const N = Number(process.env.BENCH_N ?? 64)
const CONC = Number(process.env.BENCH_CONC ?? 8)
const IMAGE = process.env.BENCH_IMAGE ?? path.join(root, '../shared/fixtures/images/real/imagereward-1.webp')

/** The service sources of `ref`, unpacked next to this checkout's node_modules (no git worktree bookkeeping). */
function checkoutOf(ref: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-base-'))
  const tar = execFileSync('git', ['archive', ref, 'src', 'package.json', 'tsconfig.json', 'openapi.yaml'], { cwd: root, maxBuffer: 1 << 30 })
  execFileSync('tar', ['-x', '-C', dir], { input: tar })
  symlinkSync(realpathSync(path.join(root, 'node_modules')), path.join(dir, 'node_modules'))
  return dir
}

const data = readFileSync(IMAGE).toString('base64')
const bodies = Array.from({ length: N }, (_, i) =>
  JSON.stringify({
    items: [
      {
        messages: [
          { role: 'user', content: [{ type: 'image', data }, { type: 'text', text: 'Describe the picture.' }] },
          { role: 'assistant', content: `Candidate answer number ${i}: a painting with a lake and trees.` },
        ],
      },
    ],
  }),
)

const env = {
  MODELS_DIR: process.env.MODELS_DIR ?? path.join(root, 'models'),
  THREADS: process.env.THREADS ?? '2',
  CHECKSUM_CACHE: 'off',
  REQUEST_TIMEOUT_MS: '600000',
}
const baseDir = checkoutOf(BASE_REF)
console.log(`before: ${BASE_REF} (${execFileSync('git', ['rev-parse', '--short', BASE_REF], { cwd: root }).toString().trim()}), after: this checkout; ${N} requests per segment at concurrency ${CONC}, ${BLOCKS} ABBA blocks; load average ${loadavg()[0]!.toFixed(1)}`)
const servers: Array<Awaited<ReturnType<typeof startServer>>> = []
try {
  const before = await startServer(env, baseDir)
  servers.push(before)
  const after = await startServer(env, root)
  servers.push(after)
  const url = (s: { base: string }) => `${s.base}/v1/score`
  // warm-up: the image's vision run (cached afterwards) and the JITs of both processes
  for (const s of [before, after]) await drive(url(s), bodies.slice(0, CONC * 2), CONC)
  const tput: number[] = []
  const p50: number[] = []
  const rows: string[] = []
  for (let b = 0; b < BLOCKS; b++) {
    const a1 = await drive(url(before), bodies, CONC)
    const b1 = await drive(url(after), bodies, CONC)
    const b2 = await drive(url(after), bodies, CONC)
    const a2 = await drive(url(before), bodies, CONC)
    const errors = a1.errors + a2.errors + b1.errors + b2.errors
    if (errors > 0) throw new Error(`${errors} requests failed in block ${b + 1}`)
    tput.push(abbaRatio(a1.itemsPerS, b1.itemsPerS, b2.itemsPerS, a2.itemsPerS))
    const p50Before = median([a1.p50, a2.p50])
    const p50After = median([b1.p50, b2.p50])
    p50.push(p50After / p50Before)
    rows.push(`${String(b + 1).padStart(5)}  ${p50Before.toFixed(1).padStart(14)}  ${p50After.toFixed(1).padStart(13)}  ${((a1.itemsPerS + a2.itemsPerS) / 2).toFixed(1).padStart(10)}  ${((b1.itemsPerS + b2.itemsPerS) / 2).toFixed(1).padStart(9)}`)
  }
  console.log(`\nblock  p50 ms before  p50 ms after  req/s before  req/s after`)
  for (const r of rows) console.log(r)
  console.log(`\nafter/before, median [min–max] over ${BLOCKS} blocks:`)
  console.log(`  throughput ratio   ${fmtSpread(tput, 3)}   (> 1: after is faster)`)
  console.log(`  p50 latency ratio  ${fmtSpread(p50, 3)}   (< 1: after is faster)`)
  console.log(`load average at end ${loadavg()[0]!.toFixed(1)}`)
} finally {
  for (const s of servers) s.child.kill()
  rmSync(baseDir, { recursive: true, force: true })
}
