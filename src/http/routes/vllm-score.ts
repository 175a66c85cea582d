// POST /score — vLLM's sentence-pair score route: queries (prompts) x documents (responses), 1:1, 1:N or N:N,
// -> `data[i].score`, sigmoid(reward) by default as vLLM (use_activation: false -> raw logit). POST /v1/score
// accepts this body too (src/http/routes/score.ts).
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { VllmScoreRequestSchema } from '../schemas/vllm.ts'
import { vllmScore } from '../vllm-compat.ts'

export default async function vllmScoreRoute(app: FastifyInstance) {
  app.post('/score', async (request) => vllmScore(app, request, parseBody(VllmScoreRequestSchema, request.body)))
}
