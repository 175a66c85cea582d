// POST /v1/score — a batch of conversations, raw reward logits in input order (no sigmoid: TEI/vLLM confuse
// users by applying one); normalize: true adds z-scores with the model's training statistics.
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { ScoreRequestSchema } from '../schemas/score.ts'
import { modelRef, normalizer, resolveMedia, startScoring } from '../../scoring/service.ts'

export default async function scoreRoute(app: FastifyInstance) {
  app.post('/v1/score', async (request) => {
    const body = parseBody(ScoreRequestSchema, request.body)
    const run = startScoring(app, request, body.model, body.items.length)
    const z = body.normalize ? normalizer(run.model) : null
    const scored = await run.score(async (model) => {
      const segs = body.items.map((it) => model.encoder.turns(it.messages))
      await resolveMedia(app, request, model, segs)
      return segs.map((s) => model.encoder.finish(s))
    })
    return {
      model: modelRef(run.model),
      normalized: z !== null,
      scores: scored.map((s) => s.score),
      results: scored.map((s, index) => ({
        index,
        score: s.score,
        ...(z ? { normalized_score: z(s.score) } : {}),
        tokens: s.tokens,
        truncated: s.truncated,
      })),
    }
  })
}
