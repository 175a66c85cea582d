// What every request carries: the per-request abort signal and deadline, the in-flight count the shutdown drains,
// the shutdown refusal, and the request-id + timing headers of the answer.
//
// "The request has ended" is counted exactly once, whichever way it ends: answered (onResponse), aborted by the
// client (onRequestAbort, or the response's 'close'), or its socket destroyed while the response still waited
// its turn behind a pipelined one (only the socket's 'close' fires then; counting on the response's 'close'
// alone leaked the in-flight and hot-reload counters forever).
import { setMaxListeners } from 'node:events'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError } from '../../errors.ts'

export interface RequestTimings {
  preprocessMs: number
  queueMs: number
  inferenceMs: number
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Aborts when the client goes away before the answer is written. */
    clientGone: AbortSignal
    /** performance.now() time after which the request answers 504. */
    deadline: number
    timings: RequestTimings | null
    /** Runs `fn` once when the request has ended, however it ended (at once if it already has). */
    onEnd(fn: () => void): void
  }
}

const ENDS = Symbol('request ends')
// One 'close' listener per socket, however many pipelined requests wait on it.
const socketWaiters = new WeakMap<Socket, Set<() => void>>()

function onSocketClose(socket: Socket, fn: () => void): () => void {
  let set = socketWaiters.get(socket)
  if (!set) {
    const waiters = new Set<() => void>()
    socketWaiters.set(socket, waiters)
    socket.once('close', () => {
      for (const w of [...waiters]) w()
      waiters.clear()
    })
    set = waiters
  }
  set.add(fn)
  return () => set.delete(fn)
}

interface EndState {
  ended: boolean
  fns: Array<() => void>
}

function endRequest(request: FastifyRequest): void {
  const st = (request as unknown as { [ENDS]?: EndState })[ENDS]
  if (!st || st.ended) return
  st.ended = true
  for (const fn of st.fns.splice(0)) fn()
}

async function requestContext(app: FastifyInstance): Promise<void> {
  const { config, metrics, lifecycle } = app

  app.decorateRequest('clientGone', null as unknown as AbortSignal)
  app.decorateRequest('deadline', 0)
  app.decorateRequest('timings', null)
  app.decorateRequest('onEnd', function (this: FastifyRequest, fn: () => void) {
    const st = (this as unknown as { [ENDS]?: EndState })[ENDS]
    if (!st || st.ended) fn()
    else st.fns.push(fn)
  })

  app.addHook('onRequest', async (request, reply) => {
    request.deadline = performance.now() + config.requestTimeoutMs
    const st: EndState = { ended: false, fns: [] }
    ;(request as unknown as { [ENDS]: EndState })[ENDS] = st
    lifecycle.inflight++
    const end = () => endRequest(request)
    const stopWaiting = onSocketClose(request.raw.socket, end)
    reply.raw.once('close', end)
    st.fns.push(() => {
      lifecycle.inflight--
      stopWaiting()
      reply.raw.off('close', end)
    })
    // Connection: close on every answer while shutting down, so no keep-alive socket is left for the client to
    // reuse when the listener closes
    if (lifecycle.shuttingDown) reply.header('connection', 'close')
    if (lifecycle.shuttingDown && request.url.split('?')[0] !== '/healthz') {
      metrics.rejected.inc({ reason: 'shutting_down' })
      throw new ServiceError('shutting_down', 'server is shutting down', { 'retry-after': String(config.retryAfterS) })
    }
    const ac = new AbortController()
    // one abort listener per queued row of this request (128 items): not a leak
    setMaxListeners(0, ac.signal)
    request.clientGone = ac.signal
    reply.raw.on('close', () => {
      if (!reply.raw.writableEnded) ac.abort()
    })
  })
  app.addHook('onResponse', async (request) => endRequest(request))
  app.addHook('onRequestAbort', async (request) => endRequest(request))

  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-request-id', request.id)
    const t = request.timings
    if (t) {
      reply.header('x-preprocess-time', t.preprocessMs.toFixed(2))
      reply.header('x-queue-time', t.queueMs.toFixed(2))
      reply.header('x-inference-time', t.inferenceMs.toFixed(2))
    }
    return payload
  })
}

export default fp(requestContext, { name: 'request-context', dependencies: ['services'] })
