// POST /v1/rank — best-of-N: one prompt, N candidate responses. Scores, ranks (0 = best; ties
// keep input order), the best index and each candidate's own token count. The prompt is tokenized (and its
// media resolved) once and shared by every candidate row.
import type { FastifyInstance } from 'fastify'
import { describeLengths, selectWithLengthControl } from '../../rlhf/length-control.ts'
import { parseBody } from '../schemas/common.ts'
import { RankRequestSchema } from '../schemas/score.ts'
import { scoringRequest } from '../scoring-request.ts'

export default async function rankRoute(app: FastifyInstance) {
  app.post('/v1/rank', async (request) => {
    const body = parseBody(RankRequestSchema, request.body)
    const run = scoringRequest(app, request, { model: body.model, rows: body.candidates.length, normalize: body.normalize })
    const prompt = body.prompt
    const scored = await run.score(body.candidates.map((c) => [prompt, [{ role: 'assistant', content: c }]]))
    const z = run.z
    const candidateTokens = scored.map((s) => s.groupTokens[1]!)
    const scores = scored.map((s) => s.score)
    const order = scores.map((_, i) => i).sort((i, j) => scores[j]! - scores[i]! || i - j)
    const ranks = new Array<number>(scores.length)
    order.forEach((idx, rank) => (ranks[idx] = rank))
    return {
      model: run.ref,
      normalized: z !== null,
      scores,
      ...(z ? { normalized_scores: scores.map(z) } : {}),
      ranks,
      // The published rank()'s return value: candidate indices best first (a stable sort, so ties keep the lower
      // index first), for clients porting from get_scores/rank; `ranks` is its inverse.
      order,
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
