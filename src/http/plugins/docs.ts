// GET /docs — interactive API page (Swagger UI) over the hand-written openapi.yaml at the repository root,
// which test/http/openapi.test.ts keeps in step with the real routes and responses (and lints with
// swagger-parser and Redocly). /openapi.json (as vLLM and FastAPI serve it), /docs/json and /docs/yaml serve the
// spec itself. The spec's server URL is relative ("/"), so "Try it out" calls whatever host served the page.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export const OPENAPI_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../openapi.yaml')

async function docs(app: FastifyInstance): Promise<void> {
  await app.register(swagger, { mode: 'static', specification: { path: OPENAPI_PATH, baseDir: path.dirname(OPENAPI_PATH) } })
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } })
  app.get('/openapi.json', async () => app.swagger())
}

export default fp(docs, { name: 'docs', dependencies: [] })
