// Issue 12 #2: memory amplification by images. A 36 Mpx 16-bit RGBA PNG is ~0.4 MB on the wire and ~290 MB
// once decoded at 16 bits; 16 concurrent distinct ones once peaked at 5.5 GB (the pod limit is 4 GiB). With the
// decoded-pixel budget (MEDIA_DECODE_PIXEL_BUDGET, default 72 Mpx: two such images at a time) and the straight
// 8-bit decode, the server's peak RSS stays under 1.5 GiB while all 16 are scored. Measured in a child process
// (the server alone), RSS sampled every 5 ms.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import sharp from 'sharp'
import t from 'tap'

const BOUND = 1.5 * 1024 ** 3
const here = path.dirname(fileURLToPath(import.meta.url))

// CRC-32 of PNG chunks (zlib's crc32 is Node 22+)
const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
function crc32(buf: Buffer): number {
  let c = 0xffffffff
  for (const b of buf) c = CRC[(c ^ b) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}
/** The same image with a tEXt chunk after IHDR: distinct bytes (no embedding-cache sharing), same pixels. */
function withText(png: Buffer, text: string): Buffer {
  const data = Buffer.from(`Comment\0${text}`, 'latin1')
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write('tEXt', 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0)
  const ihdrEnd = 8 + 8 + 13 + 4
  return Buffer.concat([png.subarray(0, ihdrEnd), head, data, crc, png.subarray(ihdrEnd)])
}

function post(port: number, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' } }, (res) => {
      let data = ''
      res.on('data', (c) => (data += c))
      res.on('end', () => resolve({ status: res.statusCode!, body: data }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('peak RSS under 16 concurrent 36 Mpx 16-bit RGBA images stays under 1.5 GiB', async (t) => {
  const base = await sharp({ create: { width: 6000, height: 6000, channels: 4, background: { r: 10, g: 200, b: 30, alpha: 0.5 } } })
    .toColourspace('rgb16')
    .png({ compressionLevel: 9 })
    .toBuffer()
  t.equal((await sharp(base).metadata()).depth, 'ushort')
  const child = fork(path.join(here, 'helpers/media-server.ts'), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, REQUEST_TIMEOUT_MS: '300000', MEDIA_WORKERS: '1', EMBEDDING_CACHE_BYTES: '0' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const ask = <T>(msg?: string) => new Promise<T>((r) => {
    child.once('message', (m) => r(m as T))
    if (msg) child.send(msg)
  })
  const { port, baseRss, tempRoot } = await ask<{ port: number; baseRss: number; tempRoot: string }>()
  const bodies = Array.from({ length: 16 }, (_, i) =>
    JSON.stringify({ items: [{ messages: [{ role: 'user', content: [{ type: 'image', data: withText(base, `copy ${i}`).toString('base64') }, { type: 'text', text: 'what?' }] }, { role: 'assistant', content: 'green' }] }] }),
  )
  const answers = await Promise.all(bodies.map((b) => post(port, b)))
  t.same(answers.map((a) => a.status), Array(16).fill(200), answers.find((a) => a.status !== 200)?.body.slice(0, 200) ?? 'all scored')
  const { peakRss } = await ask<{ peakRss: number }>('peak')
  // the child removes its media temp folder as it closes: killed by the teardown first, it left one behind per run
  const exited = once(child, 'exit')
  child.send('stop')
  t.same(await exited, [0, null], 'the server closed and exited on its own')
  t.notOk(existsSync(tempRoot), 'and took its media temp folder with it')
  const mb = (n: number) => `${(n / 1024 ** 2).toFixed(0)} MiB`
  t.ok(peakRss < BOUND, `peak RSS ${mb(peakRss)} (idle ${mb(baseRss)}), bound ${mb(BOUND)}`)
})
