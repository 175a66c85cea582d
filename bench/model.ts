// The model a bench measures: the highest version of DEFAULT_MODEL (or of any model when unset) under MODELS_DIR.
// Shared by the bench scripts that load the graphs themselves beside the service.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Config } from '../src/config.ts'
import { versionDirs } from '../src/models/load.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export async function benchModel(config: Config): Promise<{ modelsDir: string; entry: { name: string; version: number; dir: string } }> {
  const modelsDir = path.resolve(root, config.modelsDir)
  const entry = (await versionDirs(modelsDir)).filter((e) => !config.defaultModel || e.name === config.defaultModel).sort((a, b) => b.version - a.version)[0]
  if (!entry) throw new Error(`no model under ${modelsDir}`)
  return { modelsDir, entry }
}
