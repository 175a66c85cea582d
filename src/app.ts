// Builds the Fastify app; never listens (src/server.ts does). Tests call buildApp(testConfig(), { engine: fake }).
//
// Extension points for other parts of the service (see /tmp/service-core-notes.md):
//  - a route plugin: add one `app.register(plugin)` line in the ROUTES block below; inside, use
//    app.config / app.models / app.batcher / app.engine / app.metrics / app.media (decorated here).
//  - media: pass `mediaResolver` in deps (src/conversation/media.ts); the default is the IXC image/video path
//    (src/preprocess/media/resolver.ts).
import Fastify, { type FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { Config } from './config.ts'
import type { MediaResolver } from './conversation/media.ts'
import { IxcMediaResolver } from './preprocess/media/resolver.ts'
import { registerMediaUploads } from './http/plugins/multipart.ts'
import { WorkerEngine } from './engine/engine-client.ts'
import type { Engine } from './engine/types.ts'
import { registerErrorHandling } from './http/plugins/error-handler.ts'
import { registerRequestHooks } from './http/plugins/request-context.ts'
import { protection } from './http/plugins/auth.ts'
import adminRoutes from './http/routes/admin.ts'
import docsRoutes from './http/plugins/docs.ts'
import { registerHotReload } from './models/reload.ts'
import compareRoute from './http/routes/compare.ts'
import healthRoutes from './http/routes/health.ts'
import metricsRoute from './http/routes/metrics.ts'
import modelsRoute from './http/routes/models.ts'
import rankRoute from './http/routes/rank.ts'
import scoreRoute from './http/routes/score.ts'
import getRewardRoute from './http/routes/get-reward.ts'
import { createMetrics, type Metrics } from './metrics/metrics.ts'
import { loadRepository, type loadVersion } from './models/load.ts'
import { ModelRegistry } from './models/registry.ts'
import { Batcher } from './scheduler/batcher.ts'

export interface AppDeps {
  /** Default: ONNX Runtime in a worker thread (closed with the app). */
  engine: Engine
  /** Default: an empty registry filled from config.modelsDir when the app becomes ready. A registry passed in
   *  is used as is (tests publish fake model versions into it). */
  models: ModelRegistry
  /** THE media hook (images/video). Default: IxcMediaResolver with config.media. */
  mediaResolver: MediaResolver
  metricsRegistry: Registry
  /** Hot reload's loader (src/models/reload.ts). Default: the start-up loader, loadVersion. */
  loadModelVersion: typeof loadVersion
}

export interface Lifecycle {
  /** Set by server.ts on SIGTERM: readiness fails and new requests get 503 shutting_down. */
  shuttingDown: boolean
  /** HTTP requests received and not yet answered or aborted (server.ts drains these on shutdown). */
  inflight: number
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    engine: Engine
    models: ModelRegistry
    batcher: Batcher
    metrics: Metrics
    media: MediaResolver
    lifecycle: Lifecycle
  }
}

export function buildApp(config: Config, deps: Partial<AppDeps> = {}): FastifyInstance {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    // Honour a caller's request id (tracing across the RLHF trainer and us) when it is sane, else make one.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID()
    },
    return503OnClosing: false, // server.ts answers 503 shutting_down through the error table instead
  })

  const engine =
    deps.engine ?? new WorkerEngine({ providers: config.executionProviders, threads: config.threads, spin: config.ortSpin })
  const ownsEngine = deps.engine === undefined
  const models = deps.models ?? new ModelRegistry(config.defaultModel)
  const metrics = createMetrics(deps.metricsRegistry ?? new Registry())
  const batcher = new Batcher({
    engine,
    limits: { ...config.batch, maxBatchTokens: config.batch.maxBatchTokens || 16384 },
    pipelineDepth: config.batch.pipelineDepth,
    maxPendingItems: config.maxPendingItems,
    retryAfterS: config.retryAfterS,
    metrics,
    log: app.log,
  })

  app.decorate('config', config)
  app.decorate('engine', engine)
  app.decorate('models', models)
  app.decorate('batcher', batcher)
  app.decorate('metrics', metrics)
  app.decorate('media', deps.mediaResolver ?? new IxcMediaResolver(config.media, { hits: metrics.mediaCacheHits, misses: metrics.mediaCacheMisses, evictions: metrics.mediaCacheEvictions }))
  app.decorate('lifecycle', { shuttingDown: false, inflight: 0 })

  registerErrorHandling(app)
  registerRequestHooks(app)
  registerMediaUploads(app, config.media, config.bodyLimitBytes)

  // ROUTES — one line per plugin. `protection` (rate limit, pressure shedding) first: it hooks routes added after it.
  app.register(protection)
  app.register(healthRoutes)
  app.register(metricsRoute)
  app.register(modelsRoute)
  app.register(scoreRoute)
  app.register(compareRoute)
  app.register(rankRoute)
  app.register(getRewardRoute)
  app.register(adminRoutes)
  app.register(docsRoutes)

  if (!deps.models) {
    app.addHook('onReady', async () => {
      await loadRepository(config.modelsDir, {
        engine,
        registry: models,
        maxBatchTokens: config.batch.maxBatchTokens,
        maxItemChars: config.maxItemChars,
        log: app.log,
      })
    })
  }
  // After the start-up load hook above: the watcher starts from what start-up loaded.
  registerHotReload(app, {
    root: config.modelsDir,
    engine,
    registry: models,
    maxBatchTokens: config.batch.maxBatchTokens,
    maxItemChars: config.maxItemChars,
    log: app.log,
    pollIntervalMs: config.modelPollIntervalMs,
    drainTimeoutMs: config.requestTimeoutMs + 5_000,
    watch: !deps.models,
    load: deps.loadModelVersion,
  })
  app.addHook('onClose', async () => {
    await app.media.close?.()
    batcher.close()
    if (ownsEngine) await engine.close()
  })
  return app
}
