// Request metrics, recorded once here for every route (not per handler). GET /metrics is src/http/routes/metrics.ts.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

async function requestMetrics(app: FastifyInstance): Promise<void> {
  const { metrics } = app
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the raw URL, keeps label cardinality bounded (unknown paths share one label).
    const route = request.routeOptions.url ?? 'unmatched'
    const labels = { route, status: String(reply.statusCode) }
    metrics.requests.inc(labels)
    metrics.requestSeconds.observe(labels, reply.elapsedTime / 1000)
  })
}

export default fp(requestMetrics, { name: 'metrics', dependencies: ['services'] })
