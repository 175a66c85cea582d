// GET /metrics — Prometheus text format from this app's own Registry.
import type { FastifyInstance } from 'fastify'
import { modelLabels, type ModelState } from '../../metrics/metrics.ts'

export default async function metricsRoute(app: FastifyInstance) {
  app.get('/metrics', async (_request, reply) => {
    // Model info is read from the registry at scrape time so that it follows loads, failures and swaps.
    app.metrics.modelInfo.reset()
    for (const s of app.models.list()) {
      const state: ModelState = s.state === 'failed' ? 'failed' : s.serving ? 'serving' : 'loaded'
      app.metrics.modelInfo.set({ ...modelLabels(s), ep: s.executionProvider ?? 'none', state }, 1)
    }
    reply.header('content-type', app.metrics.registry.contentType)
    return app.metrics.registry.metrics()
  })
}
