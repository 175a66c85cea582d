// Issue 12 #3, #4: connections that misbehave at the socket level. A client that never finishes its body is
// dropped after BODY_TIMEOUT_MS (it held the in-flight count, and so the shutdown, forever); pipelined requests
// whose socket is destroyed while their answers wait in line still end exactly once (the in-flight and the
// hot-reload drain counters return to 0); the shutdown does not wait on connections with no complete request.
import net from 'node:net'
import t from 'tap'
import { drainAndClose } from '../../src/http/shutdown.ts'
import { buildTestApp } from '../helpers/build-app.ts'

const body = JSON.stringify({ items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] }] })
const post = (len = Buffer.byteLength(body)) => `POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n`

async function connect(port: number): Promise<{ sock: net.Socket; data: () => string; closed: Promise<void> }> {
  const sock = net.connect(port, '127.0.0.1')
  await new Promise((r) => sock.once('connect', r))
  let raw = ''
  sock.on('data', (c) => (raw += c))
  sock.on('error', () => {})
  const closed = new Promise<void>((r) => sock.once('close', () => r()))
  return { sock, data: () => raw, closed }
}

async function waitFor(ok: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (!ok() && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
  return ok()
}

t.test('a slow body is dropped after BODY_TIMEOUT_MS and stops counting as in flight', async (t) => {
  const { app } = await buildTestApp({ BODY_TIMEOUT_MS: '600', HEADERS_TIMEOUT_MS: '300' })
  t.teardown(() => app.close())
  const port = Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port)
  const c = await connect(port)
  c.sock.write(post() + body.slice(0, 10))
  t.ok(await waitFor(() => app.lifecycle.inflight === 1, 1000), 'the request is in flight')
  const t0 = Date.now()
  await Promise.race([c.closed, new Promise((r) => setTimeout(r, 5000))])
  t.ok(c.sock.destroyed || c.sock.readableEnded, `connection closed by the server after ${Date.now() - t0} ms`)
  t.match(c.data(), /^HTTP\/1\.1 408 /, 'answered 408 Request Timeout')
  t.ok(await waitFor(() => app.lifecycle.inflight === 0, 1000), `in-flight back to 0 (is ${app.lifecycle.inflight})`)
  t.equal(app.reloader.openRequests, 0, 'hot-reload drain count back to 0')
})

t.test('pipelined requests on a destroyed socket end exactly once', async (t) => {
  const { app, engine } = await buildTestApp()
  t.teardown(() => app.close())
  const port = Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port)
  engine.hold()
  const c = await connect(port)
  c.sock.write((post() + body).repeat(3))
  await engine.started(1)
  t.ok(await waitFor(() => app.lifecycle.inflight === 3, 1000), `three requests in flight (${app.lifecycle.inflight})`)
  await new Promise((r) => setTimeout(r, 50))
  c.sock.destroy()
  await new Promise((r) => setTimeout(r, 50))
  engine.release()
  t.ok(await waitFor(() => app.lifecycle.inflight === 0, 2000), `in-flight back to 0 (is ${app.lifecycle.inflight})`)
  t.equal(app.reloader.openRequests, 0, 'hot-reload drain count back to 0')
  // and the counters keep working on the next requests
  const ok = await app.inject({ method: 'POST', url: '/v1/score', payload: JSON.parse(body) })
  t.equal(ok.statusCode, 200)
  t.equal(app.lifecycle.inflight, 0)
})

t.test('shutdown does not wait on connections with no complete request', async (t) => {
  const { app } = await buildTestApp({ BODY_TIMEOUT_MS: '60000', HEADERS_TIMEOUT_MS: '60000' })
  const port = Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port)
  const idle = await connect(port) // connected, nothing sent
  const partialHeaders = await connect(port)
  partialHeaders.sock.write('POST /v1/score HTTP/1.1\r\nHost: x\r\n')
  const slowBody = await connect(port)
  slowBody.sock.write(post() + body.slice(0, 10))
  t.ok(await waitFor(() => app.lifecycle.inflight === 1, 1000))
  const t0 = Date.now()
  await drainAndClose(app, { graceMs: 2000 })
  const took = Date.now() - t0
  t.ok(took < 1900, `closed in ${took} ms, within the grace (slow senders get half of it)`)
  await Promise.all([idle.closed, partialHeaders.closed, slowBody.closed])
  t.equal(app.lifecycle.inflight, 0)
})
