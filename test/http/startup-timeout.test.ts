// Start-up is bounded by STARTUP_TIMEOUT_MS (Fastify's pluginTimeout), which covers loading the models in the
// hot-reload plugin's onReady hook: past it ready() rejects with a timeout that server.ts logs as a clear line
// naming the setting (then exits 1); within it a slow load completes and the model serves. Fastify's 10 s
// default killed start-up on a loaded host. The loader is injected through buildApp's deps.loadModelVersion.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import type { loadVersion } from '../../src/models/load.ts'
import { isStartupTimeout, startupFailureMessage } from '../../src/http/startup.ts'
import { testConfig } from '../helpers/build-app.ts'
import { FakeEngine } from '../helpers/fake-engine.ts'
import { fakeModel } from '../helpers/fake-model.ts'

function repoWithOneVersion(t: { teardown(fn: () => unknown): void }): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'startup-timeout-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(path.join(root, 'slow', '1'), { recursive: true })
  writeFileSync(path.join(root, 'slow', '1', 'model.json'), '{}')
  return root
}

/** A loader that takes `ms`, or until release() (a 7B model takes minutes); counts its calls. */
function slowLoader(ms: number): { load: typeof loadVersion; calls: () => number; release: () => void } {
  let n = 0
  let release = () => {}
  const released = new Promise<void>((r) => (release = r))
  const load: typeof loadVersion = async (entry) => {
    n++
    let timer: NodeJS.Timeout | undefined
    await Promise.race([released, new Promise((r) => (timer = setTimeout(r, ms)))])
    clearTimeout(timer)
    return fakeModel({ name: entry.name, version: entry.version })
  }
  return { load, calls: () => n, release: () => release() }
}

function slowApp(t: { teardown(fn: () => unknown): void }, startupTimeoutMs: string, loadMs: number) {
  const config = testConfig({ MODELS_DIR: repoWithOneVersion(t), STARTUP_TIMEOUT_MS: startupTimeoutMs, MODEL_POLL_INTERVAL_MS: '0' })
  const loader = slowLoader(loadMs)
  // No registry passed in: the app loads MODELS_DIR itself at start-up, through the injected loader.
  const app = buildApp(config, { engine: new FakeEngine(), loadModelVersion: loader.load })
  return { app, config, loader }
}

// 2 s, not less: each plugin gets the same timeout, and on a loaded 2-core host registering one (the docs
// plugin) was seen to take over 500 ms. Rejecting well before 10 s shows the setting, not Fastify's default,
// bounded the load.
t.test('a model load longer than STARTUP_TIMEOUT_MS fails start-up with a clear error', async (t) => {
  const { app, config, loader } = slowApp(t, '2000', 60_000)
  const started = Date.now()
  const err = await app.ready().then(
    () => null,
    (e: unknown) => e,
  )
  const took = Date.now() - started
  t.ok(err, 'ready() rejected')
  t.equal((err as { code?: string } | null)?.code, 'FST_ERR_HOOK_TIMEOUT', 'the onReady model load timed out, no plugin')
  t.equal(loader.calls(), 1, 'the start-up load was running when the timeout fired')
  t.ok(isStartupTimeout(err))
  t.ok(took >= 1900 && took < 8000, `rejected after STARTUP_TIMEOUT_MS, well before Fastify's 10 s default (${took} ms)`)
  const line = startupFailureMessage(err, config)
  t.match(line, /STARTUP_TIMEOUT_MS=2000 ms/)
  t.match(line, /raise STARTUP_TIMEOUT_MS/)
  t.notMatch(line, /forgotten to call 'done'/, "not Fastify's misleading hint")
  loader.release()
  await app.close() // server.ts closes the app (releasing the engine) before exiting 1
})

for (const timeout of ['30000', '0']) {
  t.test(`STARTUP_TIMEOUT_MS=${timeout}: a 1 s model load completes and the model serves`, async (t) => {
    const { app, loader } = slowApp(t, timeout, 1000)
    t.teardown(() => app.close())
    await app.ready()
    t.equal(loader.calls(), 1)
    t.equal(app.models.resolve('slow').key, 'slow/1')
    t.ok(app.models.isReady())
  })
}

t.test('other start-up failures keep their own reason', async (t) => {
  const config = testConfig()
  t.equal(startupFailureMessage(new Error('listen EADDRINUSE: address already in use 0.0.0.0:8080'), config), 'start-up failed: listen EADDRINUSE: address already in use 0.0.0.0:8080')
  t.notOk(isStartupTimeout(new Error('x')))
  t.notOk(isStartupTimeout(null))
})
