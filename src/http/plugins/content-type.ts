// Request bodies are JSON (or multipart/form-data, src/http/plugins/multipart.ts). Fastify parses text/plain by
// default, which let a JSON body sent as text/plain through to validation (422) and made every scoring route
// reachable by a cross-origin "simple request" that no CORS preflight guards. Without the parser those get 415,
// as vLLM (validate_json_request) answers.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

async function contentType(app: FastifyInstance): Promise<void> {
  app.removeContentTypeParser('text/plain')
}

export default fp(contentType, { name: 'content-type', dependencies: ['error-handler'] })
