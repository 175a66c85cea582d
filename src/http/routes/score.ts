// POST /v1/score — a batch of conversations, raw reward logits in input order (no sigmoid: TEI/vLLM confuse
// users by applying one); normalize: true adds z-scores with the model's training statistics. A vLLM /score
// body (queries + documents, text_1 + text_2, ...) gets vLLM's answer instead, since vLLM serves that route
// under this path too. An item with `steps` also gets step_scores: one row per prefix of the response, all of
// them sharing the prompt and the earlier steps, so they pack into one pass (src/scheduler/pack-shared.ts).
import type { FastifyInstance } from 'fastify'
import type { Message } from '../../conversation/types.ts'
import { ServiceError } from '../../errors.ts'
import type { ScoreRow } from '../../scoring/types.ts'
import { parseBody } from '../schemas/common.ts'
import { MAX_STEPS, ScoreRequestSchema, type StepsSpec } from '../schemas/score.ts'
import { VllmScoreRequestSchema, isVllmScoreBody } from '../schemas/vllm.ts'
import { scoringRequest } from '../scoring-request.ts'
import { vllmScore } from '../vllm-compat.ts'

/** The response prefixes of an item with steps: [prompt, [assistant: prefix k]] for k = 1..K. */
export function stepRows(messages: readonly Message[], steps: StepsSpec, index: number): ScoreRow[] {
  const last = messages[messages.length - 1]
  if (!last || last.role !== 'assistant') {
    throw new ServiceError('invalid_request', `items[${index}].steps: the last message must be the assistant's response`)
  }
  let parts: string[]
  let sep = ''
  if (Array.isArray(steps)) parts = steps
  else {
    const content = last.content
    if (typeof content !== 'string' && content.some((p) => p.type !== 'text')) {
      throw new ServiceError('invalid_request', `items[${index}].steps: a separator needs a text-only response`)
    }
    const text = typeof content === 'string' ? content : content.map((p) => (p.type === 'text' ? p.text : '')).join('')
    parts = text.split(steps.separator)
    sep = steps.separator
    if (parts.length > MAX_STEPS) throw new ServiceError('invalid_request', `items[${index}].steps: ${parts.length} steps; the limit is ${MAX_STEPS}`)
  }
  const prompt = messages.slice(0, -1)
  return parts.map((_, k) => [prompt, [{ role: 'assistant', content: parts.slice(0, k + 1).join(sep) }]])
}

export default async function scoreRoute(app: FastifyInstance) {
  app.post('/v1/score', async (request) => {
    if (isVllmScoreBody(request.body)) return vllmScore(app, request, parseBody(VllmScoreRequestSchema, request.body))
    const body = parseBody(ScoreRequestSchema, request.body)
    // rows of item i: [first, first + count); an item with steps has one row per step, the last = the response
    const spans: Array<{ first: number; count: number; steps: boolean }> = []
    const rows: ScoreRow[] = []
    body.items.forEach((it, i) => {
      const own = it.steps ? stepRows(it.messages, it.steps, i) : [[it.messages]]
      spans.push({ first: rows.length, count: own.length, steps: it.steps !== undefined })
      rows.push(...own)
    })
    const run = scoringRequest(app, request, { model: body.model, rows: rows.length, normalize: body.normalize })
    const all = await run.score(rows)
    const scored = spans.map((s) => all[s.first + s.count - 1]!)
    const z = run.z
    return {
      model: run.ref,
      normalized: z !== null,
      scores: scored.map((s) => s.score),
      results: scored.map((s, index) => {
        const span = spans[index]!
        const steps = span.steps ? all.slice(span.first, span.first + span.count).map((r) => r.score) : null
        return {
          index,
          score: s.score,
          ...(z ? { normalized_score: z(s.score) } : {}),
          tokens: s.tokens,
          truncated: s.truncated,
          ...(steps ? { step_scores: steps, ...(z ? { normalized_step_scores: steps.map(z) } : {}) } : {}),
        }
      }),
    }
  })
}
