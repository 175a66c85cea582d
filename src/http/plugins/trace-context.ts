// W3C Trace Context (https://www.w3.org/TR/trace-context/): a valid incoming `traceparent` puts this request in
// the caller's trace. Every log line of the request carries trace_id, span_id (this request's own span) and
// parent_id (the caller's span), so a trainer's trace finds our logs; without a valid header we start a trace.
// The answer carries `traceresponse` (Trace Context Level 2) with our span, so a caller without tracing can
// still quote the ids. Invalid headers are ignored, as the spec requires (never an error).
import { randomFillSync } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface TraceContext {
  traceId: string
  /** This request's span id (the parent of anything we would call). */
  spanId: string
  /** The caller's span id, null when we started the trace. */
  parentId: string | null
  flags: string
}

declare module 'fastify' {
  interface FastifyRequest {
    trace: TraceContext
  }
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZEROS = /^0+$/

/** The caller's context from a traceparent header, or null when absent or invalid. */
export function parseTraceparent(header: unknown): Pick<TraceContext, 'traceId' | 'parentId' | 'flags'> | null {
  if (typeof header !== 'string') return null
  const m = TRACEPARENT.exec(header.trim())
  if (!m) return null
  const [, version, traceId, parentId, flags, rest] = m
  // ff is forbidden; version 00 has exactly four fields (later versions may append more).
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null
  if (ZEROS.test(traceId!) || ZEROS.test(parentId!)) return null
  return { traceId: traceId!, parentId: parentId!, flags: flags! }
}

// Ids are cut from a pool filled 4 KiB at a time: two randomBytes calls per request (each a trip into OpenSSL)
// were ~0.05 ms of the main thread's ~2 ms per request in a profile at concurrency 1 (bench/README.md).
const pool = Buffer.alloc(4096)
let poolAt = pool.length

/** `n` random bytes as lowercase hex, never all zeros (an all-zero id is invalid in Trace Context). */
export function randomHex(n: number): string {
  for (;;) {
    if (poolAt + n > pool.length) {
      randomFillSync(pool)
      poolAt = 0
    }
    const hex = pool.toString('hex', poolAt, (poolAt += n))
    if (!ZEROS.test(hex)) return hex
  }
}

/** This request's context: the caller's trace with a new span of ours, or a new trace (sampled flag off). */
export function traceContextOf(header: unknown): TraceContext {
  const parent = parseTraceparent(header)
  const spanId = randomHex(8)
  if (parent) return { ...parent, spanId, flags: parent.flags }
  return { traceId: randomHex(16), spanId, parentId: null, flags: '00' }
}

export const formatTraceparent = (t: TraceContext) => `00-${t.traceId}-${t.spanId}-${t.flags}`

const TRACE = Symbol('trace-context')
type TracedRaw = IncomingMessage & { [TRACE]?: TraceContext }

async function traceContext(app: FastifyInstance): Promise<void> {
  app.decorateRequest('trace', null as unknown as TraceContext)
  // The request's child logger is made before any hook runs; the factory puts the ids into its bindings, so
  // Fastify's own "incoming request" / "request completed" lines carry them too.
  app.setChildLoggerFactory(function (logger, bindings, opts, rawReq) {
    const raw = rawReq as TracedRaw
    const t = (raw[TRACE] ??= traceContextOf(raw.headers.traceparent))
    return logger.child({ ...bindings, trace_id: t.traceId, span_id: t.spanId, ...(t.parentId ? { parent_id: t.parentId } : {}) }, opts)
  })
  app.addHook('onRequest', async (request) => {
    const raw = request.raw as TracedRaw
    request.trace = raw[TRACE] ??= traceContextOf(raw.headers.traceparent)
  })
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.trace) reply.header('traceresponse', formatTraceparent(request.trace))
    return payload
  })
}

export default fp(traceContext, { name: 'trace-context', dependencies: [] })
