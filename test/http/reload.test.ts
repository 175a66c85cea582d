// Model hot reload: a new version directory is loaded, validated and warmed in the background and swapped in
// atomically; requests in flight finish on the old version, whose sessions are released afterwards; a version
// that fails never serves and the old one keeps serving; /v1/models, /metrics and every response name the
// version that answered. The watcher loads a directory only once it is stable across two scans.
import t from 'tap'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import path from 'node:path'
import { buildApp } from '../../src/app.ts'
import { versionDirs, type loadVersion } from '../../src/models/load.ts'
import { ModelRegistry } from '../../src/models/registry.ts'
import { ModelReloader } from '../../src/models/reload.ts'
import { testConfig } from '../helpers/build-app.ts'
import { FakeEngine } from '../helpers/fake-engine.ts'
import { fakeModel } from '../helpers/fake-model.ts'

// A full GC before each RSS reading, so JS garbage (file buffers of the sha256 checks) does not blur them.
v8.setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const payload = { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] }
const ADMIN = { authorization: 'Bearer admin-secret' }
const silent = { info() {}, warn() {}, error() {} }

type Teardown = { teardown(fn: () => unknown): void }

class RecordingEngine extends FakeEngine {
  readonly unloaded: string[] = []
  override async unload(key?: string): Promise<void> {
    this.unloaded.push(key!)
  }
}

/** Stands in for loadVersion: a version directory containing BROKEN fails validation. */
const fakeLoad: typeof loadVersion = async (entry) => {
  if (existsSync(path.join(entry.dir, 'BROKEN'))) throw new Error('reward.onnx sha256 does not match the manifest')
  return fakeModel({ name: entry.name, version: entry.version })
}

function repo(t: Teardown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reload-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
const addVersion = (root: string, name: string, version: number, files: Record<string, string> = { 'model.json': '{}' }) => {
  const dir = path.join(root, name, String(version))
  mkdirSync(dir, { recursive: true })
  for (const [f, c] of Object.entries(files)) writeFileSync(path.join(dir, f), c)
  return dir
}

async function appWithV1(t: Teardown, root: string, opts: { realLoader?: boolean } = {}) {
  const engine = new RecordingEngine()
  const models = new ModelRegistry()
  models.publish(fakeModel())
  const app = buildApp(testConfig({ MODELS_DIR: root, ADMIN_TOKEN: 'admin-secret' }), { engine, models, ...(opts.realLoader ? {} : { loadModelVersion: fakeLoad }) })
  await app.ready()
  t.teardown(() => app.close())
  return { app, engine, models }
}

t.test('POST /admin/models/reload swaps in a new version; the old one is released', async (t) => {
  const root = repo(t)
  const { app, engine } = await appWithV1(t, root)
  addVersion(root, 'fake-rm', 2)
  const r = await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })
  t.equal(r.statusCode, 200)
  t.same(r.json(), { loaded: [{ name: 'fake-rm', version: 2, replaced: 1 }], failed: [], serving: [{ name: 'fake-rm', version: 2 }] })
  const s = await app.inject({ method: 'POST', url: '/v1/score', payload })
  t.same(s.json().model, { name: 'fake-rm', version: 2 }, 'the response names the version that answered')
  await app.reloader.settled()
  t.same(engine.unloaded, ['fake-rm/1'], 'old sessions released')
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json().models
  t.same(list.map((m: any) => [m.version, m.state, m.serving]), [[2, 'ready', true]], 'the retired version leaves the listing')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /scorer_model_info\{model="fake-rm",version="2",ep="fake",state="serving"\} 1/)
  t.notMatch(metrics, /scorer_model_info\{model="fake-rm",version="1"/)
  const again = await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })
  t.same(again.json().loaded, [], 'nothing new: nothing reloaded')
})

t.test('requests in flight finish on the old version; the old one is released only after them', async (t) => {
  const root = repo(t)
  const { app, engine } = await appWithV1(t, root)
  engine.hold()
  const inflight = app.inject({ method: 'POST', url: '/v1/score', payload })
  await engine.started(1)
  addVersion(root, 'fake-rm', 2)
  const r = await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })
  t.same(r.json().serving, [{ name: 'fake-rm', version: 2 }], 'swapped while a v1 request runs')
  await new Promise((res) => setTimeout(res, 100))
  t.same(engine.unloaded, [], 'v1 is not released while its request runs')
  engine.release()
  const old = await inflight
  t.equal(old.statusCode, 200)
  t.same(old.json().model, { name: 'fake-rm', version: 1 }, 'the in-flight request finished on v1')
  await app.reloader.settled()
  t.same(engine.unloaded, ['fake-rm/1'])
  t.same((await app.inject({ method: 'POST', url: '/v1/score', payload })).json().model.version, 2)
})

t.test('a version that fails never serves; the old one keeps serving', async (t) => {
  const root = repo(t)
  const { app, engine } = await appWithV1(t, root)
  addVersion(root, 'fake-rm', 2, { 'model.json': '{}', BROKEN: '' })
  const r = await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })
  t.equal(r.statusCode, 200)
  t.same(r.json().loaded, [])
  t.same(r.json().failed, [{ name: 'fake-rm', version: 2, error: 'reward.onnx sha256 does not match the manifest' }])
  t.same(r.json().serving, [{ name: 'fake-rm', version: 1 }])
  t.same((await app.inject({ method: 'POST', url: '/v1/score', payload })).json().model.version, 1)
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json().models
  const v2 = list.find((m: any) => m.version === 2)
  t.same([v2.state, v2.serving], ['failed', false])
  t.match(v2.error, /sha256/)
  t.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /scorer_model_info\{model="fake-rm",version="2",ep="none",state="failed"\} 1/)
  await app.reloader.settled()
  t.same(engine.unloaded, [], 'nothing released')
  // Pinning the failed version explains why it does not serve.
  const pinned = await app.inject({ method: 'POST', url: '/v1/score', payload: { ...payload, model: 'fake-rm/2' } })
  t.equal(pinned.statusCode, 503)
  t.match(pinned.json().error.message, /failed/)
  // The same broken directory is not retried on every reload; a fixed one is.
  t.same((await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json().failed, [])
  rmSync(path.join(root, 'fake-rm', '2', 'BROKEN'))
  t.same((await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json().loaded, [{ name: 'fake-rm', version: 2, replaced: 1 }])
})

t.test('the real loader rejects an invalid directory through the same route', async (t) => {
  const root = repo(t)
  const { app } = await appWithV1(t, root, { realLoader: true })
  addVersion(root, 'fake-rm', 2, { 'model.json': JSON.stringify({ format_version: 1, name: 'fake-rm', version: 2 }) })
  const r = (await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json()
  t.equal(r.failed.length, 1)
  t.match(r.failed[0].error, /model\.json invalid/)
  t.same(r.serving, [{ name: 'fake-rm', version: 1 }])
})

t.test('older versions and other names: only newer versions of a name are loaded', async (t) => {
  const root = repo(t)
  const engine = new RecordingEngine()
  const registry = new ModelRegistry()
  registry.publish(fakeModel({ version: 3 }))
  const reloader = new ModelReloader({ root, engine, registry, maxBatchTokens: 16384, maxItemChars: 1000, log: silent, pollIntervalMs: 0, drainTimeoutMs: 1000, load: fakeLoad })
  addVersion(root, 'fake-rm', 2)
  addVersion(root, 'other-rm', 1)
  const r = await reloader.reload({ force: true })
  t.same(r.loaded, [{ name: 'other-rm', version: 1, replaced: null }])
  t.same(registry.servingModels().map((m) => m.key).sort(), ['fake-rm/3', 'other-rm/1'])
  await reloader.close()
})

t.test('the watcher waits until a directory is stable across two scans', async (t) => {
  const root = repo(t)
  const engine = new RecordingEngine()
  const registry = new ModelRegistry()
  registry.publish(fakeModel())
  const reloader = new ModelReloader({ root, engine, registry, maxBatchTokens: 16384, maxItemChars: 1000, log: silent, pollIntervalMs: 0, drainTimeoutMs: 1000, load: fakeLoad })
  t.teardown(() => reloader.close())
  const dir = addVersion(root, 'fake-rm', 2, { 'model.json': '{}' })
  t.same((await reloader.reload()).waiting, [{ name: 'fake-rm', version: 2 }], 'first sight: wait')
  writeFileSync(path.join(dir, 'reward.onnx'), 'still copying')
  t.same((await reloader.reload()).waiting, [{ name: 'fake-rm', version: 2 }], 'changed since: wait again')
  const r = await reloader.reload()
  t.same(r.loaded, [{ name: 'fake-rm', version: 2, replaced: 1 }], 'unchanged across two scans: loaded')
  await reloader.settled()
  t.same(engine.unloaded, ['fake-rm/1'])
})

t.test('the watcher polls by itself in a real-repository app', async (t) => {
  const root = repo(t)
  addVersion(root, 'fake-rm', 1)
  const engine = new RecordingEngine()
  // No registry passed: the app loads MODELS_DIR at start-up and watches it (loader faked, engine faked).
  const app = buildApp(testConfig({ MODELS_DIR: root, MODEL_POLL_INTERVAL_MS: '50' }), { engine, loadModelVersion: fakeLoad })
  t.teardown(() => app.close())
  await app.ready()
  // Start-up loads through the same (injected) loader as hot reload.
  const serving = () => app.models.servingModels().map((m) => m.key)
  t.same(serving(), ['fake-rm/1'], 'loaded at start-up')
  addVersion(root, 'fake-rm', 2)
  const until = Date.now() + 5000
  while (serving()[0] !== 'fake-rm/2' && Date.now() < until) await new Promise((r) => setTimeout(r, 25))
  t.same(serving(), ['fake-rm/2'], 'picked up without a restart or an admin call')
})

// The real thing end to end: the real loader (manifest, sha256, ONNX sessions, warm-up) and the real engine.
async function realModel(): Promise<{ name: string; version: number; dir: string } | null> {
  const repoModels = path.resolve(import.meta.dirname, '../../models')
  const found = (await versionDirs(repoModels)).sort((a, b) => b.version - a.version)[0]
  if (found) return found
  try {
    const { realModelDir } = await import('../helpers/real-model.ts')
    return await realModelDir()
  } catch {
    return null
  }
}

const src = await realModel()
t.test('real model: reload a new version, release the old sessions, refuse a corrupt one', { skip: src ? false : 'no real model published yet (models/<name>/<version>/)' }, async (t) => {
  if (!src) return
  const root = repo(t)
  const v = (n: number) => path.join(root, src.name, String(n))
  cpSync(src.dir, v(1), { recursive: true })
  const setVersion = (n: number) => {
    const m = JSON.parse(readFileSync(path.join(v(n), 'model.json'), 'utf8'))
    writeFileSync(path.join(v(n), 'model.json'), JSON.stringify({ ...m, version: n }))
  }
  setVersion(1)
  const app = buildApp(testConfig({ MODELS_DIR: root, ADMIN_TOKEN: 'admin-secret', MODEL_POLL_INTERVAL_MS: '0', EXECUTION_PROVIDERS: 'cpu' }))
  t.teardown(() => app.close())
  await app.ready()
  const score = async () => (await app.inject({ method: 'POST', url: '/v1/score', payload: { ...payload, model: src.name } })).json()
  const s1 = await score()
  t.same(s1.model, { name: src.name, version: 1 })
  gc()
  const rss0 = process.memoryUsage().rss
  cpSync(v(1), v(2), { recursive: true })
  setVersion(2)
  const r = (await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json()
  t.same(r.loaded, [{ name: src.name, version: 2, replaced: 1 }], JSON.stringify(r.failed))
  gc()
  const rssBoth = process.memoryUsage().rss
  const s2 = await score()
  t.same(s2.model, { name: src.name, version: 2 })
  t.ok(Math.abs(s2.scores[0] - s1.scores[0]) <= 1e-6, 'same weights, same score (|Δ| <= 1e-6)')
  await app.reloader.settled()
  const tile = JSON.parse(readFileSync(path.join(v(1), 'model.json'), 'utf8')).config.vision.tile_size
  const runV = (n: number) => app.engine.runVision(`${src.name}/${n}`, new Float32Array(3 * tile * tile), tile, tile)
  t.ok((await runV(2)).tokens > 0, 'v2 sessions run')
  await t.rejects(runV(1), /not loaded/, 'v1 sessions are released in the engine')
  // Released memory is reused. After a warm-up of swaps (allocator arenas settle), eight more swaps (each loads a
  // version, then releases the previous one) must grow the process far less than keeping eight versions does.
  // Eight, not four: measured per step (Node 20 and 22), released versions leave ~25-30 MiB in the allocator that the
  // process keeps and reuses, so the swaps' growth plateaus there, and the first three kept versions fill that
  // reused space at ~0 MiB each; with four of each the ratio ran 0.05-0.72 on allocator noise alone.
  const mib = (b: number) => (b / 2 ** 20).toFixed(1)
  const swap = async (n: number) => {
    cpSync(v(n - 1), v(n), { recursive: true })
    setVersion(n)
    const r = (await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json()
    t.same(r.serving, [{ name: src.name, version: n }])
    await app.reloader.settled()
  }
  for (let n = 3; n <= 5; n++) await swap(n)
  gc()
  const rssWarm = process.memoryUsage().rss
  const swaps = 8
  for (let n = 6; n < 6 + swaps; n++) await swap(n)
  gc()
  const rssSwapped = process.memoryUsage().rss
  const growth = rssSwapped - rssWarm
  // Control, same process: as many versions loaded without releasing anything.
  for (let n = 6; n < 6 + swaps; n++) {
    await app.engine.load(`control/${n}`, { reward: path.join(v(n), 'reward.onnx'), vision: path.join(v(n), 'vision.onnx') })
    await app.engine.runVision(`control/${n}`, new Float32Array(3 * tile * tile), tile, tile)
  }
  gc()
  const kept = process.memoryUsage().rss - rssSwapped
  t.comment(`rss: ${mib(rss0)} MiB with v1, +${mib(rssBoth - rss0)} MiB with v2 beside it; ${swaps} swaps with release: ${growth >= 0 ? '+' : ''}${mib(growth)} MiB; ${swaps} versions kept: +${mib(kept)} MiB`)
  // Not released (session release removed from the engine worker), the swaps grew 1.9x what keeping the versions
  // did (397 vs 208 MiB); released, 0.16-0.23 alone and up to 0.55 inside the full parallel suite (allocator noise
  // under load), so the line is drawn at 1: released swaps must grow less than keeping the versions.
  t.ok(growth < kept, `${swaps} swaps (release) grew RSS by ${mib(growth)} MiB, keeping ${swaps} versions by ${mib(kept)} MiB`)
  const last = 5 + swaps
  // A corrupt version (one byte of reward.onnx changed) fails its sha256 and never serves.
  cpSync(v(last), v(last + 1), { recursive: true })
  setVersion(last + 1)
  const onnx = readFileSync(path.join(v(last + 1), 'reward.onnx'))
  onnx[onnx.length - 1] ^= 0xff
  writeFileSync(path.join(v(last + 1), 'reward.onnx'), onnx)
  const bad = (await app.inject({ method: 'POST', url: '/admin/models/reload', headers: ADMIN })).json()
  t.equal(bad.failed.length, 1)
  t.match(bad.failed[0].error, /sha256/)
  t.same(bad.serving, [{ name: src.name, version: last }])
  t.same((await score()).model.version, last)
})
