// The large-model manifest fields (models/README.md §Large models): optional, with the defaults the older
// manifests mean; the cross-field rules the trainer's _check_large also enforces.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { Ajv2020 } from 'ajv/dist/2020.js'
import t from 'tap'
import { ModelManifestSchema } from '../../src/models/manifest.ts'
import { SCHEMA_PATH } from '../../scripts/manifest-schema.ts'

const base = JSON.parse(await readFile(path.join('models', 'ixc-reward-tiny', '1', 'model.json'), 'utf8'))
const validate = new Ajv2020({ strict: false, allErrors: true }).compile(JSON.parse(await readFile(SCHEMA_PATH, 'utf8')))
const sha = 'a'.repeat(64)

/** The tiny model's manifest turned into a float16 export with external data for both graphs. */
function fp16(): any {
  const m = structuredClone(base)
  m.dtype = 'float16'
  for (const g of ['vision', 'reward'] as const) {
    m.graphs[g].dtype = 'float16'
    m.graphs[g].attention = g === 'reward' ? 'com.microsoft.GroupQueryAttention' : 'com.microsoft.MultiHeadAttention'
    m.graphs[g].external_data = [`${g}.onnx.data`]
    m.files[`${g}.onnx.data`] = { sha256: sha, bytes: 10 }
    for (const s of [...m.graphs[g].inputs, ...m.graphs[g].outputs]) if (s.dtype === 'float32') s.dtype = 'float16'
  }
  return m
}

const issues = (m: unknown) => {
  const r = ModelManifestSchema.safeParse(m)
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
}

t.test('absent fields mean float32, eager attention, weights inline', async (t) => {
  const m = ModelManifestSchema.parse(base)
  t.equal(m.dtype, 'float32')
  t.same([m.graphs.reward.attention, m.graphs.reward.external_data], ['eager', []])
  t.equal(m.graphs.vision.dtype, undefined)
})

t.test('a float16 export with external data parses (zod and the JSON Schema)', async (t) => {
  const m = fp16()
  t.same(issues(m), [])
  t.ok(validate(m), JSON.stringify(validate.errors))
  const p = ModelManifestSchema.parse(m)
  t.equal(p.dtype, 'float16')
  t.same(p.graphs.reward.external_data, ['reward.onnx.data'])
})

t.test('cross-field rules: graph dtype, float I/O dtype, external data listed in files', async (t) => {
  const a = fp16()
  a.graphs.vision.dtype = 'float32'
  t.match(issues(a), ['graphs.vision.dtype: must equal the model dtype float16'])
  const b = fp16()
  b.graphs.reward.inputs[1].dtype = 'float32' // image_embeds
  t.match(issues(b), ['graphs.reward.inputs.1.dtype: float tensors must be float16'])
  const c = fp16()
  delete c.files['reward.onnx.data']
  t.match(issues(c), ['graphs.reward.external_data.0: reward.onnx.data is not listed (and hashed) in files'])
  const d = structuredClone(base) // float16 I/O in a float32 model
  d.graphs.reward.outputs[0].dtype = 'float16'
  t.match(issues(d), ['graphs.reward.outputs.0.dtype: float tensors must be float32'])
  const e = fp16()
  e.dtype = 'bfloat16'
  t.ok(issues(e).some((i) => i.startsWith('dtype:')))
})
