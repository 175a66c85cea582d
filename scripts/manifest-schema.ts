// Writes models/manifest.schema.json: the JSON Schema of model.json, generated from the service's zod schema
// (src/models/manifest.ts) so the manifest contract is written down once. The trainer validates what it exports
// against the committed file; test/models/manifest-schema.test.ts fails when the file is stale.
// Usage: npm run schema:manifest
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { z } from 'zod'
import { ModelManifestSchema } from '../src/models/manifest.ts'

export const SCHEMA_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'manifest.schema.json')

/** The schema text as committed. io 'input' describes what the service accepts: its z.object parses drop
 *  unknown keys instead of rejecting them, so no `additionalProperties: false`. Refinements (template.turn must
 *  hold {role} and {content}) have no JSON Schema form; the trainer's validator checks the exact turn string. */
export function manifestSchemaText(): string {
  const schema = z.toJSONSchema(ModelManifestSchema.meta({ title: 'model.json (models/README.md §The manifest)' }), {
    io: 'input',
  })
  return JSON.stringify(schema, null, 2) + '\n'
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await writeFile(SCHEMA_PATH, manifestSchemaText())
  console.log(`wrote ${path.relative(process.cwd(), SCHEMA_PATH)}`)
}
