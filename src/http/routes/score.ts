// POST /v1/score — a batch of conversations, raw reward logits in input order (no sigmoid: TEI/vLLM confuse
// users by applying one); normalize: true adds z-scores with the model's training statistics.
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { ScoreRequestSchema } from '../schemas/score.ts'
import { scoringRequest } from '../scoring-request.ts'

export default async function scoreRoute(app: FastifyInstance) {
  app.post('/v1/score', async (request) => {
    const body = parseBody(ScoreRequestSchema, request.body)
    const run = scoringRequest(app, request, { model: body.model, rows: body.items.length, normalize: body.normalize })
    const scored = await run.score(body.items.map((it) => [it.messages]))
    const z = run.z
    return {
      model: run.ref,
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
