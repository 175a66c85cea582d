// POST /get_reward — OpenRLHF's remote reward protocol (--remote_rm_url / --reward.remote_url). Each `query` is
// parsed back into messages with the policy's template and scored through the same path as /v1/score
// (cross-request batching included, which is what makes OpenRLHF's one-request-per-sample traffic cheap).
// Answers {rewards, scores, extra_logs} in input order. Whole rollouts (OpenRLHF <= 0.9 posts 1024 queries,
// TRL and verl 256) are admitted by token cost and scored in pieces (src/scoring/service.ts).
import type { FastifyInstance } from 'fastify'
import type { Message } from '../../conversation/types.ts'
import { ServiceError } from '../../errors.ts'
import { DETECTED_TEMPLATE_NAMES, QueryParseError, parseQuery } from '../../rlhf/query-template.ts'
import { mergeShaping, shapeReward } from '../../rlhf/reward-shaping.ts'
import { sigmoid } from '../../scoring/normalize.ts'
import { parseBody } from '../schemas/common.ts'
import { GetRewardRequestSchema, GetRewardUrlSchema } from '../schemas/get-reward.ts'
import { scoringRequest } from '../scoring-request.ts'

/** extra_logs keys, always all present: OpenRLHF merges the answers of its shards by the first answer's keys
 *  (KeyError when another lacks one) and turns every value into a tensor (numbers only, one per sample). */
const LOG_KEYS = ['raw_reward', 'response_tokens', 'length_penalty', 'clipped', 'truncated'] as const
const TEMPLATE_KEYS = DETECTED_TEMPLATE_NAMES.map((n) => `template_${n}`)

function emptyLogs(): Record<string, number[]> {
  return Object.fromEntries([...LOG_KEYS, ...TEMPLATE_KEYS].map((k) => [k, []]))
}

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
      const parsed = queries.map((q, i) => {
        try {
          return parseQuery(q, prompts[i], templateName)
        } catch (err) {
          if (err instanceof QueryParseError) throw new ServiceError('invalid_request', `query[${i}]: ${err.message}`)
          throw err
        }
      })
      conversations = parsed.map((p) => p.messages)
      templates = parsed.map((p) => p.template)
    }

    const shapingEcho = { template: templateName, ...shaping, scores: app.config.rlhf.scores }
    if (conversations.length === 0) {
      return { rewards: [], scores: [], extra_logs: emptyLogs(), shaping: shapingEcho, templates: [] }
    }

    const { maxQueries, maxRequestTokens } = app.config.rlhf
    const run = scoringRequest(app, request, {
      model: body.model ?? url.model,
      rows: conversations.length,
      normalize: shaping.normalize,
      pieces: { rows: app.config.maxClientBatchSize, maxTokens: maxRequestTokens, maxRows: maxQueries },
    })
    // Prompt and response are separate groups of the row (as /v1/rank does) so the response length is known
    // without a second tokenization.
    const scored = await run.score(conversations.map((c) => [c.slice(0, -1), c.slice(-1)]))
    const responseTokens = scored.map((s) => s.groupTokens[1]!)

    const shaped = scored.map((s, i) => shapeReward(s.score, responseTokens[i]!, shaping, run.z ?? undefined))
    const rewards = shaped.map((s) => s.reward)
    const extraLogs: Record<string, number[]> = {
      raw_reward: scored.map((s) => s.score),
      response_tokens: responseTokens,
      length_penalty: shaped.map((s) => s.lengthPenalty),
      clipped: shaped.map((s) => (s.clipped ? 1 : 0)),
      truncated: scored.map((s) => (s.truncated ? 1 : 0)),
    }
    // The template each sample was read with, one-hot (its mean in OpenRLHF's logs = the share of samples).
    for (const name of DETECTED_TEMPLATE_NAMES) extraLogs[`template_${name}`] = templates.map((t) => (t === name ? 1 : 0))
    return {
      rewards,
      scores: app.config.rlhf.scores === 'sigmoid' ? rewards.map(sigmoid) : rewards,
      extra_logs: extraLogs,
      model: run.ref,
      shaping: shapingEcho,
      templates,
    }
  })
}
