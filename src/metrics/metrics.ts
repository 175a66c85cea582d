// Every metric name and bucket layout of the service, in one place, and the only file that imports prom-client.
// Each app instance gets its own Registry (createMetrics makes one unless given one), so tests and several
// apps in one process never share counters. Conventions: a model is always labelled {model, version} (name and
// version number, as Triton's model/version); an `_info` gauge is always 1 and carries its state in a label, so
// `count by (state)` and joins work; prom-client's default process_* and nodejs_* metrics are on.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { BuildInfo } from './build-info.ts'

export type { Registry }

// Seconds, 0.5 ms .. ~65 s, x2 steps (TEI uses geometric buckets too).
const SECONDS = Array.from({ length: 18 }, (_, i) => 0.0005 * 2 ** i)
const POW2 = (n: number) => Array.from({ length: n }, (_, i) => 2 ** i)

/** The labels of one model version on every per-model metric. */
export const modelLabels = (m: { name: string; version: number }) => ({ model: m.name, version: String(m.version) })

export type ModelState = 'serving' | 'loaded' | 'failed'

export function createMetrics(registry: Registry = new Registry(), build?: BuildInfo) {
  const registers = [registry]
  collectDefaultMetrics({ register: registry })
  const buildInfo = new Gauge({
    name: 'scorer_build_info',
    help: 'Always 1; the build in labels: service version, commit, Node.js and ONNX Runtime versions',
    labelNames: ['version', 'commit', 'node', 'ort'] as const,
    registers,
  })
  if (build) buildInfo.set({ version: build.version, commit: build.commit, node: build.node, ort: build.ort }, 1)
  return {
    registry,
    buildInfo,
    requests: new Counter({
      name: 'scorer_requests_total',
      help: 'HTTP requests by route and status code',
      labelNames: ['route', 'status'] as const,
      registers,
    }),
    requestSeconds: new Histogram({
      name: 'scorer_request_duration_seconds',
      help: 'HTTP request duration by route and status code',
      labelNames: ['route', 'status'] as const,
      buckets: SECONDS,
      registers,
    }),
    queueDepth: new Gauge({ name: 'scorer_queue_depth', help: 'Jobs waiting for a batch', registers }),
    engineReplicaRuns: new Counter({
      name: 'scorer_engine_replica_runs_total',
      help: 'Reward graph runs (batches) by engine replica, with ENGINE_REPLICAS > 1; replica 0 also runs every vision graph and every batch naming stored image embeddings',
      labelNames: ['replica'] as const,
      registers,
    }),
    pendingItems: new Gauge({
      name: 'scorer_pending_items',
      help: 'Items admitted (queued + in flight); admission refuses beyond MAX_PENDING_ITEMS',
      registers,
    }),
    visionQueueDepth: new Gauge({ name: 'scorer_vision_queue_depth', help: 'Vision runs (one image each) waiting for the engine', registers }),
    pendingImages: new Gauge({
      name: 'scorer_vision_pending_images',
      help: 'Vision runs admitted (queued + running); admission refuses beyond MAX_PENDING_IMAGES',
      registers,
    }),
    visionQueueSeconds: new Histogram({
      name: 'scorer_vision_queue_seconds',
      help: 'Time a vision run waited between enqueue and its start',
      buckets: SECONDS,
      registers,
    }),
    queueSeconds: new Histogram({
      name: 'scorer_queue_seconds',
      help: 'Time a job waited between enqueue and its batch starting',
      buckets: SECONDS,
      registers,
    }),
    batchSize: new Histogram({ name: 'scorer_batch_size', help: 'Rows per batch', buckets: POW2(13), registers }),
    batchTokens: new Histogram({
      name: 'scorer_batch_tokens',
      help: 'Padded positions per batch (rows x longest row)',
      buckets: POW2(21),
      registers,
    }),
    preprocessSeconds: new Histogram({
      name: 'scorer_preprocess_seconds',
      help: 'Per-request tokenization and media preprocessing time',
      buckets: SECONDS,
      registers,
    }),
    inferenceSeconds: new Histogram({
      name: 'scorer_inference_seconds',
      help: 'Native run time per graph',
      labelNames: ['graph'] as const,
      buckets: SECONDS,
      registers,
    }),
    tokensScored: new Counter({
      name: 'scorer_tokens_scored_total',
      help: 'Real (unpadded) positions scored',
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    itemsScored: new Counter({
      name: 'scorer_items_scored_total',
      help: 'Conversations scored',
      labelNames: ['model', 'version'] as const,
      registers,
    }),
    score: new Histogram({
      name: 'scorer_score',
      help: 'Raw reward distribution per model version (drift watch)',
      labelNames: ['model', 'version'] as const,
      buckets: Array.from({ length: 21 }, (_, i) => -10 + i),
      registers,
    }),
    modelInfo: new Gauge({
      name: 'scorer_model_info',
      help: 'Always 1 per model version found; state = serving | loaded (not the serving version) | failed',
      labelNames: ['model', 'version', 'ep', 'state'] as const,
      registers,
    }),
    rejected: new Counter({
      name: 'scorer_rejected_total',
      help: 'Requests or jobs refused or dropped, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    // Image/video embedding cache (src/preprocess/media/embedding-cache.ts); a hit skips decoding and vision.
    mediaCacheHits: new Counter({ name: 'scorer_media_cache_hits_total', help: 'Media embedding cache hits (incl. sharing an in-flight vision run)', registers }),
    mediaCacheMisses: new Counter({ name: 'scorer_media_cache_misses_total', help: 'Media embedding cache misses (vision graph runs)', registers }),
    mediaCacheEvictions: new Counter({ name: 'scorer_media_cache_evictions_total', help: 'Media embeddings evicted to stay under EMBEDDING_CACHE_BYTES', registers }),
    // Media by content hash (src/preprocess/media/media-store.ts): {"sha256": ...} references served / refused.
    mediaStoreHits: new Counter({ name: 'scorer_media_store_hits_total', help: 'Media parts sent as a sha256 reference and resolved (stored bytes or cached embedding)', registers }),
    mediaStoreMisses: new Counter({ name: 'scorer_media_store_misses_total', help: 'Media sha256 references refused with media_not_cached (the client must resend the bytes)', registers }),
    mediaStoreEvictions: new Counter({ name: 'scorer_media_store_evictions_total', help: 'Media files evicted to stay under MEDIA_STORE_BYTES', registers }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
