// POST /v1/compare — two responses to one prompt (or two whole conversations): both scores, the preferred
// index and the Bradley-Terry probability that response 0 is preferred, sigma(r0 - r1). Mirrors IXC's compare.
import type { FastifyInstance } from 'fastify'
import type { Segment } from '../../conversation/types.ts'
import { parseBody } from '../schemas/common.ts'
import { CompareRequestSchema } from '../schemas/score.ts'
import { modelRef, normalizer, resolveMedia, sigmoid, startScoring } from '../../scoring/service.ts'
import { promptMessages } from '../../conversation/prompt.ts'

export default async function compareRoute(app: FastifyInstance) {
  app.post('/v1/compare', async (request) => {
    const body = parseBody(CompareRequestSchema, request.body)
    const run = startScoring(app, request, body.model, 2)
    const z = body.normalize ? normalizer(run.model) : null
    const scored = await run.score(async (model) => {
      // With a shared prompt, it is tokenized and its media resolved once for both rows.
      const prompt: Segment[] = body.conversations ? [] : model.encoder.turns(promptMessages(body.prompt!))
      const sides = body.conversations
        ? body.conversations.map((c) => model.encoder.turns(c))
        : body.responses!.map((r) => model.encoder.turns([{ role: 'assistant', content: r }]))
      await resolveMedia(app, request, model, [prompt, ...sides])
      return sides.map((side) => model.encoder.finish(prompt, side))
    })
    const [a, b] = [scored[0]!.score, scored[1]!.score]
    return {
      model: modelRef(run.model),
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
