// Process-pressure shedding (@fastify/under-pressure): past MAX_EVENT_LOOP_DELAY_MS / MAX_HEAP_USED_BYTES /
// MAX_RSS_BYTES, requests to the routes registered after it get the service's own 503 + Retry-After.
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError } from '../../errors.ts'
import { authScope, pathOf } from './auth.ts'

async function pressure(app: FastifyInstance): Promise<void> {
  const { config, metrics } = app
  const p = config.pressure
  if (!(p.maxEventLoopDelayMs > 0 || p.maxHeapUsedBytes > 0 || p.maxRssBytes > 0)) return
  await app.register(underPressure, {
    maxEventLoopDelay: p.maxEventLoopDelayMs,
    maxHeapUsedBytes: p.maxHeapUsedBytes,
    maxRssBytes: p.maxRssBytes,
    retryAfter: config.retryAfterS,
    // Health, readiness and metrics keep answering: a liveness 503 would make the orchestrator restart a
    // process that is only busy. Everything else gets the service's own 503 body.
    pressureHandler: async (request, _reply, type, value) => {
      if (authScope(pathOf(request)) === 'public') return
      metrics.rejected.inc({ reason: 'under_pressure' })
      throw new ServiceError('overloaded', `server is under pressure (${type}: ${Math.round(Number(value ?? 0))}); retry later`, {
        'retry-after': String(config.retryAfterS),
      })
    },
  })
}

export default fp(pressure, { name: 'pressure', dependencies: ['services', 'auth'] })
