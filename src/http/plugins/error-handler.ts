// Every error leaves as `{ error: { code, message } }` with the status from src/errors.ts — the service's own
// ServiceErrors, Fastify's errors (bad JSON, body too large, wrong content type) and unknown routes alike.
// 5xx bodies are generic; the details go to the log.
import type { FastifyError, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ERROR_STATUS, isServiceError, type ErrorCode } from '../../errors.ts'

// Fastify's own errors carry only a status; pick the table code for it.
const CODE_FOR_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'invalid_request',
  429: 'rate_limited',
  503: 'overloaded',
  504: 'timeout',
}

export function toErrorBody(code: ErrorCode, message: string) {
  return { error: { code, message } }
}

async function errorHandler(app: FastifyInstance): Promise<void> {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    let code: ErrorCode
    let message = err.message
    if (isServiceError(err)) {
      code = err.code
      reply.headers(err.headers)
    } else {
      const status = typeof err.statusCode === 'number' ? err.statusCode : 500
      code = CODE_FOR_STATUS[status] ?? 'internal'
    }
    const status = ERROR_STATUS[code]
    if (status >= 500) {
      request.log.error({ err }, 'request failed')
      if (code === 'internal' || code === 'engine_error') message = 'internal error; see the server log'
    }
    void reply.code(status).send(toErrorBody(code, message))
  })
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(toErrorBody('not_found', `no route ${request.method} ${request.url.split('?')[0]}`))
  })
}

export default fp(errorHandler, { name: 'error-handler', dependencies: [] })
