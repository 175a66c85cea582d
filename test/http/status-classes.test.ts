// Issue 12 #7: the status class says whose fault it is. A truncated or garbage multipart body is the client's
// (400); a full temp dir is ours and passes (503 + Retry-After); an ffmpeg killed from outside (the OOM killer)
// is ours (503 + Retry-After, retryable), not the video's; without ffmpeg /readyz says "degraded".
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { storageError } from '../../src/errors.ts'
import { liveTempDirs } from '../../src/preprocess/media/temp-dir.ts'
import { buildMediaApp } from '../preprocess/helpers/media-app.ts'
import { fixtures, hasFfmpeg } from '../preprocess/helpers/fixtures.ts'
import { skipUnless } from '../helpers/tools.ts'

const B = 'status-boundary'
const headers = { 'content-type': `multipart/form-data; boundary=${B}` }
const request = JSON.stringify({ items: [{ messages: [{ role: 'user', content: [{ type: 'image', file: 'img' }] }, { role: 'assistant', content: 'x' }] }] })
const part = (name: string, filename?: string) =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n`

t.test('truncated or garbage multipart bodies are 400 bad_request', async (t) => {
  const { app } = await buildMediaApp()
  t.teardown(() => app.close())
  const cases: Record<string, string | Buffer> = {
    'ends inside a file': `${part('request')}${request}\r\n${part('img', 'a')}abcdef`,
    'ends inside the request field': `${part('request')}{"ite`,
    'ends inside part headers': `--${B}\r\nContent-Dispos`,
    'no closing boundary': `${part('request')}${request}\r\n`,
    garbage: Buffer.from(Array.from({ length: 500 }, (_, i) => (i * 37) % 256)),
  }
  for (const [label, payload] of Object.entries(cases)) {
    const r = await app.inject({ method: 'POST', url: '/v1/score', headers, payload })
    t.equal(r.statusCode, 400, `${label}: ${r.body.slice(0, 160)}`)
    t.equal(r.json().error.code, 'bad_request', label)
  }
  t.equal(liveTempDirs(), 0)
})

t.test('ENOSPC in the temp dir is 503 + Retry-After, not 500', async (t) => {
  t.equal(storageError(Object.assign(new Error('x'), { code: 'EACCES' })), null, 'only space/handle exhaustion maps')
  // a real full file system: a 64 KiB tmpfs (needs root, as CI runs); elsewhere the mapping above is what runs
  const root = mkdtempSync(join(tmpdir(), 'enospc-'))
  t.teardown(() => {
    spawnSync('umount', [root])
    rmSync(root, { recursive: true, force: true })
  })
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', root]).status === 0
  if (!mounted) {
    t.comment(skipUnless(false, 'cannot mount a tmpfs here (not root): the full-disk request is not run'))
    return
  }
  const { app } = await buildMediaApp({ MEDIA_TEMP_DIR: root })
  t.teardown(() => app.close())
  const big = readFileSync(join(fixtures, 'images/real/imagereward-1.webp'))
  t.ok(big.length > 64 * 1024, 'the upload does not fit')
  const payload = Buffer.concat([Buffer.from(`${part('request')}${request}\r\n${part('img', 'a.webp')}`), big, Buffer.from(`\r\n--${B}--\r\n`)])
  const r = await app.inject({ method: 'POST', url: '/v1/score', headers, payload })
  t.equal(r.statusCode, 503, r.body)
  t.equal(r.json().error.code, 'storage_unavailable')
  t.ok(Number(r.headers['retry-after']) > 0, 'Retry-After')
  t.equal(liveTempDirs(), 0, 'the partial upload is removed')
})

t.test('ffmpeg killed by a signal from outside is 503 retryable; a crash on the input stays 422', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fake-ffmpeg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fake = (name: string, sig: string) => {
    const p = join(dir, name)
    // answers -version (the availability probe), then dies by `sig` on real work, as the OOM killer would do
    writeFileSync(p, `#!/bin/sh\nfor a in "$@"; do [ "$a" = "-version" ] && exit 0; done\nkill -${sig} $$\n`)
    chmodSync(p, 0o755)
    return p
  }
  const video = readFileSync(join(fixtures, 'video/real/small-webm.webm')).toString('base64')
  const payload = { items: [{ messages: [{ role: 'user', content: [{ type: 'video', data: video }] }, { role: 'assistant', content: 'x' }] }] }
  for (const [sig, status, code] of [['KILL', 503, 'decoder_killed'], ['TERM', 503, 'decoder_killed'], ['SEGV', 422, 'media_invalid']] as const) {
    const { app } = await buildMediaApp({ FFMPEG_PATH: fake(`ffmpeg-${sig}`, sig), FFPROBE_PATH: fake(`ffprobe-${sig}`, sig) })
    const r = await app.inject({ method: 'POST', url: '/v1/score', payload })
    await app.close()
    t.equal(r.statusCode, status, `SIG${sig}: ${r.body.slice(0, 160)}`)
    t.equal(r.json().error.code, code)
    if (status === 503) t.ok(Number(r.headers['retry-after']) > 0, 'Retry-After')
  }
})

t.test('/readyz reports degraded (video unavailable) without ffmpeg', async (t) => {
  const without = await buildMediaApp({ FFMPEG_PATH: '/nonexistent/ffmpeg', FFPROBE_PATH: '/nonexistent/ffprobe' })
  t.teardown(() => without.app.close())
  const r = await without.app.inject({ url: '/readyz' })
  t.equal(r.statusCode, 200, 'still ready: text and images are served')
  t.same(r.json(), { status: 'degraded', models: ['fake-rm/1'], unavailable: ['video'] })
  if (hasFfmpeg) {
    const withFfmpeg = await buildMediaApp()
    t.teardown(() => withFfmpeg.app.close())
    t.equal((await withFfmpeg.app.inject({ url: '/readyz' })).json().status, 'ready')
  }
})
