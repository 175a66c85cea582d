// POST /v1/score — a batch of conversations, raw reward logits in input order (no sigmoid: TEI/vLLM confuse
// users by applying one); normalize: true adds z-scores with the model's training statistics. A vLLM /score
// body (queries + documents, text_1 + text_2, ...) gets vLLM's answer instead, since vLLM serves that route
// under this path too.
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { ScoreRequestSchema } from '../schemas/score.ts'
import { VllmScoreRequestSchema, isVllmScoreBody } from '../schemas/vllm.ts'
import { scoringRequest } from '../scoring-request.ts'
import { vllmScore } from '../vllm-compat.ts'

export default async function scoreRoute(app: FastifyInstance) {
  app.post('/v1/score', async (request) => {
    if (isVllmScoreBody(request.body)) return vllmScore(app, request, parseBody(VllmScoreRequestSchema, request.body))
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
