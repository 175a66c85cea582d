// POST /v1/compare — two responses to one prompt (or two whole conversations): both scores, the preferred
// index and the Bradley-Terry probability that response 0 is preferred, sigma(r0 - r1). Mirrors IXC's compare.
import type { FastifyInstance } from 'fastify'
import { sigmoid } from '../../scoring/normalize.ts'
import type { ScoreRow } from '../../scoring/types.ts'
import { parseBody } from '../schemas/common.ts'
import { CompareRequestSchema } from '../schemas/score.ts'
import { scoringRequest } from '../scoring-request.ts'

export default async function compareRoute(app: FastifyInstance) {
  app.post('/v1/compare', async (request) => {
    const body = parseBody(CompareRequestSchema, request.body)
    const run = scoringRequest(app, request, { model: body.model, rows: 2, normalize: body.normalize })
    // With a shared prompt, it is tokenized and its media resolved once for both rows.
    const prompt = body.prompt
    const rows: ScoreRow[] = body.conversations
      ? body.conversations.map((c) => [c])
      : body.responses!.map((r) => [prompt!, [{ role: 'assistant', content: r }]])
    const scored = await run.score(rows)
    const z = run.z
    const [a, b] = [scored[0]!.score, scored[1]!.score]
    return {
      model: run.ref,
      normalized: z !== null,
      scores: [a, b],
      ...(z ? { normalized_scores: [z(a), z(b)] } : {}),
      preferred: a >= b ? 0 : 1,
      probability: sigmoid(a - b),
      tokens: scored.map((s) => s.tokens),
      truncated: scored.map((s) => s.truncated),
    }
  })
}
