// Where the real default model lives (models/<name>/<highest version>/), for tests that run the real engine.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { versionDirs } from '../../src/models/load.ts'
import type { Message } from '../../src/conversation/types.ts'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const MODELS_DIR = path.join(REPO_ROOT, 'models')

export async function realModelDir(): Promise<{ name: string; version: number; dir: string }> {
  const all = await versionDirs(MODELS_DIR)
  const best = all.sort((a, b) => b.version - a.version)[0]
  if (!best) throw new Error(`no model under ${MODELS_DIR} (the trainer publishes models/ixc-reward-tiny/<version>/)`)
  return best
}

export interface GoldenCase {
  id: string
  kind: 'text' | 'image' | 'video'
  messages: Message[]
  input_ids: number[]
  score: number
}

export function readGolden(dir: string): { atol_score: number; cases: GoldenCase[] } {
  return JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8'))
}
