// POST /admin/models/reload (ADMIN_TOKEN): load every new version directory now, swap each in once it has
// validated and warmed, and report what happened. The old version keeps answering until the swap, and its
// sessions are released after the requests that were using it have finished.
import type { FastifyInstance } from 'fastify'
import { requireAdmin } from '../plugins/auth.ts'

export default async function adminRoutes(app: FastifyInstance) {
  app.addHook('onRequest', requireAdmin(app))
  app.post('/admin/models/reload', async () => {
    const r = await app.reloader.reload({ force: true })
    return {
      loaded: r.loaded,
      failed: r.failed,
      serving: app.models.servingModels().map((m) => ({ name: m.name, version: m.version })),
    }
  })
}
