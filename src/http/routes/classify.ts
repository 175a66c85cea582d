// POST /classify — vLLM's classification route: `input` (chat-templated text) or `messages` -> one class per
// conversation, `probs: [sigmoid(reward)]` as vLLM gives a one-logit classifier (use_activation: false -> raw).
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { ClassifyRequestSchema, wantsActivation } from '../schemas/vllm.ts'
import { activate, conversationsOf, envelope, scoreConversations } from '../vllm-compat.ts'

/** transformers' default label of class 0, what vLLM reports for a model without id2label. */
export const REWARD_LABEL = 'LABEL_0'

export default async function classifyRoute(app: FastifyInstance) {
  app.post('/classify', async (request) => {
    const body = parseBody(ClassifyRequestSchema, request.body)
    const { run, rows } = await scoreConversations(app, request, body.model, conversationsOf(body))
    const f = activate(wantsActivation(body, true))
    const data = rows.map((r, index) => ({ index, label: REWARD_LABEL, probs: [f(r.score)], num_classes: 1 }))
    return envelope('classify', run, data, rows)
  })
}
