// multipart/form-data for the scoring routes: one JSON field `request` carrying the usual body, plus files that
// media parts reference by field name (`{ "type": "image", "file": "img1" }`). Files are streamed to a
// per-request temp directory under server-generated names (client file names and MIME types are ignored), the
// byte limits are enforced while streaming (an oversized upload is cut off, not read to the end), and the
// directory is removed when the request ends, however it ends.
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import multipart from '@fastify/multipart'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ServiceError } from '../../errors.ts'
import type { MediaConfig } from '../../preprocess/media/media-config.ts'
import { mediaScopeOf } from '../../preprocess/media/request-scope.ts'
import { createRequestTempDir, type RequestTempDir } from '../../preprocess/media/temp-dir.ts'

export const REQUEST_FIELD = 'request'
const FILE_FIELD = /^[A-Za-z0-9_.-]{1,64}$/
// RFC 2046: boundaries are at most 70 characters; longer ones stalled busboy's search (GHSA-xjh9-v7x6-24jw)
const BOUNDARY = /;\s*boundary=(?:"([^"]*)"|([^;\s]*))/i

const dirs = new WeakMap<FastifyRequest, RequestTempDir>()

function toServiceError(err: unknown): unknown {
  if (err instanceof ServiceError) return err
  const e = err as { code?: string; statusCode?: number; message?: string }
  if (e?.code === 'FST_REQ_FILE_TOO_LARGE' || e?.statusCode === 413) {
    return new ServiceError('payload_too_large', `upload over a limit (${e.code ?? 'too large'})`)
  }
  if (typeof e?.code === 'string' && e.code.startsWith('FST_')) return new ServiceError('bad_request', `malformed multipart body: ${e.message ?? e.code}`)
  if (e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') return new ServiceError('bad_request', 'upload ended early')
  return err
}

async function readUploads(request: FastifyRequest, cfg: MediaConfig): Promise<unknown> {
  const dir = await createRequestTempDir(cfg.tempDir)
  dirs.set(request, dir)
  const scope = mediaScopeOf(request)
  let body: unknown
  let total = 0
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
    const name = part.fieldname
    if (!FILE_FIELD.test(name) || scope.files.has(name)) {
      part.file.resume()
      throw new ServiceError('bad_request', `file field names must be unique and match ${FILE_FIELD.source}`)
    }
    const path = join(dir.path, randomUUID())
    let bytes = 0
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length
        total += chunk.length
        // checked here, per chunk: busboy's own fileSize limit only reports at the end of the part, after it has
        // read (and discarded) the whole rest of the upload
        if (bytes > cfg.maxFileBytes) cb(new ServiceError('payload_too_large', `file "${name}" is over the limit of ${cfg.maxFileBytes} bytes`))
        else if (total > cfg.maxRequestBytes) cb(new ServiceError('payload_too_large', `uploads are over the limit of ${cfg.maxRequestBytes} bytes per request`))
        else cb(null, chunk)
      },
    })
    await pipeline(part.file, counter, createWriteStream(path, { flags: 'wx' }))
    if (part.file.truncated) throw new ServiceError('payload_too_large', `file "${name}" is over the limit of ${cfg.maxFileBytes} bytes`)
    scope.files.set(name, { path, bytes })
  }
  if (body === undefined) throw new ServiceError('bad_request', `multipart body has no "${REQUEST_FIELD}" field with the request JSON`)
  return body
}

// Registered on the root instance (app.ts): adds the multipart parser, the early checks and the cleanup.
export function registerMediaUploads(app: FastifyInstance, cfg: MediaConfig, bodyLimit: number): void {
  app.register(multipart, {
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
    // handler, once the item count is known)
    if (app.batcher.pendingItems >= app.config.maxPendingItems) {
      reply.header('connection', 'close')
      app.metrics.rejected.inc({ reason: 'overloaded' })
      throw new ServiceError('overloaded', 'server is at capacity; retry the upload later', { 'retry-after': String(app.config.retryAfterS) })
    }
  })
  app.addHook('preValidation', async (request, reply) => {
    if (!request.isMultipart()) return
    try {
      request.body = await readUploads(request, cfg)
    } catch (err) {
      // stop reading the rest of an upload we have refused
      reply.header('connection', 'close')
      throw toServiceError(err)
    }
  })
  const cleanup = async (request: FastifyRequest) => {
    await dirs.get(request)?.remove()
  }
  // onSend: the handler is done with the files, remove them before the answer leaves (so a client that got its
  // answer never sees them); onResponse / onRequestAbort cover the paths that skip onSend
  app.addHook('onSend', async (request, _reply, payload) => {
    await cleanup(request)
    return payload
  })
  app.addHook('onResponse', cleanup)
  app.addHook('onRequestAbort', cleanup)
}
