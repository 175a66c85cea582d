// The service objects every other plugin and route uses, decorated once on the root instance: the config, the
// engine, the model registry, the batcher, the metrics, the media hook, the scoring service and the process
// lifecycle. They are built (plain objects, no Fastify) by src/app.ts and released here when the app closes.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../../config.ts'
import type { Engine } from '../../engine/types.ts'
import type { Metrics } from '../../metrics/metrics.ts'
import type { ModelRegistry } from '../../models/registry.ts'
import type { MediaResolver } from '../../preprocess/media/types.ts'
import type { Batcher } from '../../scheduler/batcher.ts'
import type { ScoringService } from '../../scoring/service.ts'

export interface Lifecycle {
  /** Set by server.ts on SIGTERM: readiness fails and new requests get 503 shutting_down. */
  shuttingDown: boolean
  /** HTTP requests received and not yet answered or aborted (server.ts drains these on shutdown). */
  inflight: number
}

/** The objects decorated on the app, each under its own name. */
export interface ServiceObjects {
  config: Config
  engine: Engine
  models: ModelRegistry
  batcher: Batcher
  metrics: Metrics
  media: MediaResolver
  scoring: ScoringService
}

export interface Services extends ServiceObjects {
  /** Close the engine with the app (false when the caller passed its own and closes it). */
  ownsEngine: boolean
}

declare module 'fastify' {
  interface FastifyInstance extends ServiceObjects {
    lifecycle: Lifecycle
  }
}

async function services(app: FastifyInstance, s: Services): Promise<void> {
  app.decorate('config', s.config)
  app.decorate('engine', s.engine)
  app.decorate('models', s.models)
  app.decorate('batcher', s.batcher)
  app.decorate('metrics', s.metrics)
  app.decorate('media', s.media)
  app.decorate('scoring', s.scoring)
  app.decorate('lifecycle', { shuttingDown: false, inflight: 0 })
  // Registered first, so it runs last (onClose hooks run in reverse): every other plugin is done by then.
  app.addHook('onClose', async () => {
    await s.media.close?.()
    s.batcher.close()
    if (s.ownsEngine) await s.engine.close()
  })
}

export default fp(services, { name: 'services', dependencies: [] })
