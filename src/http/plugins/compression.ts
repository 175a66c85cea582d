// Compressed bodies both ways (@fastify/compress): responses are gzip/deflate-encoded when the client accepts it
// (over 1 KiB; large /get_reward and /v1/rank answers shrink several-fold), and JSON request bodies may be sent
// with `Content-Encoding: gzip` or `deflate` (RLHF trainers posting whole rollouts). BODY_LIMIT_BYTES applies to
// the decoded bytes, so a small compressed body that inflates past it is refused with 413 (no zip bomb).
// Multipart uploads are read from the raw socket by their own parser and must be sent uncompressed.
import compress from '@fastify/compress'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ServiceError } from '../../errors.ts'

export const ENCODINGS = ['gzip', 'deflate'] as const

async function compression(app: FastifyInstance): Promise<void> {
  await app.register(compress, {
    global: true,
    encodings: [...ENCODINGS],
    requestEncodings: [...ENCODINGS],
    onUnsupportedRequestEncoding: (encoding) =>
      new ServiceError('unsupported_media_type', `Content-Encoding ${JSON.stringify(encoding.slice(0, 40))} is not supported; use ${ENCODINGS.join(' or ')}`),
    onInvalidRequestPayload: (encoding) => new ServiceError('bad_request', `request body is not valid ${encoding} data`),
  })
}

export default fp(compression, { name: 'compression', dependencies: ['error-handler'] })
