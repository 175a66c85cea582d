// models/manifest.schema.json is generated from the service's zod schema (npm run schema:manifest) and read by the
// trainer's manifest validator, so the contract is written once: a stale committed copy fails here.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { Ajv2020 } from 'ajv/dist/2020.js'
import t from 'tap'
import { ModelManifestSchema } from '../../src/models/manifest.ts'
import { SCHEMA_PATH, manifestSchemaText } from '../../scripts/manifest-schema.ts'

const committed = await readFile(SCHEMA_PATH, 'utf8')

t.test('the committed JSON Schema is the one generated from the zod schema', async (t) => {
  t.equal(committed, manifestSchemaText(), 'stale: run `npm run schema:manifest` and commit models/manifest.schema.json')
})

t.test('the JSON Schema and zod agree on the default model and on a broken copy of it', async (t) => {
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(JSON.parse(committed))
  const manifest = JSON.parse(await readFile(path.join('models', 'ixc-reward-tiny', '1', 'model.json'), 'utf8'))
  t.ok(validate(manifest), JSON.stringify(validate.errors))
  t.ok(ModelManifestSchema.safeParse(manifest).success)
  const broken = { ...manifest, truncation: { side: 'middle' }, files: { 'reward.onnx': { sha256: 'x', bytes: 1 } } }
  t.notOk(validate(broken))
  t.same(validate.errors?.map((e) => e.instancePath).sort(), ['/files/reward.onnx/sha256', '/truncation/side'])
  t.notOk(ModelManifestSchema.safeParse(broken).success)
})
