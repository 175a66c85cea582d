// Optional second listener (OPS_PORT) for probes and the scraper, as Triton serves metrics on their own port:
// a NetworkPolicy or firewall can then open the API to clients and this port only to the kubelet and
// Prometheus. It answers through the app itself (inject), so readiness, shutdown and metrics behave exactly
// as on the main port, which keeps serving these routes too.
import Fastify, { type FastifyInstance } from 'fastify'
import type { Config } from '../config.ts'

export const OPS_ROUTES = ['/healthz', '/readyz', '/metrics'] as const

/** Listens on config.opsPort (null when it is 0 = off). The caller closes it after the app. */
export async function startOpsServer(app: FastifyInstance, config: Config): Promise<FastifyInstance | null> {
  if (config.opsPort === 0) return null
  const ops = Fastify({ logger: false })
  for (const url of OPS_ROUTES) {
    ops.get(url, async (_request, reply) => {
      const r = await app.inject({ method: 'GET', url })
      for (const h of ['content-type', 'retry-after', 'connection']) if (r.headers[h] !== undefined) reply.header(h, r.headers[h])
      return reply.code(r.statusCode).send(r.body)
    })
  }
  await ops.listen({ port: config.opsPort, host: config.host })
  return ops
}
