// POST /pooling — vLLM's generic pooling route: completion-style `input` (chat-templated text, one or several)
// or chat-style `messages` (one conversation) -> `data[i].data = [reward]`. Raw logits unless use_activation.
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { PoolingRequestSchema, wantsActivation } from '../schemas/vllm.ts'
import { activate, conversationsOf, envelope, scoreConversations } from '../vllm-compat.ts'

export default async function poolingRoute(app: FastifyInstance) {
  app.post('/pooling', async (request) => {
    const body = parseBody(PoolingRequestSchema, request.body)
    const { run, rows } = await scoreConversations(app, request, body.model, conversationsOf(body))
    const f = activate(wantsActivation(body, false))
    return envelope('pool', run, rows.map((r, index) => ({ index, object: 'pooling' as const, data: [f(r.score)] })), rows)
  })
}
