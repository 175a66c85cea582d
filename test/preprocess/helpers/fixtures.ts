// The shared third-party fixtures (../shared/fixtures from the repo root) and whether this host has ffmpeg.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { gunzipSync } from 'node:zlib'

export const fixtures = join(import.meta.dirname, '..', '..', '..', '..', 'shared', 'fixtures')

/** A fixture's bytes; `.gz` files (the PNG bomb) are gunzipped as the fixtures README asks. */
export function readFixture(p: string): Uint8Array {
  const raw = readFileSync(join(fixtures, p))
  return new Uint8Array(p.endsWith('.gz') ? gunzipSync(raw) : raw)
}

export const fixtureBase64 = (p: string): string => Buffer.from(readFixture(p)).toString('base64')

export const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0
