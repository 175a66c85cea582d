// Execution-provider availability is decided quietly (from files, before ORT is asked), and starting the real
// engine on this CPU-only host with the default preference (cuda,webgpu,cpu) prints nothing on stderr and
// leaves nothing in $TMPDIR (ORT's telemetry trace file mat-debug-<pid>.log and its .ses file).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { providerUnavailable } from '../../src/engine/onnx.ts'
import { realModelDir, REPO_ROOT } from '../helpers/real-model.ts'

const scratch = mkdtempSync(path.join(os.tmpdir(), 'provider-probe-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
const ortBin = path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'bin/napi-v6/linux/x64')

t.test('availability from the host filesystem', async (t) => {
  const bare = path.join(scratch, 'bare')
  const gpu = path.join(scratch, 'gpu')
  mkdirSync(bare)
  mkdirSync(path.join(gpu, 'dev/dri'), { recursive: true })
  writeFileSync(path.join(gpu, 'dev/dri/renderD128'), '')
  writeFileSync(path.join(gpu, 'dev/nvidiactl'), '')
  t.equal(providerUnavailable('cpu', bare), null, 'cpu always')
  t.match(providerUnavailable('webgpu', bare), /no GPU adapter device/)
  t.equal(providerUnavailable('webgpu', gpu), null, 'a render node: WebGPU is worth trying')
  // The CUDA EP library is not part of the npm package; without it a device does not help.
  t.notOk(existsSync(path.join(ortBin, 'libonnxruntime_providers_cuda.so')), 'precondition: CPU-only install')
  t.match(providerUnavailable('cuda', gpu), /libonnxruntime_providers_cuda\.so not installed/)
  t.match(providerUnavailable('tensorrt', bare), /not installed|no NVIDIA device/)
})

t.test('the real engine starts quietly and leaves no files in TMPDIR', { timeout: 120_000 }, async (t) => {
  const entry = await realModelDir()
  const tmp = path.join(scratch, 'tmp')
  mkdirSync(tmp)
  const script = path.join(scratch, 'start-engine.mts')
  writeFileSync(
    script,
    `import { WorkerEngine } from ${JSON.stringify(path.join(REPO_ROOT, 'src/engine/engine-client.ts'))}
const engine = new WorkerEngine({ providers: ['cuda', 'webgpu', 'cpu'], threads: 1, spin: false })
const g = await engine.load('m', { reward: ${JSON.stringify(path.join(entry.dir, 'reward.onnx'))}, vision: ${JSON.stringify(path.join(entry.dir, 'vision.onnx'))} })
console.log(JSON.stringify(g.reward))
await engine.close()
`,
  )
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp }
  delete env.ORT_DISABLE_TELEMETRY
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 100_000 })
  t.equal(r.status, 0, r.stderr)
  const reward = JSON.parse(r.stdout.trim().split('\n').at(-1)!)
  t.equal(reward.executionProvider, 'cpu')
  t.same(reward.fallbacks.map((f: { provider: string }) => f.provider), ['cuda', 'webgpu'])
  for (const f of reward.fallbacks) t.match(f.reason, /^skipped: /, `${f.provider} skipped without asking ORT: ${f.reason}`)
  t.equal(r.stderr, '', 'nothing on stderr (no ORT provider errors, no Vulkan/XDG warnings)')
  // (tsx keeps its transform cache there too: that one is ours.)
  t.same(readdirSync(tmp).filter((f) => /^mat-debug-|\.ses$/.test(f)), [], 'no mat-debug-<pid>.log or .ses left behind')
})
