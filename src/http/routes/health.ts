// GET /healthz: the process is alive (answers without touching the engine, so it stays fast during long
// batches). GET /readyz: a model is loaded and warmed, the engine worker is alive, and we are not shutting down;
// 200 "degraded" with the unavailable media kinds when the host cannot decode video (text and images work).
import type { FastifyInstance } from 'fastify'
import { ServiceError } from '../../errors.ts'

// Probes arrive every few seconds from Docker's HEALTHCHECK, the kubelet and load balancers: their access
// lines (info) would drown the log. Warnings and errors about them still appear.
const PROBE = { logLevel: 'warn' } as const

export default async function healthRoutes(app: FastifyInstance) {
  app.get('/healthz', PROBE, async () => ({ status: 'ok' }))
  app.get('/readyz', PROBE, async () => {
    if (app.lifecycle.shuttingDown) throw new ServiceError('shutting_down', 'server is shutting down')
    if (!(await app.engine.health())) throw new ServiceError('model_not_ready', 'inference engine is not running')
    if (!app.models.isReady()) throw new ServiceError('model_not_ready', 'no model is loaded and warmed yet')
    const models = app.models.servingModels().map((m) => m.key)
    const caps = (await app.media.capabilities?.()) ?? { video: true }
    if (!caps.video) return { status: 'degraded', models, unavailable: ['video'] }
    return { status: 'ready', models }
  })
}
