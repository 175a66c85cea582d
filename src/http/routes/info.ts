// GET /info — TEI's router info, for clients that discover a server's limits there (TEI's field names and
// shapes): the default model (model_id, its reward graph's sha256 as model_sha), model_type (a one-label
// classifier), the admission and batching limits, and the build. Behind the API key, as in TEI.
import type { FastifyInstance } from 'fastify'
import { buildInfo } from '../../metrics/build-info.ts'
import { REWARD_LABEL } from './classify.ts'

export default async function infoRoute(app: FastifyInstance) {
  const build = buildInfo(app.config.gitCommit)
  app.get('/info', async () => {
    const c = app.config
    const m = app.models.resolve() // 503 model_not_ready before a model serves
    const reward = m.manifest.graphs.reward
    return {
      model_id: m.name,
      model_sha: m.manifest.files[reward.file]?.sha256 ?? null,
      model_dtype: reward.outputs[0]!.dtype,
      model_type: { classifier: { id2label: { '0': REWARD_LABEL } } },
      max_concurrent_requests: c.maxPendingItems,
      max_input_length: m.manifest.max_seq_len,
      max_batch_tokens: m.batchTokens ?? (c.batch.maxBatchTokens || 16384),
      max_batch_requests: c.batch.maxBatchSize,
      max_client_batch_size: c.maxClientBatchSize,
      auto_truncate: true, // over-long conversations keep their end (left truncation), never an error
      tokenization_workers: 1,
      version: build.version,
      sha: build.commit === 'unknown' ? null : build.commit,
      docker_label: null,
    }
  })
}
