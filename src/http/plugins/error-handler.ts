// Every error leaves as `{ error: { code, message, type, param } }` with the status from src/errors.ts — the
// service's own ServiceErrors, Fastify's errors (bad JSON, body too large, wrong content type) and unknown routes
// alike. 5xx bodies are generic; the details go to the log. A path that exists under other methods answers 405
// with `Allow` (RFC 9110 15.5.6), not 404, so a client that sent GET to a POST route learns what to fix.
import type { FastifyError, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ERROR_STATUS, errorType, isServiceError, type ErrorCode } from '../../errors.ts'

// Fastify's own errors carry only a status; pick the table code for it.
const CODE_FOR_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'invalid_request',
  429: 'rate_limited',
  503: 'overloaded',
  504: 'timeout',
}

export function toErrorBody(code: ErrorCode, message: string, param: string | null = null) {
  return { error: { code, message, type: errorType(code), param } }
}

/** The methods each route path answers, collected as routes are added; a path pattern with parameters or a
 *  wildcard matches by regular expression. Catch-all routes (`*`, CORS preflight) do not count. */
export class RouteMethods {
  readonly #exact = new Map<string, Set<string>>()
  readonly #patterns: Array<{ re: RegExp; methods: Set<string> }> = []

  add(url: string, methods: readonly string[]): void {
    if (url === '*' || url === '/*') return
    if (/[:*]/.test(url)) {
      const re = new RegExp(`^${url.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:\w+/g, '[^/]+').replace(/\*/g, '.*')}$`)
      this.#patterns.push({ re, methods: new Set(methods) })
      return
    }
    const set = this.#exact.get(url) ?? new Set<string>()
    for (const m of methods) set.add(m)
    this.#exact.set(url, set)
  }

  /** Sorted methods of `path`; empty when no route has this path. */
  allowed(path: string): string[] {
    const out = new Set(this.#exact.get(path) ?? [])
    for (const p of this.#patterns) if (p.re.test(path)) for (const m of p.methods) out.add(m)
    return [...out].sort()
  }
}

async function errorHandler(app: FastifyInstance): Promise<void> {
  const routes = new RouteMethods()
  app.addHook('onRoute', (r) => routes.add(r.url, [r.method].flat()))

  app.setErrorHandler((err: FastifyError, request, reply) => {
    let code: ErrorCode
    let message = err.message
    let param: string | null = null
    if (isServiceError(err)) {
      code = err.code
      param = err.param
      reply.headers(err.headers)
    } else {
      const status = typeof err.statusCode === 'number' ? err.statusCode : 500
      code = CODE_FOR_STATUS[status] ?? 'internal'
      if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        const given = String(request.headers['content-type'] ?? 'none').slice(0, 80)
        message = `content-type ${given} is not accepted; send application/json (or multipart/form-data where documented)`
      }
    }
    const status = ERROR_STATUS[code]
    if (status >= 500) {
      request.log.error({ err }, 'request failed')
      if (code === 'internal' || code === 'engine_error') message = 'internal error; see the server log'
    }
    void reply.code(status).send(toErrorBody(code, message, param))
  })
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!
    const allowed = routes.allowed(path)
    if (allowed.length > 0) {
      void reply
        .code(405)
        .header('allow', allowed.join(', '))
        .send(toErrorBody('method_not_allowed', `${request.method} is not allowed on ${path}; use ${allowed.join(' or ')}`))
      return
    }
    void reply.code(404).send(toErrorBody('not_found', `no route ${request.method} ${path}`))
  })
}

export default fp(errorHandler, { name: 'error-handler', dependencies: [] })
