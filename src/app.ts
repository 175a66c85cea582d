// Builds the Fastify app; never listens (src/server.ts does). Tests call buildApp(testConfig(), { engine: fake }).
//
// Here the service objects are built (plain objects: engine, registry, batcher, metrics, media hook, scoring
// service) and the HTTP layer is assembled from src/http: the plugins (each a named fastify-plugin under
// src/http/plugins, registered in the order their hooks must run), then one line per route.
import Fastify, { type FastifyInstance } from 'fastify'
import type { Config } from './config.ts'
import { WorkerEngine } from './engine/engine-client.ts'
import { ReplicatedEngine } from './engine/replicas.ts'
import type { Engine } from './engine/types.ts'
import authPlugin from './http/plugins/auth.ts'
import compressionPlugin from './http/plugins/compression.ts'
import contentTypePlugin from './http/plugins/content-type.ts'
import corsPlugin from './http/plugins/cors.ts'
import docsPlugin from './http/plugins/docs.ts'
import errorHandlerPlugin from './http/plugins/error-handler.ts'
import hotReloadPlugin from './http/plugins/hot-reload.ts'
import metricsPlugin from './http/plugins/metrics.ts'
import multipartPlugin from './http/plugins/multipart.ts'
import pressurePlugin from './http/plugins/pressure.ts'
import rateLimitPlugin from './http/plugins/rate-limit.ts'
import requestContextPlugin from './http/plugins/request-context.ts'
import servicesPlugin from './http/plugins/services.ts'
import traceContextPlugin from './http/plugins/trace-context.ts'
import adminRoutes from './http/routes/admin.ts'
import classifyRoute from './http/routes/classify.ts'
import compareRoute from './http/routes/compare.ts'
import getRewardRoute from './http/routes/get-reward.ts'
import healthRoutes from './http/routes/health.ts'
import infoRoute from './http/routes/info.ts'
import metricsRoute from './http/routes/metrics.ts'
import modelsRoute from './http/routes/models.ts'
import poolingRoute from './http/routes/pooling.ts'
import rankRoute from './http/routes/rank.ts'
import rerankRoute from './http/routes/rerank.ts'
import scoreRoute from './http/routes/score.ts'
import vllmScoreRoute from './http/routes/vllm-score.ts'
import { createMetrics, type Registry } from './metrics/metrics.ts'
import type { loadVersion } from './models/load.ts'
import { ModelRegistry } from './models/registry.ts'
import { IxcMediaResolver } from './preprocess/media/resolver.ts'
import type { MediaResolver } from './preprocess/media/types.ts'
import { Batcher } from './scheduler/batcher.ts'
import { ScoringService } from './scoring/service.ts'
import { buildInfo } from './metrics/build-info.ts'

export interface AppDeps {
  /** Default: ONNX Runtime in a worker thread (closed with the app). */
  engine: Engine
  /** Default: an empty registry filled from config.modelsDir when the app becomes ready. A registry passed in
   *  is used as is (tests publish fake model versions into it). */
  models: ModelRegistry
  /** THE media hook (images/video). Default: IxcMediaResolver with config.media. */
  mediaResolver: MediaResolver
  metricsRegistry: Registry
  /** Loads one model version, at start-up and on hot reload (src/models/reload.ts). Default: loadVersion. */
  loadModelVersion: typeof loadVersion
}

export function buildApp(config: Config, deps: Partial<AppDeps> = {}): FastifyInstance {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    // Start-up loads and warms every model in an onReady hook, which this bounds (Fastify's 10 s default was
    // hit by a small model on a loaded host; a 7B model takes minutes). 0 = no limit.
    pluginTimeout: config.startupTimeoutMs,
    // Honour a caller's request id (tracing across the RLHF trainer and us) when it is sane, else make one.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : crypto.randomUUID()
    },
    return503OnClosing: false, // server.ts answers 503 shutting_down through the error table instead
    // Slow senders are dropped (408) instead of holding a connection, the in-flight count and the shutdown
    // forever; Node checks these every connectionsCheckingInterval, so that is kept well below them.
    requestTimeout: config.http.bodyTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    http: {
      requestTimeout: config.http.bodyTimeoutMs,
      headersTimeout: config.http.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(250, Math.floor(config.http.headersTimeoutMs / 4))),
    },
  })

  const worker = () =>
    new WorkerEngine({
      providers: config.executionProviders,
      threads: config.threads,
      spin: config.ortSpin,
      embeddingCacheBytes: config.media.embeddingCacheBytes,
    })
  const metrics = createMetrics(deps.metricsRegistry, buildInfo(config.gitCommit))
  const engine =
    deps.engine ??
    (config.engineReplicas > 1
      ? new ReplicatedEngine(Array.from({ length: config.engineReplicas }, worker), (i) => metrics.engineReplicaRuns.inc({ replica: String(i) }))
      : worker())
  const models = deps.models ?? new ModelRegistry(config.defaultModel)
  const batcher = new Batcher({
    engine,
    limits: { ...config.batch, maxBatchTokens: config.batch.maxBatchTokens || 16384 },
    pipelineDepth: config.batch.pipelineDepth,
    packAcrossRequests: config.batch.packAcrossRequests,
    maxPendingItems: config.maxPendingItems,
    maxPendingImages: config.maxPendingImages,
    retryAfterS: config.retryAfterS,
    metrics,
    log: app.log,
  })
  const media =
    deps.mediaResolver ??
    new IxcMediaResolver(config.media, { hits: metrics.mediaCacheHits, misses: metrics.mediaCacheMisses, evictions: metrics.mediaCacheEvictions }, undefined, {
      hits: metrics.mediaStoreHits,
      misses: metrics.mediaStoreMisses,
      evictions: metrics.mediaStoreEvictions,
    })
  const scoring = new ScoringService({ batcher, media, engine, metrics, maxRows: config.maxClientBatchSize, maxRequestChars: config.maxRequestChars, retryAfterS: config.retryAfterS })

  // PLUGINS, in the order their request hooks run: trace ids (first, so every log line has them), shutdown
  // refusal and request context, CORS preflights (answered before auth), rate limiting (by address before
  // auth, so wrong keys are throttled too), API keys, early multipart refusals, hot reload's request count,
  // pressure shedding; body decoding and response compression.
  app.register(servicesPlugin, { config, engine, models, batcher, metrics, media, scoring, ownsEngine: deps.engine === undefined })
  app.register(traceContextPlugin)
  app.register(errorHandlerPlugin)
  app.register(contentTypePlugin)
  app.register(compressionPlugin)
  app.register(requestContextPlugin)
  app.register(metricsPlugin)
  app.register(corsPlugin)
  app.register(rateLimitPlugin)
  app.register(authPlugin)
  app.register(multipartPlugin)
  app.register(hotReloadPlugin, { watch: !deps.models, load: deps.loadModelVersion })
  app.register(pressurePlugin)

  // ROUTES — one line per route plugin (registered after the hooks above, which apply to them).
  app.register(healthRoutes)
  app.register(metricsRoute)
  app.register(modelsRoute)
  app.register(scoreRoute)
  app.register(compareRoute)
  app.register(rankRoute)
  app.register(getRewardRoute)
  // vLLM / TEI / Cohere-compatible shapes over the same scoring service (src/http/vllm-compat.ts).
  app.register(poolingRoute)
  app.register(classifyRoute)
  app.register(vllmScoreRoute)
  app.register(rerankRoute)
  app.register(infoRoute)
  app.register(adminRoutes)
  app.register(docsPlugin)
  return app
}
