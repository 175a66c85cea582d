// The checksum cache (src/models/checksums.ts): a file is hashed once per state; a later load reuses the hash
// only for the very same file (inode, size, mtime, ctime), so a change is still detected — even one that keeps
// the size and puts the old mtime back.
import { copyFile, mkdtemp, mkdir, open, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { ChecksumCache, sha256File } from '../../src/models/checksums.ts'
import { readVersion } from '../../src/models/load.ts'
import { realModelDir } from '../helpers/real-model.ts'

const tmp = await mkdtemp(path.join(os.tmpdir(), 'checksums-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))
const cacheFile = path.join(tmp, 'cache.json')

const T = 1_600_000_000 // whole seconds: utimes can put exactly this mtime back

/** Flips one byte in place and puts the old mtime back (what a careless or hostile edit looks like); the file's
 *  mtime must have been pinned to T before it was hashed. */
async function flipByteKeepMtime(file: string, at: number): Promise<void> {
  const before = await stat(file)
  if (before.mtimeMs !== T * 1000) throw new Error('test setup: pin the mtime first')
  const fh = await open(file, 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, at)
  b[0] = b[0]! ^ 1
  await fh.write(b, 0, 1, at)
  await fh.close()
  await utimes(file, T, T)
  const after = await stat(file)
  if (after.mtimeMs !== before.mtimeMs || after.size !== before.size) throw new Error('test setup: mtime/size not kept')
}

t.test('CHECKSUM_CACHE: default MODELS_DIR/.sha256-cache.json, a path, or off', async (t) => {
  t.equal(loadConfig({ MODELS_DIR: '/m' }).checksumCache, '/m/.sha256-cache.json')
  t.equal(loadConfig({ MODELS_DIR: '/m', CHECKSUM_CACHE: '/var/cache/sha.json' }).checksumCache, '/var/cache/sha.json')
  t.equal(loadConfig({ MODELS_DIR: '/m', CHECKSUM_CACHE: 'off' }).checksumCache, '')
})

t.test('hash once, reuse for the same file state, re-hash on any change', async (t) => {
  const f = path.join(tmp, 'w.data')
  await writeFile(f, Buffer.alloc(3 << 20, 7))
  await utimes(f, T, T)
  const counted = (cache: ChecksumCache) => cache.stats.hashed
  const a = new ChecksumCache(cacheFile)
  const h1 = (await a.sha256(f)).sha256
  t.equal(h1, await sha256File(f))
  t.equal((await a.sha256(f)).sha256, h1)
  t.same(a.stats, { hashed: 1, hashedBytes: 3 << 20, cached: 1 })
  t.equal(await a.flush(), null)

  const b = new ChecksumCache(cacheFile) // a later start: read from the cache file, no hashing
  t.equal((await b.sha256(f)).sha256, h1)
  t.equal(counted(b), 0)

  await flipByteKeepMtime(f, 12345)
  const c = new ChecksumCache(cacheFile)
  const h2 = (await c.sha256(f)).sha256
  t.equal(counted(c), 1, 'same size and mtime, but ctime moved: hashed again')
  t.not(h2, h1)
  t.equal(h2, await sha256File(f))
  await c.flush()

  const copy = path.join(tmp, 'w.copy') // replaced by another file (new inode) with the same content
  await copyFile(f, copy)
  await rename(copy, f)
  const d = new ChecksumCache(cacheFile)
  t.equal((await d.sha256(f)).sha256, h2)
  t.equal(counted(d), 1, 'new inode: hashed again')
})

t.test('CHECKSUM_CACHE=off (no file) hashes every time; an unwritable cache file only costs a re-hash', async (t) => {
  const f = path.join(tmp, 'x.data')
  await writeFile(f, 'abc')
  const off = new ChecksumCache('')
  await off.sha256(f)
  await off.sha256(f)
  t.equal(off.stats.hashed, 2)
  t.equal(await off.flush(), null)
  const ro = new ChecksumCache(path.join(tmp, 'no-such-dir', 'cache.json'))
  await ro.sha256(f)
  t.match((await ro.flush())?.message, /ENOENT/)
})

t.test('a model version: the second load hashes nothing; a tampered file with its old mtime is still refused', async (t) => {
  const real = await realModelDir()
  const dir = path.join(tmp, 'models', real.name, String(real.version))
  await mkdir(dir, { recursive: true })
  for (const f of await readdir(real.dir)) {
    if (f === 'tokenizer.json') {
      await copyFile(path.join(real.dir, f), path.join(dir, f))
      await utimes(path.join(dir, f), T, T)
    } else await symlink(path.join(real.dir, f), path.join(dir, f))
  }
  const entry = { name: real.name, version: real.version, dir }
  const limits = { maxBatchTokens: 0, maxItemChars: 100_000 }
  const file = path.join(tmp, 'model-cache.json')
  const first = new ChecksumCache(file)
  await readVersion(entry, { ...limits, checksums: first })
  const manifest = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'))
  t.equal(first.stats.hashed, Object.keys(manifest.files).length)
  await first.flush()
  const second = new ChecksumCache(file)
  await readVersion(entry, { ...limits, checksums: second })
  t.same([second.stats.hashed, second.stats.cached], [0, Object.keys(manifest.files).length])
  await flipByteKeepMtime(path.join(dir, 'tokenizer.json'), 1000)
  const third = new ChecksumCache(file)
  await t.rejects(readVersion(entry, { ...limits, checksums: third }), { message: /tokenizer\.json sha256 [0-9a-f]{64} does not match/ })
})
