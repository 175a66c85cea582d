// Graceful shutdown of the HTTP side (server.ts calls it on SIGTERM/SIGINT, tests call it directly):
//  1. shutting down: readiness fails, new requests get 503 shutting_down, and every answer carries
//     Connection: close, so no keep-alive socket is left for a client to reuse when the listener goes;
//  2. slow senders are bounded: what is still receiving its request gets at most half the grace (then 408);
//  3. in-flight requests finish (counted exactly once per request by the request-context plugin);
//  4. the listener stops accepting once no new connection has come for a quiet moment (clients that got 503 +
//     Retry-After, or a load balancer that saw readiness fail, have stopped: closing a listener resets every
//     connection still in the kernel's accept queue), at the latest at half the grace, and WITHOUT dropping
//     open connections (http's close() also destroys idle keep-alive sockets, resetting a request a client is
//     writing at that moment); connections accepted before that still get their answer for a short linger;
//  5. the app closes (engine released) and whatever is still open — a connection with no complete request —
//     is destroyed: nothing the client sent completely is lost, and nothing incomplete holds the exit.
import net from 'node:net'
import type { FastifyInstance } from 'fastify'

export interface ShutdownOptions {
  /** SHUTDOWN_GRACE_MS: the process exits anyway after it (close-with-grace); slow senders get half. */
  graceMs: number
  /** How long connections accepted before the listener closed may still send their request. */
  lingerMs?: number
  /** No new connection for this long: the listener may close with an empty accept queue (default 250 ms: with
   *  less, the SIGTERM-under-new-connections test in test/server.test.ts saw resets). */
  quietMs?: number
  /** Runs once in-flight requests are done, before the listener closes (the ops server). */
  beforeClose?: () => Promise<void>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(ok: () => boolean): Promise<void> {
  while (!ok()) await sleep(10)
}

function openConnections(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((err, n) => resolve(err ? 0 : n)))
}

export async function drainAndClose(app: FastifyInstance, opts: ShutdownOptions): Promise<void> {
  const start = Date.now()
  app.lifecycle.shuttingDown = true
  const server = app.server
  let lastConnection = start
  const onConnection = () => (lastConnection = Date.now())
  server.on('connection', onConnection)
  const cap = Math.max(500, Math.floor(opts.graceMs / 2))
  if (!(server.requestTimeout > 0) || server.requestTimeout > cap) server.requestTimeout = cap
  if (server.headersTimeout > cap) server.headersTimeout = cap
  await until(() => app.lifecycle.inflight === 0)
  const quiet = opts.quietMs ?? 250
  while (Date.now() - lastConnection < quiet && Date.now() - start < cap) await sleep(10)
  await until(() => app.lifecycle.inflight === 0)
  await opts.beforeClose?.()
  if (server.listening) net.Server.prototype.close.call(server)
  server.off('connection', onConnection)
  const lingerUntil = Date.now() + (opts.lingerMs ?? 300)
  while (Date.now() < lingerUntil && (await openConnections(server)) > 0) await sleep(10)
  await until(() => app.lifecycle.inflight === 0)
  await app.close()
  server.closeAllConnections()
}
