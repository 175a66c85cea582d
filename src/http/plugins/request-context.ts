// What every request carries: the per-request abort signal and deadline, the in-flight count the shutdown drains,
// the shutdown refusal, and the request-id + timing headers of the answer.
import { performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
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
  }
}

async function requestContext(app: FastifyInstance): Promise<void> {
  const { config, metrics, lifecycle } = app

  app.decorateRequest('clientGone', null as unknown as AbortSignal)
  app.decorateRequest('deadline', 0)
  app.decorateRequest('timings', null)

  app.addHook('onRequest', async (request, reply) => {
    request.deadline = performance.now() + config.requestTimeoutMs
    // 'close' fires once whether the response finished or the client went away.
    lifecycle.inflight++
    reply.raw.once('close', () => lifecycle.inflight--)
    if (lifecycle.shuttingDown && request.url.split('?')[0] !== '/healthz') {
      reply.header('connection', 'close')
      metrics.rejected.inc({ reason: 'shutting_down' })
      throw new ServiceError('shutting_down', 'server is shutting down', { 'retry-after': String(config.retryAfterS) })
    }
    const ac = new AbortController()
    request.clientGone = ac.signal
    reply.raw.on('close', () => {
      if (!reply.raw.writableEnded) ac.abort()
    })
  })

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
