// Who may call what, and how much. Scoring routes: optional bearer API keys (API_KEYS / API_KEYS_FILE),
// per-key rate limiting, and process-pressure shedding. Admin routes: their own token (ADMIN_TOKEN). Probes,
// the scraper and the API docs stay open, as TEI and Triton keep health and metrics open.
import { createHash, timingSafeEqual } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ServiceError } from '../../errors.ts'

export type AuthScope = 'public' | 'admin' | 'key'

const PUBLIC = new Set(['/healthz', '/readyz', '/metrics'])

export function authScope(path: string): AuthScope {
  if (PUBLIC.has(path) || path === '/docs' || path.startsWith('/docs/')) return 'public'
  if (path.startsWith('/admin/')) return 'admin'
  return 'key'
}

const pathOf = (request: FastifyRequest) => request.url.split('?')[0]!
const digest = (s: string) => createHash('sha256').update(s).digest()

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return m ? m[1]! : null
}

/** Constant time in the token: SHA-256 digests have one length whatever was sent, and every key is compared
 *  (no early exit that would tell which key, or how much of it, matched). */
export function tokenMatches(given: string, keys: readonly string[]): boolean {
  const g = digest(given)
  let ok = false
  for (const k of keys) ok = timingSafeEqual(g, digest(k)) || ok
  return ok
}

/** onRequest guard of the admin routes (registered inside their plugin). */
export function requireAdmin(app: FastifyInstance) {
  return async (request: FastifyRequest, reply: { header(k: string, v: string): unknown }) => {
    const token = app.config.adminToken
    if (!token) throw new ServiceError('forbidden', 'the admin API is disabled; set ADMIN_TOKEN to enable it')
    const given = bearerToken(request.headers.authorization)
    if (given === null || !tokenMatches(given, [token])) {
      app.metrics.rejected.inc({ reason: 'unauthorized' })
      reply.header('www-authenticate', 'Bearer')
      throw new ServiceError('unauthorized', 'missing or invalid admin token')
    }
  }
}

/** Rate limiting and pressure shedding for every route registered after it (register it before the routes). */
async function protection(app: FastifyInstance): Promise<void> {
  const { config, metrics } = app
  const p = config.pressure
  if (p.maxEventLoopDelayMs > 0 || p.maxHeapUsedBytes > 0 || p.maxRssBytes > 0) {
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
  if (config.rateLimit.max > 0) {
    await app.register(rateLimit, {
      global: true,
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowMs,
      hook: 'onRequest', // before the body is read: a throttled client's upload is not parsed
      // Per API key (hashed: raw keys never sit in the limiter's cache); per client IP without auth.
      keyGenerator: (request) => {
        const token = bearerToken(request.headers.authorization)
        return token !== null && config.apiKeys.length > 0 ? `key:${digest(token).toString('hex')}` : `ip:${request.ip}`
      },
      allowList: (request) => authScope(pathOf(request)) !== 'key',
      onExceeded: () => metrics.rejected.inc({ reason: 'rate_limited' }),
      // The plugin has already set retry-after and x-ratelimit-*; the error table renders the body.
      errorResponseBuilder: (_request, ctx) =>
        new ServiceError('rate_limited', `rate limit of ${ctx.max} requests per ${ctx.after} exceeded; retry later`),
    })
  }
}
// Not encapsulated (what fastify-plugin does): the hooks must reach the routes registered beside it.
;(protection as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true
export { protection }
