// GET /v1/models — OpenAI's model list (`object: "list"`, `data[].id`: the names a request's `model` field takes,
// one per serving model, so OpenAI/vLLM SDKs' models.list() works) and, next to it, this server's own detail,
// kept for existing clients: every model version found, whether it serves (or why not), the execution provider
// chosen with the fallback reasons, and the server's limits (clients size their batches from these).
import type { FastifyInstance } from 'fastify'
import { describeMediaLimits } from '../../preprocess/media/media-config.ts'
import type { ModelManifest } from '../../models/manifest.ts'

/** Seconds since the epoch of a manifest's `created` (0 when absent or unparseable), OpenAI's `created`. */
export const createdSeconds = (created: string | undefined) => {
  const ms = created ? Date.parse(created) : NaN
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0
}

/** What a model is made of: its float type, decoder attention, parameter count (config.num_params, written by
 *  the trainer) and the bytes of every file it verified on disk (graphs, external data, tokenizer, ...). */
export function modelSize(m: ModelManifest) {
  const params = m.config.num_params
  return {
    // defaults as the schema's, for manifests built without parsing (tests' fake model)
    dtype: m.dtype ?? 'float32',
    attention: m.graphs.reward.attention ?? 'eager',
    parameters: typeof params === 'number' ? params : null,
    bytes_on_disk: Object.values(m.files).reduce((n, f) => n + f.bytes, 0),
  }
}

export default async function modelsRoute(app: FastifyInstance) {
  app.get('/v1/models', async () => {
    const c = app.config
    const serving = new Map(app.models.servingModels().map((m) => [m.key, m]))
    return {
      object: 'list',
      data: [...serving.values()].map((m) => ({
        id: m.name,
        object: 'model',
        created: createdSeconds(m.manifest.created),
        owned_by: 'reward-server',
        root: m.key,
        max_model_len: m.manifest.max_seq_len,
      })),
      default_model: app.models.defaultName || null,
      execution_providers: { preference: c.executionProviders },
      limits: {
        max_batch_tokens: c.batch.maxBatchTokens, // 0 = chosen per model (see each model's max_batch_tokens)
        max_batch_size: c.batch.maxBatchSize,
        max_queue_delay_ms: c.batch.maxQueueDelayMs,
        max_pending_items: c.maxPendingItems,
        max_client_batch_size: c.maxClientBatchSize,
        max_item_chars: c.maxItemChars,
        request_timeout_ms: c.requestTimeoutMs,
        body_limit_bytes: c.bodyLimitBytes,
        media: describeMediaLimits(c.media),
      },
      models: app.models.list().map((s) => {
        const m = serving.get(`${s.name}/${s.version}`)
        return {
          name: s.name,
          version: s.version,
          state: s.state,
          serving: s.serving,
          ...(s.error ? { error: s.error } : {}),
          execution_provider: s.executionProvider ?? null,
          execution_provider_fallbacks: s.fallbacks ?? [],
          ...(m
            ? {
                architecture: m.manifest.architecture,
                created: m.manifest.created ?? null,
                max_seq_len: m.manifest.max_seq_len,
                ...modelSize(m.manifest),
                max_batch_tokens: m.batchTokens ?? null,
                readout: m.manifest.score.readout,
                train_stats: m.manifest.score.train_stats,
              }
            : {}),
        }
      }),
    }
  })
}
