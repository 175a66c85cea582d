// Cross-cutting request handling in one place: shutdown refusal, bearer auth, the per-request abort signal and
// deadline, timing + request-id headers, and the request metrics (recorded once here, not per handler).
import { performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import { ServiceError } from '../../errors.ts'
import { authScope, bearerToken, tokenMatches } from './auth.ts'

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


export function registerRequestHooks(app: FastifyInstance): void {
  const { config, metrics, lifecycle } = app

  app.decorateRequest('clientGone', null as unknown as AbortSignal)
  app.decorateRequest('deadline', 0)
  app.decorateRequest('timings', null)

  app.addHook('onRequest', async (request, reply) => {
    request.deadline = performance.now() + config.requestTimeoutMs
    // 'close' fires once whether the response finished or the client went away.
    lifecycle.inflight++
    reply.raw.once('close', () => lifecycle.inflight--)
    const path = request.url.split('?')[0]!
    if (lifecycle.shuttingDown && path !== '/healthz') {
      reply.header('connection', 'close')
      metrics.rejected.inc({ reason: 'shutting_down' })
      throw new ServiceError('shutting_down', 'server is shutting down', { 'retry-after': String(config.retryAfterS) })
    }
    if (config.apiKeys.length > 0 && authScope(path) === 'key') {
      const token = bearerToken(request.headers.authorization)
      if (token === null || !tokenMatches(token, config.apiKeys)) {
        metrics.rejected.inc({ reason: 'unauthorized' })
        reply.header('www-authenticate', 'Bearer')
        throw new ServiceError('unauthorized', 'missing or invalid bearer token')
      }
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

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the raw URL, keeps label cardinality bounded (unknown paths share one label).
    const route = request.routeOptions.url ?? 'unmatched'
    const labels = { route, status: String(reply.statusCode) }
    metrics.requests.inc(labels)
    metrics.requestSeconds.observe(labels, reply.elapsedTime / 1000)
  })
}
