// Model repository loading with the real engine: a broken version is reported with its reason and never
// serves, while a good one next to it does. Broken versions are built in a temp dir from the real model
// (unchanged files symlinked).
import { mkdtemp, readFile, rm, symlink, writeFile, mkdir, readdir, appendFile, copyFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { WorkerEngine } from '../../src/engine/engine-client.ts'
import { imageTokenCount } from '../../src/preprocess/image/hd-transform.ts'
import { testConfig } from '../helpers/build-app.ts'
import { realModelDir } from '../helpers/real-model.ts'
import { skipUnless } from '../helpers/tools.ts'

const real = await realModelDir()
const root = await mkdtemp(path.join(os.tmpdir(), 'models-'))
t.teardown(() => rm(root, { recursive: true, force: true }))

/** Copies the real model to root/<name>/<version>, letting `edit` change the manifest or files. */
async function variant(name: string, edit: (dir: string, manifest: Record<string, any>) => Promise<void> | void) {
  const dir = path.join(root, name, '1')
  await mkdir(dir, { recursive: true })
  for (const f of await readdir(real.dir)) if (f !== 'model.json') await symlink(path.join(real.dir, f), path.join(dir, f))
  const manifest = JSON.parse(await readFile(path.join(real.dir, 'model.json'), 'utf8'))
  manifest.name = name
  manifest.version = 1
  await edit(dir, manifest)
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(manifest))
}

await variant('good', () => {})
await variant('bad-sha', async (dir, m) => {
  await rm(path.join(dir, 'tokenizer.json'))
  await copyFile(path.join(real.dir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'))
  await appendFile(path.join(dir, 'tokenizer.json'), ' ')
  m.files['tokenizer.json'].bytes += 1 // size matches, content hash does not
})
await variant('bad-schema', (_dir, m) => {
  delete m.tokenizer.bos_id
})
await variant('bad-io-names', (_dir, m) => {
  m.graphs.reward.inputs[0].name = 'token_ids'
})
await variant('wrong-dir', (_dir, m) => {
  m.version = 7
})
await variant('missing-file', async (dir) => {
  await rm(path.join(dir, 'vision.onnx'))
})
// Self-consistent but wrong: the score head's weights changed and the manifest's checksum updated with them
// (python3-onnx edits the graph). Only golden.json, checked at load, tells it from the trainer's model.
const onnxPy = spawnSync('/usr/bin/python3', ['-c', 'import onnx'])
const wrongWeights = skipUnless(onnxPy.status === 0, 'no /usr/bin/python3 with onnx')
if (!wrongWeights) {
  await variant('wrong-weights', async (dir, m) => {
    const file = path.join(dir, 'reward.onnx')
    await rm(file)
    const py = [
      'import sys, onnx, numpy as np',
      'from onnx import numpy_helper',
      'm = onnx.load(sys.argv[1])',
      'head = [i for i in m.graph.initializer if list(i.dims)[-1:] == [1]][-1]',
      'head.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(head) * 1.5, head.name))',
      'onnx.save(m, sys.argv[2])',
    ].join('\n')
    const r = spawnSync('/usr/bin/python3', ['-c', py, path.join(real.dir, 'reward.onnx'), file])
    if (r.status !== 0) throw new Error(String(r.stderr))
    const bytes = await readFile(file)
    m.files['reward.onnx'] = { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length }
  })
}

const engine = new WorkerEngine({ providers: ['cpu'], threads: 1, spin: false })
const app = buildApp(testConfig({ MODELS_DIR: root, DEFAULT_MODEL: 'good' }), { engine })
await app.ready()
t.teardown(async () => {
  await app.close()
  await engine.close()
})

t.test('each broken version is reported with its reason; the good one serves', async (t) => {
  const list = (await app.inject({ method: 'GET', url: '/v1/models' })).json().models
  const by = Object.fromEntries(list.map((m: { name: string }) => [m.name, m]))
  t.equal(by.good.state, 'ready')
  t.equal(by.good.max_batch_tokens, by.good.max_seq_len, 'MAX_BATCH_TOKENS=0 on cpu: one max_seq_len per batch')
  const want: Record<string, RegExp> = {
    'bad-sha': /tokenizer\.json sha256 .* does not match/,
    'bad-schema': /model\.json invalid: .*bos_id/,
    'bad-io-names': /reward\.onnx \(manifest\) inputs/,
    'wrong-dir': /says bad|says wrong-dir\/7/,
    'missing-file': /vision\.onnx is missing/,
    ...(wrongWeights ? {} : { 'wrong-weights': /golden\.json text-\d+: this model scores .*the trainer's model scored/ }),
  }
  for (const [name, re] of Object.entries(want)) {
    t.equal(by[name].state, 'failed', name)
    t.equal(by[name].serving, false, name)
    t.match(by[name].error, re, name)
    const r = await app.inject({
      method: 'POST',
      url: '/v1/score',
      payload: { model: name, items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] },
    })
    t.equal(r.statusCode, 503, name)
    t.equal(r.json().error.code, 'model_not_ready')
  }
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'ready: the default model serves')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /scorer_model_info\{model="good",version="1",ep="cpu",state="serving"\} 1/)
  t.match(metrics, /scorer_model_info\{model="bad-sha",version="1",ep="none",state="failed"\} 1/)
})

t.test('the vision graph runs through the engine: [1,3,H,W] in, [T_img, D] out', async (t) => {
  const model = app.models.resolve('good')
  const s = model.manifest.config.vision.tile_size
  // two tiles side by side: rows 1, cols 2
  const out = await app.engine.runVision(model.key, new Float32Array(3 * s * 2 * s).fill(0.1), s, 2 * s)
  t.equal(out.dim, model.manifest.config.hidden_size)
  t.equal(out.tokens, imageTokenCount(1, 2, s, model.manifest.config.vision.patch))
  t.equal(out.embeds.length, out.tokens * out.dim)
  t.ok(out.embeds.every(Number.isFinite))
})
