// POST /v1/rank — best-of-N: one prompt, N candidate responses. Scores, ranks (0 = best, as IXC's rank; ties
// keep input order), the best index and each candidate's own token count. The prompt is tokenized (and its
// media resolved) once and shared by every candidate row.
import type { FastifyInstance } from 'fastify'
import { resolveMedia, modelRef, normalizer, startScoring } from '../../scoring/service.ts'
import { parseBody } from '../schemas/common.ts'
import { RankRequestSchema } from '../schemas/score.ts'
import { promptMessages } from '../../conversation/prompt.ts'
import { describeLengths, segmentTokens, selectWithLengthControl } from '../../rlhf/length-control.ts'

export default async function rankRoute(app: FastifyInstance) {
  app.post('/v1/rank', async (request) => {
    const body = parseBody(RankRequestSchema, request.body)
    const run = startScoring(app, request, body.model, body.candidates.length)
    const z = body.normalize ? normalizer(run.model) : null
    let candidateTokens: number[] = []
    const scored = await run.score(async (model) => {
      const prompt = model.encoder.turns(promptMessages(body.prompt))
      const answers = body.candidates.map((c) => model.encoder.turns([{ role: 'assistant', content: c }]))
      await resolveMedia(app, request, model, [prompt, ...answers])
      candidateTokens = answers.map(segmentTokens)
      return answers.map((a) => model.encoder.finish(prompt, a))
    })
    const scores = scored.map((s) => s.score)
    const order = scores.map((_, i) => i).sort((i, j) => scores[j]! - scores[i]! || i - j)
    const ranks = new Array<number>(scores.length)
    order.forEach((idx, rank) => (ranks[idx] = rank))
    return {
      model: modelRef(run.model),
      normalized: z !== null,
      scores,
      ...(z ? { normalized_scores: scores.map(z) } : {}),
      ranks,
      best: order[0],
      candidate_tokens: candidateTokens,
      // Best-of-N length check (is the pick just the longest?) and the optional length-controlled pick.
      length: describeLengths(candidateTokens, order[0]!),
      ...(body.length_control ? { length_controlled: selectWithLengthControl(scores, candidateTokens, body.length_control) } : {}),
      tokens: scored.map((s) => s.tokens),
      truncated: scored.map((s) => s.truncated),
    }
  })
}
