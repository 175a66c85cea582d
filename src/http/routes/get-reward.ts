// POST /get_reward — OpenRLHF's remote reward protocol (--remote_rm_url / --reward.remote_url). Each `query` is parsed back into messages with the policy's
// template and scored through the same path as /v1/score (cross-request batching included, which is what makes
// OpenRLHF's one-request-per-sample traffic cheap). Answers {rewards, scores, extra_logs} in input order;
// empty lists get empty lists (multi-server sharding sends them).
import type { FastifyInstance } from 'fastify'
import type { Message } from '../../conversation/types.ts'
import { ServiceError } from '../../errors.ts'
import { QueryParseError, detectQueryTemplate, parseQuery, resolveQueryTemplate } from '../../rlhf/query-template.ts'
import { mergeShaping, shapeReward } from '../../rlhf/reward-shaping.ts'
import { sigmoid } from '../../scoring/normalize.ts'
import { parseBody } from '../schemas/common.ts'
import { GetRewardRequestSchema, GetRewardUrlSchema } from '../schemas/get-reward.ts'
import { scoringRequest } from '../scoring-request.ts'

export default async function getRewardRoute(app: FastifyInstance) {
  app.post('/get_reward', async (request) => {
    const body = parseBody(GetRewardRequestSchema, request.body)
    const url = parseBody(GetRewardUrlSchema, request.query ?? {})
    const templateName = body.template ?? url.template ?? app.config.rlhf.queryTemplate
    const shaping = mergeShaping(
      mergeShaping(app.config.rlhf.shaping, {
        normalize: url.normalize,
        clip: url.clip,
        length_penalty: url.length_penalty,
      }),
      body.options,
    )

    let conversations: Message[][]
    let templates: string[]
    if (body.messages) {
      conversations = body.messages
      templates = conversations.map(() => 'messages')
    } else {
      const queries = body.query!
      const prompts = body.prompts ?? []
      const fixed = resolveQueryTemplate(templateName)
      conversations = queries.map((q, i) => {
        try {
          return parseQuery(q, prompts[i], templateName)
        } catch (err) {
          if (err instanceof QueryParseError) throw new ServiceError('invalid_request', `query[${i}]: ${err.message}`)
          throw err
        }
      })
      templates = queries.map((q) => {
        const t = fixed === 'auto' ? detectQueryTemplate(q) : fixed
        return t === 'plain' ? 'plain' : t.name
      })
    }

    const shapingEcho = { template: templateName, ...shaping, scores: app.config.rlhf.scores }
    if (conversations.length === 0) {
      return { rewards: [], scores: [], extra_logs: {}, shaping: shapingEcho, templates: [] }
    }

    const run = scoringRequest(app, request, { model: body.model ?? url.model, rows: conversations.length, normalize: shaping.normalize })
    // Prompt and response are separate groups of the row (as /v1/rank does) so the response length is known
    // without a second tokenization.
    const scored = await run.score(conversations.map((c) => [c.slice(0, -1), c.slice(-1)]))
    const responseTokens = scored.map((s) => s.groupTokens[1]!)

    const shaped = scored.map((s, i) => shapeReward(s.score, responseTokens[i]!, shaping, run.z ?? undefined))
    const rewards = shaped.map((s) => s.reward)
    return {
      rewards,
      scores: app.config.rlhf.scores === 'sigmoid' ? rewards.map(sigmoid) : rewards,
      // Per-sample numbers only: OpenRLHF turns every value into a tensor and logs its mean.
      extra_logs: {
        raw_reward: scored.map((s) => s.score),
        response_tokens: responseTokens,
        length_penalty: shaped.map((s) => s.lengthPenalty),
        clipped: shaped.map((s) => (s.clipped ? 1 : 0)),
        truncated: scored.map((s) => (s.truncated ? 1 : 0)),
      },
      model: run.ref,
      shaping: shapingEcho,
      templates,
    }
  })
}
