// Who may call what. Scoring routes: optional API keys (API_KEYS / API_KEYS_FILE), sent as `Authorization: Bearer
// <key>` (OpenAI, vLLM, TEI clients) or `x-api-key: <key>` (Anthropic-style clients, gateways). Admin routes: their
// own token (ADMIN_TOKEN), checked by requireAdmin inside their plugin. Probes, the scraper and the API docs stay
// open, as TEI and Triton keep health and metrics open. Rate limiting and pressure shedding are rate-limit.ts and
// pressure.ts; they use authScope to leave the same routes open.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError } from '../../errors.ts'

export type AuthScope = 'public' | 'admin' | 'key'

const PUBLIC = new Set(['/healthz', '/readyz', '/metrics', '/openapi.json'])

export function authScope(path: string): AuthScope {
  if (PUBLIC.has(path) || path === '/docs' || path.startsWith('/docs/')) return 'public'
  if (path.startsWith('/admin/')) return 'admin'
  return 'key'
}

export const pathOf = (request: FastifyRequest) => request.url.split('?')[0]!
export const digest = (s: string) => createHash('sha256').update(s).digest()

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return m ? m[1]! : null
}

/** The API key a request carries: the bearer token, else the `x-api-key` header; null when neither is sane. */
export function apiKeyOf(request: FastifyRequest): string | null {
  const bearer = bearerToken(request.headers.authorization)
  if (bearer !== null) return bearer
  const header = request.headers['x-api-key']
  return typeof header === 'string' && /^\S+$/.test(header.trim()) ? header.trim() : null
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

/** Failed authentications per client address in fixed windows: past the limit, every request from that address
 *  gets 429 until the window ends (a valid key included: otherwise a correct guess would still show as 200).
 *  Bounded memory: expired windows are dropped, and at most `maxAddresses` are tracked (oldest dropped first). */
export class AuthFailureLimiter {
  readonly #windows = new Map<string, { failures: number; resetAt: number }>()
  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly maxAddresses = 10_000,
  ) {}

  /** Seconds until `address` may try again, or 0. */
  retryAfterS(address: string, now = Date.now()): number {
    const w = this.#windows.get(address)
    if (!w) return 0
    if (now >= w.resetAt) {
      this.#windows.delete(address)
      return 0
    }
    return w.failures >= this.limit ? Math.max(1, Math.ceil((w.resetAt - now) / 1000)) : 0
  }

  fail(address: string, now = Date.now()): void {
    let w = this.#windows.get(address)
    if (!w || now >= w.resetAt) {
      this.#windows.delete(address)
      if (this.#windows.size >= this.maxAddresses) this.#windows.delete(this.#windows.keys().next().value!)
      w = { failures: 0, resetAt: now + this.windowMs }
      this.#windows.set(address, w)
    }
    w.failures++
  }
}

/** API keys (Bearer or x-api-key) on every 'key' route, when keys are configured. Failed attempts are limited per client
 *  address before the key is even looked at (AUTH_FAILURE_LIMIT per AUTH_FAILURE_WINDOW_MS). */
async function auth(app: FastifyInstance): Promise<void> {
  const { config, metrics } = app
  if (config.apiKeys.length === 0) return
  const limiter = config.authFailures.limit > 0 ? new AuthFailureLimiter(config.authFailures.limit, config.authFailures.windowMs) : null
  app.addHook('onRequest', async (request, reply) => {
    if (authScope(pathOf(request)) !== 'key') return
    const wait = limiter?.retryAfterS(request.ip) ?? 0
    if (wait > 0) {
      metrics.rejected.inc({ reason: 'rate_limited' })
      throw new ServiceError('rate_limited', 'too many failed authentications from this address; retry later', { 'retry-after': String(wait) })
    }
    const token = apiKeyOf(request)
    if (token === null || !tokenMatches(token, config.apiKeys)) {
      limiter?.fail(request.ip)
      metrics.rejected.inc({ reason: 'unauthorized' })
      reply.header('www-authenticate', 'Bearer')
      throw new ServiceError('unauthorized', 'missing or invalid API key (send Authorization: Bearer <key> or x-api-key: <key>)')
    }
  })
}

export default fp(auth, { name: 'auth', dependencies: ['services', 'request-context'] })
