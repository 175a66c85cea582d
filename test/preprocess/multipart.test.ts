// multipart/form-data uploads: files referenced by field name, server-side temp files removed, limits enforced
// while streaming (a 50 MB upload over the limit is refused long before it is sent in full), hostile headers.
import t from 'tap'
import sharp from 'sharp'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { request as httpRequest } from 'node:http'
import { buildMediaApp } from './helpers/media-app.ts'
import { fixtures } from './helpers/fixtures.ts'
import { TEMP_PREFIX, liveTempDirs } from '../../src/preprocess/media/temp-dir.ts'

const BOUNDARY = 'test-boundary-7f3a'

function form(fields: Array<{ name: string; value: string | Buffer; filename?: string; type?: string }>, boundary = BOUNDARY): Buffer {
  const parts: Buffer[] = []
  for (const f of fields) {
    const disp = f.filename !== undefined ? `form-data; name="${f.name}"; filename="${f.filename}"` : `form-data; name="${f.name}"`
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n${f.type ? `Content-Type: ${f.type}\r\n` : ''}\r\n`))
    parts.push(typeof f.value === 'string' ? Buffer.from(f.value) : f.value)
    parts.push(Buffer.from('\r\n'))
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`))
  return Buffer.concat(parts)
}

const webp = readFileSync(join(fixtures, 'images/real/imagereward-1.webp'))
const scoreBody = (ref: string) => JSON.stringify({
  items: [{ messages: [{ role: 'user', content: [{ type: 'image', file: ref }, { type: 'text', text: 'what?' }] }, { role: 'assistant', content: 'a painting' }] }],
})
const headers = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }

t.test('files referenced by name score like inline data; temp files are removed', async (t) => {
  const { app, engine, tempRoot } = await buildMediaApp()
  t.teardown(() => app.close())
  // client file name and MIME type are ignored (a hostile name never reaches the file system)
  const res = await app.inject({ method: 'POST', url: '/v1/score', headers, payload: form([{ name: 'request', value: scoreBody('img1') }, { name: 'img1', value: webp, filename: '../../etc/passwd', type: 'text/plain' }]) })
  t.equal(res.statusCode, 200, res.body.slice(0, 300))
  const inline = await app.inject({ method: 'POST', url: '/v1/score', payload: JSON.parse(scoreBody('x').replace('"file":"x"', `"data":"${webp.toString('base64')}"`)) })
  t.equal(inline.json().scores[0], res.json().scores[0], 'same score as the inline upload')
  t.equal(engine.visionRuns.length, 1, 'same bytes: cache hit')
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [], 'per-request directory removed')
  t.equal(liveTempDirs(), 0)
})

t.test('bad multipart requests get specific 4xx', async (t) => {
  const { app, tempRoot } = await buildMediaApp({ MEDIA_MAX_FILE_BYTES: '300000', MEDIA_MAX_FILES: '2' })
  t.teardown(() => app.close())
  const cases: Array<[string, Record<string, string>, Buffer, number, string]> = [
    ['missing file reference', headers, form([{ name: 'request', value: scoreBody('nope') }]), 422, 'invalid_request'],
    ['no request field', headers, form([{ name: 'img1', value: Buffer.from('x'), filename: 'a' }]), 400, 'bad_request'],
    ['request not JSON', headers, form([{ name: 'request', value: '{nope' }]), 400, 'bad_request'],
    ['file over MEDIA_MAX_FILE_BYTES', headers, form([{ name: 'request', value: scoreBody('img1') }, { name: 'img1', value: Buffer.concat([webp, Buffer.alloc(10)]), filename: 'a' }]), 413, 'payload_too_large'],
    ['too many files', headers, form([{ name: 'request', value: scoreBody('a') }, ...['a', 'b', 'c'].map((n) => ({ name: n, value: Buffer.from('x'), filename: n }))]), 413, 'payload_too_large'],
    ['duplicate file name', headers, form([{ name: 'request', value: scoreBody('a') }, { name: 'a', value: Buffer.from('x'), filename: 'a' }, { name: 'a', value: Buffer.from('y'), filename: 'a' }]), 400, 'bad_request'],
    ['boundary over 70 characters', { 'content-type': `multipart/form-data; boundary=${'b'.repeat(252)}` }, form([{ name: 'request', value: '{}' }], 'b'.repeat(252)), 400, 'bad_request'],
    ['no boundary', { 'content-type': 'multipart/form-data' }, Buffer.from('garbage'), 400, 'bad_request'],
    ['__proto__ field', headers, form([{ name: '__proto__', value: '{}' }]), 400, 'bad_request'],
    ['SVG uploaded as image/png', headers, form([{ name: 'request', value: scoreBody('img1') }, { name: 'img1', value: readFileSync(join(fixtures, 'images/hostile/payloads/patt-convert_local_etc_passwd.svg')), filename: 'a.png', type: 'image/png' }]), 415, 'unsupported_media_type'],
  ]
  for (const [label, h, payload, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', headers: h, payload })
    t.equal(res.statusCode, status, `${label}: ${res.body.slice(0, 200)}`)
    t.equal(res.json().error?.code, code, label)
  }
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [], 'no temp dir left after refused uploads')
  t.equal(liveTempDirs(), 0)
})

// Streams `total` bytes of one file part over real HTTP in 64 KiB chunks; returns how many bytes were written
// before the server answered or closed the connection.
function streamUpload(port: number, total: number, declareLength: boolean): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve, reject) => {
    const head = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="request"\r\n\r\n${scoreBody('big')}\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="big"; filename="big.png"\r\n\r\n`)
    const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`)
    const h: Record<string, string | number> = { ...headers }
    if (declareLength) h['content-length'] = head.length + total + tail.length
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/score', headers: h })
    let sent = 0
    let answered = false
    req.on('response', (res) => {
      answered = true
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, sent }))
    })
    req.on('error', (err) => (answered ? undefined : reject(err)))
    const chunk = Buffer.alloc(64 * 1024, 0x41)
    req.write(head)
    const pump = () => {
      while (!answered && sent < total) {
        sent += chunk.length
        if (!req.write(chunk)) return void req.once('drain', pump)
      }
      if (!answered) req.end(tail)
    }
    pump()
  })
}

t.test('a 50 MB upload over the limit is refused before it is read in full', async (t) => {
  const { app, tempRoot } = await buildMediaApp({ MEDIA_MAX_FILE_BYTES: String(2 * 1024 * 1024), MEDIA_MAX_REQUEST_BYTES: String(4 * 1024 * 1024) })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const total = 50 * 1024 * 1024
  const chunked = await streamUpload(port, total, false)
  t.equal(chunked.status, 413, chunked.body)
  t.equal(JSON.parse(chunked.body).error.code, 'payload_too_large')
  t.ok(chunked.sent < total / 2, `streamed upload cut off after ${(chunked.sent / 1048576).toFixed(1)} MiB of 50`)
  const declared = await streamUpload(port, total, true)
  t.equal(declared.status, 413)
  t.ok(declared.sent < total / 2, `declared 50 MB refused after ${(declared.sent / 1048576).toFixed(1)} MiB were written`)
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [], 'partial upload removed')
})

t.test('a client that aborts mid-upload leaves no temp file and no crash', async (t) => {
  const { app, tempRoot } = await buildMediaApp()
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/score', headers })
    req.on('error', () => resolve())
    req.write(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="request"\r\n\r\n${scoreBody('img1')}\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="img1"; filename="a"\r\n\r\n`)
    req.write(Buffer.alloc(256 * 1024, 1), () => setTimeout(() => {
      req.destroy()
      resolve()
    }, 50))
  })
  // the server notices the abort asynchronously
  for (let i = 0; i < 100 && (liveTempDirs() > 0 || readdirSync(tempRoot).some((n) => n.startsWith(TEMP_PREFIX))); i++) await new Promise((r) => setTimeout(r, 20))
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [], 'upload directory removed')
  t.equal(liveTempDirs(), 0)
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
})

t.test('a server at capacity refuses an upload before reading it (503 + Retry-After)', async (t) => {
  const { app, engine, tempRoot } = await buildMediaApp({ MAX_PENDING_ITEMS: '1', MAX_CLIENT_BATCH_SIZE: '1', MEDIA_MAX_FILE_BYTES: String(40 * 1024 * 1024), MEDIA_MAX_REQUEST_BYTES: String(40 * 1024 * 1024) })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  engine.hold()
  const busy = app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] } })
  await engine.started(1)
  // a 30 MB upload, allowed by every size limit, streamed over real HTTP: the answer comes before the body
  // (refused after receiving and storing it, the whole 30 MB would have been sent)
  const total = 30 * 1024 * 1024
  for (const declare of [true, false]) {
    const res = await streamUpload(port, total, declare)
    t.equal(res.status, 503, res.body)
    t.equal(JSON.parse(res.body).error.code, 'overloaded')
    t.ok(res.sent < total / 2, `refused after ${(res.sent / 1048576).toFixed(1)} MiB of 30 (${declare ? 'declared length' : 'chunked'})`)
  }
  t.equal(liveTempDirs(), 0, 'nothing was stored')
  engine.release()
  t.equal((await busy).statusCode, 200)
  const after = await app.inject({ method: 'POST', url: '/v1/score', headers, payload: form([{ name: 'request', value: scoreBody('img1') }, { name: 'img1', value: webp, filename: 'a' }]) })
  t.equal(after.statusCode, 200, 'accepted again once there is room')
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [])
})

t.test('concurrent uploads are admitted before reading: count and bytes in flight (issue 12 #6)', async (t) => {
  // 40 concurrent 3 MB uploads; 4 may be in flight by count, 10 MB by bytes (so 3); the engine holds the
  // admitted ones, so every other upload arrives while they are in flight
  const { app, engine } = await buildMediaApp({ MAX_CONCURRENT_UPLOADS: '4', MAX_UPLOAD_BYTES_IN_FLIGHT: String(10 * 1024 * 1024) })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const png = await sharp(Buffer.from(Array.from({ length: 1000 * 1000 * 3 }, (_, i) => (i * 2654435761) >>> 24)), { raw: { width: 1000, height: 1000, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer()
  t.ok(png.length > 2.9e6, `a ${(png.length / 1e6).toFixed(1)} MB PNG`)
  const payload = form([{ name: 'request', value: scoreBody('img1') }, { name: 'img1', value: png, filename: 'a.png' }])
  engine.hold()
  let peak = 0
  const watch = setInterval(() => (peak = Math.max(peak, liveTempDirs())), 2)
  const send = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/score', headers: { ...headers, 'content-length': payload.length } }, (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      req.end(payload)
    })
  const all = Array.from({ length: 40 }, send)
  await engine.started(1)
  await new Promise((r) => setTimeout(r, 300))
  engine.release()
  const answers = await Promise.all(all)
  clearInterval(watch)
  const ok = answers.filter((a) => a.status === 200).length
  const refused = answers.filter((a) => a.status === 503 && JSON.parse(a.body).error.code === 'overloaded').length
  t.ok(ok >= 1 && ok <= 3, `${ok} uploads admitted (the byte budget holds 3)`)
  t.equal(ok + refused, 40, `the other ${refused} refused with 503`)
  t.ok(peak <= 3, `at most 3 uploads stored at once (peak ${peak})`)
  t.equal(liveTempDirs(), 0)
})
