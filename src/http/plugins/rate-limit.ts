// Per-key rate limiting (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS) of the scoring routes registered after it:
// 429 + Retry-After through the error table. Keyed by the API key when it is a valid one (hashed: raw keys never
// sit in the limiter's cache), else by client address: it runs before auth, so wrong keys share their address's
// budget instead of each getting a fresh one.
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError } from '../../errors.ts'
import { apiKeyOf, authScope, digest, pathOf, tokenMatches } from './auth.ts'

async function rateLimiting(app: FastifyInstance): Promise<void> {
  const { config, metrics } = app
  if (config.rateLimit.max <= 0) return
  await app.register(rateLimit, {
    // not per route (route-level hooks run after every app-level one, i.e. after auth): one app-level onRequest
    // hook below, registered before the auth plugin's
    global: false,
    max: config.rateLimit.max,
    timeWindow: config.rateLimit.windowMs,
    hook: 'onRequest', // before the body is read: a throttled client's upload is not parsed
    keyGenerator: (request) => {
      const token = apiKeyOf(request)
      return token !== null && config.apiKeys.length > 0 && tokenMatches(token, config.apiKeys) ? `key:${digest(token).toString('hex')}` : `ip:${request.ip}`
    },
    allowList: (request) => authScope(pathOf(request)) !== 'key',
    onExceeded: () => metrics.rejected.inc({ reason: 'rate_limited' }),
    // The plugin has already set retry-after and x-ratelimit-*; the error table renders the body.
    errorResponseBuilder: (_request, ctx) =>
      new ServiceError('rate_limited', `rate limit of ${ctx.max} requests per ${ctx.after} exceeded; retry later`),
  })
  app.addHook('onRequest', app.rateLimit())
}

export default fp(rateLimiting, { name: 'rate-limit', dependencies: ['services', 'request-context'] })
