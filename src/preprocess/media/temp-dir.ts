// Per-request temporary directories for uploads and ffmpeg inputs. Names are generated here (mkdtemp), never taken
// from a client, and every directory is removed when its request ends, whatever happened.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { storageError } from '../../errors.ts'

export const TEMP_PREFIX = 'reward-media-'
let live = 0

export interface RequestTempDir {
  path: string
  remove(): Promise<void>
}

export async function createRequestTempDir(root: string): Promise<RequestTempDir> {
  const path = await mkdtemp(join(root, TEMP_PREFIX)).catch((err: unknown) => {
    throw storageError(err) ?? err
  })
  live++
  let removed = false
  return {
    path,
    async remove() {
      if (removed) return
      removed = true
      live--
      await rm(path, { recursive: true, force: true })
    },
  }
}

// Runs `fn` with a fresh directory that is removed afterwards.
export async function withRequestTempDir<T>(root: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await createRequestTempDir(root)
  try {
    return await fn(dir.path)
  } catch (err) {
    throw storageError(err) ?? err // e.g. writing inline video bytes to a full temp dir
  } finally {
    await dir.remove()
  }
}

// Directories created and not yet removed by this process (tests assert it returns to 0).
export function liveTempDirs(): number {
  return live
}
