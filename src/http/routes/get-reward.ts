// POST /get_reward — OpenRLHF's remote reward protocol (--remote_rm_url / --reward.remote_url). Each `query` is
// parsed back into messages with the policy's template and scored through the same path as /v1/score
// (cross-request batching included, which is what makes OpenRLHF's one-request-per-sample traffic cheap).
// Answers {rewards, scores, extra_logs} in input order. Whole rollouts (OpenRLHF <= 0.9 posts 1024 queries,
// TRL and verl 256) are admitted by token cost and scored in pieces (src/scoring/service.ts).
import type { FastifyInstance } from 'fastify'
import type { Message } from '../../conversation/types.ts'
import { ServiceError } from '../../errors.ts'
import { DETECTED_TEMPLATE_NAMES, QueryParseError, parseQuery } from '../../rlhf/query-template.ts'
import { advantagesAnswer, checkGroup, GroupSchema } from '../../rlhf/group-advantage.ts'
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

    // GRPO advantages: the body's group, else the URL's group_size (OpenRLHF can only set the URL)
    const group =
      body.group ??
      (url.group_size !== undefined ? GroupSchema.parse({ size: url.group_size, on: url.advantage_on }) : undefined)
    const advOn = group?.on ?? url.advantage_on ?? 'shaped'
    if (advOn === 'normalized') throw new ServiceError('invalid_request', 'group.on: /get_reward has raw or shaped rewards (normalize is part of shaping)')
    if (group) checkGroup(conversations.length, group)
    const shapingEcho = { template: templateName, ...shaping, scores: app.config.rlhf.scores }
    if (conversations.length === 0) {
      const logs = emptyLogs()
      if (group) Object.assign(logs, { advantage: [], advantage_dr_grpo: [] })
      const advantages = group ? { advantages: advantagesAnswer(group, advOn, []) } : {}
      return { rewards: [], scores: [], extra_logs: logs, shaping: shapingEcho, templates: [], ...advantages }
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
    // A GRPO batch repeats each prompt once per sample: identical prompts become one group object, so the prompt
    // is tokenized and its media resolved once, and its rows pack into one reward_packed.onnx row.
    const prompts = new Map<string, Message[]>()
    const rows = conversations.map((c) => {
      const p = c.slice(0, -1)
      const key = JSON.stringify(p)
      if (!prompts.has(key)) prompts.set(key, p)
      return [prompts.get(key)!, c.slice(-1)]
    })
    const scored = await run.score(rows)
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
    const advantages = group && advantagesAnswer(group, advOn, advOn === 'raw' ? extraLogs.raw_reward! : rewards)
    if (advantages) {
      extraLogs.advantage = advantages.grpo
      extraLogs.advantage_dr_grpo = advantages.dr_grpo
    }
    return {
      rewards,
      scores: app.config.rlhf.scores === 'sigmoid' ? rewards.map(sigmoid) : rewards,
      extra_logs: extraLogs,
      model: run.ref,
      shaping: shapingEcho,
      templates,
      ...(advantages ? { advantages } : {}),
    }
  })
}
