// Opt-in CORS (@fastify/cors) for browser clients (an annotation UI, a notebook front end): CORS_ORIGINS lists
// the origins allowed to read answers (or * for any). Off by default: without the header a browser page on
// another origin can send nothing but simple requests, which the API refuses (text/plain -> 415). Preflights
// are answered before authentication (browsers send them without credentials); the real request still needs
// its key. The timing, request-id, trace and retry headers are exposed to scripts.
import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export const CORS_ALLOWED_HEADERS = ['content-type', 'content-encoding', 'authorization', 'x-api-key', 'x-request-id', 'traceparent', 'tracestate']
export const CORS_EXPOSED_HEADERS = [
  'x-request-id',
  'x-preprocess-time',
  'x-queue-time',
  'x-inference-time',
  'retry-after',
  'traceresponse',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
]

async function corsPlugin(app: FastifyInstance): Promise<void> {
  const origins = app.config.corsOrigins
  if (origins.length === 0) return
  await app.register(cors, {
    origin: origins.includes('*') ? '*' : [...origins],
    methods: ['GET', 'POST'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    credentials: false, // API keys travel in headers, never cookies
    maxAge: 600,
    hook: 'onRequest',
  })
}

export default fp(corsPlugin, { name: 'cors', dependencies: ['services', 'request-context'] })
