// Issue 10 end to end at CI width: a synthetic checkpoint in the published layout (trainer/tests/hf_synthetic.py)
// -> `reward_trainer import-hf` with fused attention and external data (threshold forced low) -> a model
// version in a temp models repo -> the real service over real HTTP -> text, image and video scores equal the
// PyTorch model's (golden.json, written by the exporter from the PyTorch model) within 1e-4. Also: warm-up
// stays small whatever max_seq_len is, /v1/models reports dtype/attention/parameters/bytes, the checksum cache
// is written and reused. Needs /usr/bin/python3 with torch + onnx; in CI (CI=true) it never skips.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { WorkerEngine } from '../../src/engine/engine-client.ts'
import type { Engine, ModelFiles, RewardFeeds } from '../../src/engine/types.ts'
import { loadConfig } from '../../src/config.ts'
import { testConfig } from '../helpers/build-app.ts'
import { REPO_ROOT, type GoldenCase } from '../helpers/real-model.ts'

const PY = '/usr/bin/python3'
const TOL = 1e-4
const tmp = await mkdtemp(path.join(os.tmpdir(), 'import-hf-e2e-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))

function havePython(): boolean {
  try {
    execFileSync(PY, ['-c', 'import torch, onnx'], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** The real engine, recording what each model's first runs were fed (the warm-up). */
class RecordingEngine implements Engine {
  readonly inner = new WorkerEngine({ providers: ['cpu'], threads: 1, spin: false })
  readonly reward: Array<{ rows: number; seqLen: number }> = []
  readonly vision: Array<{ height: number; width: number }> = []
  readonly loads: ModelFiles[] = []
  load(key: string, files: ModelFiles) {
    this.loads.push(files)
    return this.inner.load(key, files)
  }
  unload(key: string) {
    return this.inner.unload(key)
  }
  runReward(key: string, f: RewardFeeds) {
    this.reward.push({ rows: f.rows, seqLen: f.seqLen })
    return this.inner.runReward(key, f)
  }
  runVision(key: string, image: Float32Array, height: number, width: number) {
    this.vision.push({ height, width })
    return this.inner.runVision(key, image, height, width)
  }
  encodeImage(key: string, handle: string, lease: number, image: Float32Array, height: number, width: number) {
    this.vision.push({ height, width })
    return this.inner.encodeImage(key, handle, lease, image, height, width)
  }
  retainImages(lease: number, handles: readonly string[]) {
    this.inner.retainImages(lease, handles)
  }
  releaseImages(lease: number) {
    this.inner.releaseImages(lease)
  }
  health() {
    return this.inner.health()
  }
  close() {
    return this.inner.close()
  }
}

if (!havePython()) {
  if (process.env.CI === 'true') throw new Error(`${PY} with torch and onnx is required in CI (import-hf end to end)`)
  t.plan(0, 'no /usr/bin/python3 with torch + onnx here (never skipped in CI)')
} else {
  await main()
}

async function main() {
  const ckpt = path.join(tmp, 'ckpt')
  const models = path.join(tmp, 'models')
  const dir = path.join(models, 'ixc-hf', '1')
  const dir16 = path.join(models, 'ixc-hf16', '1')
  const trainer = path.join(REPO_ROOT, 'trainer')
  const write = 'import sys; sys.path.insert(0, "tests"); import hf_synthetic; hf_synthetic.write(sys.argv[1], hf_synthetic.config())'
  execFileSync(PY, ['-c', write, ckpt], { cwd: trainer, stdio: 'pipe' })
  execFileSync(PY, ['-m', 'reward_trainer', 'import-hf', '--checkpoint', ckpt, '--out', dir, '--attention', 'fused', '--external-threshold', '1000'], {
    cwd: trainer,
    stdio: 'pipe',
    maxBuffer: 1 << 26,
  })
  // the same checkpoint as float16 graphs (converted from the fp32 trace; GPU EPs only in the service)
  execFileSync(PY, ['-m', 'reward_trainer', 'import-hf', '--checkpoint', ckpt, '--out', dir16, '--dtype', 'fp16', '--external-threshold', '1000'], {
    cwd: trainer,
    stdio: 'pipe',
    maxBuffer: 1 << 26,
  })
  const manifest = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'))
  const golden = JSON.parse(await readFile(path.join(dir, 'golden.json'), 'utf8')) as { cases: Array<GoldenCase & { truncated?: boolean }> }

  const engine = new RecordingEngine()
  // CHECKSUM_CACHE as a deployment leaves it: unset -> MODELS_DIR/.sha256-cache.json
  const app = buildApp(loadConfig({ LOG_LEVEL: 'silent', THREADS: '1', MODELS_DIR: models, MAX_BATCH_TOKENS: '4096' }), { engine })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    await app.close()
    await engine.close()
  })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const post = async (url: string, body: unknown) => {
    const r = await fetch(base + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: r.status, body: (await r.json()) as any }
  }

  t.test('the imported model is a large-model export: fused attention, external data, float32', async (t) => {
    t.same([manifest.dtype, manifest.graphs.reward.attention, manifest.graphs.vision.attention], ['float32', 'com.microsoft.GroupQueryAttention', 'com.microsoft.MultiHeadAttention'])
    t.same(manifest.graphs.reward.external_data, ['reward.onnx.data'])
    t.ok((await stat(path.join(dir, 'reward.onnx.data'))).size > (await stat(path.join(dir, 'reward.onnx'))).size, 'weights are in the data file')
    t.same(engine.loads.find((l) => l.reward.startsWith(dir + path.sep)), { reward: path.join(dir, 'reward.onnx'), vision: path.join(dir, 'vision.onnx'), dtype: 'float32' })
  })

  t.test('/v1/models: ready, with dtype, attention, parameters, bytes on disk and the manifest max_seq_len', async (t) => {
    const m = (await (await fetch(`${base}/v1/models`)).json()) as any
    const mine = m.models.find((x: { name: string }) => x.name === 'ixc-hf')
    t.equal(mine.state, 'ready', mine.error)
    const bytes = Object.values(manifest.files as Record<string, { bytes: number }>).reduce((n, f) => n + f.bytes, 0)
    t.match(mine, { dtype: 'float32', attention: 'com.microsoft.GroupQueryAttention', parameters: manifest.config.num_params, bytes_on_disk: bytes, max_seq_len: manifest.max_seq_len })
    t.ok(manifest.config.num_params > 1e6)
  })

  t.test('the float16 export is refused on the cpu EP at load, with the reason in /v1/models', async (t) => {
    const m = (await (await fetch(`${base}/v1/models`)).json()) as any
    const half = m.models.find((x: { name: string }) => x.name === 'ixc-hf16')
    t.equal(half.state, 'failed')
    t.match(half.error, /\(float16 graph\): cpu: refused: float16 graph; the cpu execution provider serves float32 exports/)
    const r = await post('/v1/score', { model: 'ixc-hf16', items: [{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }] })
    t.equal(r.status, 503)
    t.equal(r.body.error.code, 'model_not_ready')
  })

  t.test('warm-up ran one tile and one short row, not max_seq_len', async (t) => {
    const s = manifest.config.vision.tile_size
    t.same(engine.vision[0], { height: s, width: s })
    t.equal(engine.reward[0]!.rows, 1)
    t.ok(engine.reward[0]!.seqLen <= 8, `warm-up row of ${engine.reward[0]!.seqLen} tokens (max_seq_len ${manifest.max_seq_len})`)
  })

  t.test('the checksum cache was written with every file of the version', async (t) => {
    const cache = JSON.parse(await readFile(path.join(models, '.sha256-cache.json'), 'utf8'))
    for (const [f, want] of Object.entries(manifest.files as Record<string, { sha256: string }>)) {
      t.equal(cache.files[path.join(dir, f)]?.sha256, want.sha256, f)
    }
  })

  for (const kind of ['text', 'image', 'video'] as const) {
    t.test(`${kind} golden cases through HTTP equal the PyTorch scores within ${TOL}`, async (t) => {
      const cases = golden.cases.filter((c) => c.kind === kind)
      t.ok(cases.length >= 3, `${cases.length} ${kind} cases`)
      const r = await post('/v1/score', { model: 'ixc-hf', items: cases.map((c) => ({ messages: c.messages })) })
      t.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300))
      cases.forEach((c, i) => {
        const d = Math.abs(r.body.scores[i] - c.score)
        t.ok(d <= TOL, `${c.id}: |${r.body.scores[i]} - ${c.score}| = ${d.toExponential(2)}`)
      })
      const spread = Math.max(...cases.map((c) => c.score)) - Math.min(...cases.map((c) => c.score))
      t.ok(spread > 1e-3, 'the scores depend on the input')
    })
  }

  t.test('npm run check:golden (the README\'s parity check) passes, and fails at an impossible tolerance', async (t) => {
    // async: the server answering it lives in this process
    const run = (...extra: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const args = ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'check-golden.ts'), dir, base, ...extra]
        execFile(process.execPath, args, { cwd: REPO_ROOT }, (err, stdout, stderr) =>
          resolve({ status: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
        )
      })
    const ok = await run()
    t.equal(ok.status, 0, ok.stderr)
    const rep = JSON.parse(ok.stdout)
    t.match(rep, { model: 'ixc-hf/1', ok: true, atol: 1e-4 })
    t.ok(rep.cases.text >= 3 && rep.cases.image >= 3 && rep.cases.video >= 3)
    const strict = await run('0')
    t.equal(strict.status, 1, 'max |diff| > 0 fails a zero tolerance')
    t.equal(JSON.parse(strict.stdout).ok, false)
  })

  t.test('float16 I/O through the service (cpu refusal lifted, as only tests may): golden cases within the fp16 gate', async (t) => {
    const g16 = JSON.parse(await readFile(path.join(dir16, 'golden.json'), 'utf8'))
    t.match(g16, { reference: 'PyTorch float32' })
    const engine16 = new WorkerEngine({ providers: ['cpu'], threads: 1, spin: false, cpuFloat16: true })
    const app16 = buildApp(testConfig({ MODELS_DIR: models, MAX_BATCH_TOKENS: '4096', CHECKSUM_CACHE: 'off' }), { engine: engine16 })
    await app16.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(async () => {
      await app16.close()
      await engine16.close()
    })
    const base16 = `http://127.0.0.1:${(app16.server.address() as AddressInfo).port}`
    const m = (await (await fetch(`${base16}/v1/models`)).json()) as any
    t.match(m.models.find((x: { name: string }) => x.name === 'ixc-hf16'), { state: 'ready', dtype: 'float16', execution_provider: 'cpu' })
    const rep = await new Promise<any>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'check-golden.ts'), dir16, base16], { cwd: REPO_ROOT }, (err, stdout) =>
        err && !stdout ? reject(err) : resolve(JSON.parse(stdout)),
      ),
    )
    t.match(rep, { model: 'ixc-hf16/1', ok: true, atol: g16.atol_score, rtol: g16.rtol_score })
    t.ok(rep.cases.text >= 3 && rep.cases.image >= 3 && rep.cases.video >= 3)
    t.ok(rep.max_abs_diff > 1e-5, `really half precision: max |diff| ${rep.max_abs_diff} vs PyTorch fp32`)
  })
}
