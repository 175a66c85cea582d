// Closing the engine while a model loads (a start-up timeout, SIGTERM during start-up) must not abort the
// process. ONNX Runtime creates a session in one synchronous native call on the worker thread; terminating the
// worker (or exiting) during it made that call return into a dying env, where node-addon-api threw a
// Napi::Error nothing can catch: "terminate called after throwing an instance of 'Napi::Error'", exit 134.
// close() now lets the worker stop between native calls. Should it regress, this test file's process aborts
// (tap reports it failed with SIGABRT) instead of an assertion failing.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { WorkerEngine } from '../../src/engine/engine-client.ts'
import type { ModelFiles } from '../../src/engine/types.ts'
import { realModelDir } from '../helpers/real-model.ts'

const entry = await realModelDir()
const m = JSON.parse(readFileSync(path.join(entry.dir, 'model.json'), 'utf8'))
const files: ModelFiles = { reward: path.join(entry.dir, m.graphs.reward.file), vision: path.join(entry.dir, m.graphs.vision.file), dtype: m.dtype }

/** A started worker: answering one cheap call means its modules (ORT included) are loaded. */
async function booted(): Promise<WorkerEngine> {
  const engine = new WorkerEngine({ providers: ['cpu'], threads: 1, spin: false })
  await engine.unload('nothing-loaded')
  return engine
}

// How long creating the sessions takes here (nearly all of it inside ORT's native session creation).
const probe = await booted()
const t0 = performance.now()
await probe.load('probe', files)
const loadMs = performance.now() - t0
await probe.close()

t.test('close() during a model load stops the worker without aborting the process', async (t) => {
  t.comment(`session creation took ${loadMs.toFixed(0)} ms; closing at fractions of it`)
  for (const f of [0.2, 0.45, 0.7, 0.9]) {
    const engine = await booted()
    const loading = engine.load('k', files).then(
      () => 'loaded',
      (err: Error) => err.message,
    )
    await new Promise((r) => setTimeout(r, f * loadMs))
    await engine.close()
    const outcome = await loading
    t.ok(outcome === 'loaded' || /engine worker stopped/.test(outcome), `at ${f}: ${outcome}`)
    await t.rejects(engine.unload('k'), /engine worker stopped: closed/, 'calls after close are refused')
  }
})

t.test('close() of an idle engine returns promptly', async (t) => {
  const engine = await booted()
  const started = performance.now()
  await engine.close()
  t.ok(performance.now() - started < 5000, 'the worker exits on the close message')
  await engine.close() // twice is harmless
})
