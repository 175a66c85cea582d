// multipart/form-data for the scoring routes: one JSON field `request` carrying the usual body, plus files that
// media parts reference by field name. The files themselves are handled by src/preprocess/media/uploads.ts;
// this plugin parses the body, refuses early (boundary, declared length, a full server, too many uploads or
// upload bytes in flight: all in onRequest, before a byte of the body is read) and removes the request's
// directory when the request ends, however it ends.
import multipart from '@fastify/multipart'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError, storageError } from '../../errors.ts'
import { mediaScopeOf } from '../../preprocess/media/request-scope.ts'
import { RequestUploads } from '../../preprocess/media/uploads.ts'

export const REQUEST_FIELD = 'request'
// RFC 2046: boundaries are at most 70 characters; longer ones stalled busboy's search (GHSA-xjh9-v7x6-24jw)
const BOUNDARY = /;\s*boundary=(?:"([^"]*)"|([^;\s]*))/i

function toServiceError(err: unknown, retryAfterS: number): unknown {
  if (err instanceof ServiceError) return err
  const storage = storageError(err, retryAfterS)
  if (storage) return storage
  const e = err as { code?: string; statusCode?: number; message?: string }
  if (e?.code === 'FST_REQ_FILE_TOO_LARGE' || e?.statusCode === 413) {
    return new ServiceError('payload_too_large', `upload over a limit (${e.code ?? 'too large'})`)
  }
  if (typeof e?.code === 'string' && e.code.startsWith('FST_')) return new ServiceError('bad_request', `malformed multipart body: ${e.message ?? e.code}`)
  if (e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') return new ServiceError('bad_request', 'upload ended early')
  // busboy's own parse errors carry no code ("Unexpected end of multipart data", "Malformed part header", ...):
  // a truncated or garbage body is the client's
  if (err instanceof Error && e.code === undefined && /multipart|part|boundary|form|header/i.test(err.message)) {
    return new ServiceError('bad_request', `malformed multipart body: ${e.message}`)
  }
  return err
}

async function mediaUploads(app: FastifyInstance): Promise<void> {
  const { config, metrics, batcher } = app
  const cfg = config.media
  const bodyLimit = config.bodyLimitBytes
  const uploads = new WeakMap<FastifyRequest, RequestUploads>()
  // uploads admitted and not yet ended, and the bytes they may store (admission before reading)
  const inFlight = { count: 0, bytes: 0 }
  const refuse = (reply: { header(k: string, v: string): unknown }, message: string) => {
    reply.header('connection', 'close')
    metrics.rejected.inc({ reason: 'overloaded' })
    return new ServiceError('overloaded', message, { 'retry-after': String(config.retryAfterS) })
  }

  const readBody = async (request: FastifyRequest): Promise<unknown> => {
    const files = await RequestUploads.open(cfg, mediaScopeOf(request))
    uploads.set(request, files)
    let body: unknown
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (part.fieldname !== REQUEST_FIELD) throw new ServiceError('bad_request', `unexpected multipart field ${JSON.stringify(part.fieldname.slice(0, 64))}; send the request JSON as "${REQUEST_FIELD}"`)
        if (body !== undefined) throw new ServiceError('bad_request', `multipart field "${REQUEST_FIELD}" given twice`)
        try {
          body = JSON.parse(String(part.value))
        } catch {
          throw new ServiceError('bad_request', `multipart field "${REQUEST_FIELD}" is not valid JSON`)
        }
        continue
      }
      await files.save(part.fieldname, part.file)
    }
    if (body === undefined) throw new ServiceError('bad_request', `multipart body has no "${REQUEST_FIELD}" field with the request JSON`)
    return body
  }

  app.addHook('onRequest', async (request, reply) => {
    const type = request.headers['content-type'] ?? ''
    if (!/^multipart\/form-data/i.test(type)) return
    const m = BOUNDARY.exec(type)
    const boundary = m ? (m[1] ?? m[2] ?? '') : ''
    if (boundary.length < 1 || boundary.length > 70) throw new ServiceError('bad_request', 'multipart boundary missing or longer than 70 characters')
    // a declared length over the limit is refused before a single body byte is read
    const declared = Number(request.headers['content-length'] ?? NaN)
    if (declared > cfg.maxRequestBytes + bodyLimit) {
      reply.header('connection', 'close')
      throw new ServiceError('payload_too_large', `request body of ${declared} bytes is over the limit`)
    }
    // a full server refuses now, not after receiving and storing the upload (admission proper happens in the
    // scoring service, once the item count is known)
    if (batcher.pendingItems >= config.maxPendingItems) throw refuse(reply, 'server is at capacity; retry the upload later')
    // what the upload may store: its declared length, or the per-request media limit when it declares none
    const reserve = Number.isFinite(declared) && declared >= 0 ? declared : cfg.maxRequestBytes
    if (inFlight.count >= config.uploads.maxConcurrent) throw refuse(reply, `${inFlight.count} uploads in flight; retry the upload later`)
    if (inFlight.bytes + reserve > config.uploads.maxBytesInFlight) throw refuse(reply, 'too many upload bytes in flight; retry the upload later')
    inFlight.count++
    inFlight.bytes += reserve
    request.onEnd(() => {
      inFlight.count--
      inFlight.bytes -= reserve
    })
  })
  app.addHook('preValidation', async (request, reply) => {
    if (!request.isMultipart()) return
    try {
      request.body = await readBody(request)
    } catch (err) {
      // stop reading the rest of an upload we have refused
      reply.header('connection', 'close')
      throw toServiceError(err, config.retryAfterS)
    }
  })
  const cleanup = async (request: FastifyRequest) => {
    await uploads.get(request)?.remove()
  }
  // onSend: the handler is done with the files, remove them before the answer leaves (so a client that got its
  // answer never sees them); onResponse / onRequestAbort cover the paths that skip onSend
  app.addHook('onSend', async (request, _reply, payload) => {
    await cleanup(request)
    return payload
  })
  app.addHook('onResponse', cleanup)
  app.addHook('onRequestAbort', cleanup)
  // After our hooks, as when they were added at the root: our checks run before the parser's own.
  void app.register(multipart, {
    throwFileSizeLimit: true,
    limits: {
      fileSize: cfg.maxFileBytes + 1, // one byte over reaches our counter, which refuses at once
      files: cfg.maxFilesPerRequest,
      fields: 1,
      fieldSize: bodyLimit,
      parts: cfg.maxFilesPerRequest + 1,
      headerPairs: 100,
      fieldNameSize: 64,
    },
  })
}

export default fp(mediaUploads, { name: 'multipart', dependencies: ['services', 'request-context'] })
