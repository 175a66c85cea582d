// GET /metrics — Prometheus text format from this app's own Registry.
import type { FastifyInstance } from 'fastify'

export default async function metricsRoute(app: FastifyInstance) {
  app.get('/metrics', async (_request, reply) => {
    // Model info is read from the registry at scrape time so that it follows loads, failures and swaps.
    app.metrics.modelInfo.reset()
    for (const s of app.models.list()) {
      app.metrics.modelInfo.set(
        { name: s.name, version: String(s.version), ep: s.executionProvider ?? 'none' },
        s.state === 'failed' ? -1 : s.serving ? 1 : 0,
      )
    }
    reply.header('content-type', app.metrics.registry.contentType)
    return app.metrics.registry.metrics()
  })
}
