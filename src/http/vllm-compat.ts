// What the vLLM-compatible routes share (/pooling, /classify, /score, /rerank): turning their inputs into scoring
// rows, vLLM's response envelope (id, object, created, model, usage) and its activation default. All of them
// score through the same ScoringService as the native routes (cross-request batching, admission, deadlines).
//
// Scores: vLLM applies sigmoid to a one-logit classifier unless the request says `use_activation: false`, and
// /classify, /score and /rerank keep that default so that thresholds written for vLLM mean the same here.
// /pooling returns the raw reward logit by default, as vLLM's reward pooler does (`use_activation: true` gives
// the sigmoid). The native routes (/v1/score, /get_reward, ...) always answer raw logits.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Content, Message } from '../conversation/types.ts'
import { ServiceError } from '../errors.ts'
import { QueryParseError, parseQuery } from '../rlhf/query-template.ts'
import { sigmoid } from '../scoring/normalize.ts'
import type { ScoredRow, ScoreRow } from '../scoring/types.ts'
import { ConversationSchema, parseBody } from './schemas/common.ts'
import type { VllmScoreRequest } from './schemas/vllm.ts'
import { wantsActivation } from './schemas/vllm.ts'
import { scoringRequest, type ScoringRequest } from './scoring-request.ts'

/** vLLM's ids: `<prefix>-<32 hex>`. */
export const vllmId = (prefix: string) => `${prefix}-${randomUUID().replace(/-/g, '')}`
export const nowSeconds = () => Math.floor(Date.now() / 1000)

/** vLLM's UsageInfo: every scored position is a prompt token; nothing is generated. */
export function usage(rows: readonly ScoredRow[]) {
  const prompt = rows.reduce((a, r) => a + r.tokens, 0)
  return { prompt_tokens: prompt, total_tokens: prompt, completion_tokens: 0, prompt_tokens_details: null }
}

/** The envelope of /pooling, /classify and /score answers. */
export function envelope<T>(prefix: string, run: ScoringRequest, data: T[], rows: readonly ScoredRow[]) {
  return { id: vllmId(prefix), object: 'list' as const, created: nowSeconds(), model: run.ref.name, data, usage: usage(rows) }
}

/** Completion-style or chat-style input as conversations (one scoring row each). A text input is a whole
 *  chat-templated conversation (what `tokenizer.apply_chat_template(..., tokenize=False)` gives): its template
 *  is detected and parsed back into messages, as /get_reward does with OpenRLHF's queries. */
export function conversationsOf(body: { input?: unknown; messages?: Message[] }): Message[][] {
  if (body.messages) return [parseBody(ConversationSchema, body.messages)]
  const input = body.input
  const texts = typeof input === 'string' ? [input] : (input as unknown[])
  if (texts.some((x) => typeof x !== 'string')) {
    throw new ServiceError('invalid_request', 'token-id input is not supported: send the text, or messages', {}, 'input')
  }
  return (texts as string[]).map((text, i) => {
    try {
      return parseQuery(text, undefined, 'auto').messages
    } catch (err) {
      if (err instanceof QueryParseError) {
        throw new ServiceError(
          'invalid_request',
          `input[${i}]: ${err.message}; send a chat-templated conversation (prompt and response turns) or messages`,
          {},
          `input[${i}]`,
        )
      }
      throw err
    }
  })
}

/** Scores whole conversations (one row each). */
export async function scoreConversations(app: FastifyInstance, request: FastifyRequest, model: string | null | undefined, convs: Message[][]) {
  const run = scoringRequest(app, request, { model: model ?? undefined, rows: convs.length, normalize: false })
  const rows = await run.score(convs.map((c) => [c]))
  return { run, rows }
}

/** Scores each (query, document) pair as a user prompt and the assistant's answer. One query shared by many
 *  documents is one message group, tokenized (and its media resolved) once. */
export async function scorePairs(
  app: FastifyInstance,
  request: FastifyRequest,
  model: string | null | undefined,
  queries: readonly Content[],
  documents: readonly Content[],
) {
  const prompts: Message[][] = queries.map((q) => [{ role: 'user', content: q }])
  const rows: ScoreRow[] = documents.map((d, i) => [prompts[queries.length === 1 ? 0 : i]!, [{ role: 'assistant', content: d }]])
  const run = scoringRequest(app, request, { model: model ?? undefined, rows: rows.length, normalize: false })
  return { run, rows: await run.score(rows) }
}

export const activate = (on: boolean) => (x: number) => (on ? sigmoid(x) : x)

/** vLLM's /score answer (also given on /v1/score for a vLLM-shaped body). */
export async function vllmScore(app: FastifyInstance, request: FastifyRequest, body: VllmScoreRequest) {
  const { run, rows } = await scorePairs(app, request, body.model, body.queries, body.documents)
  const f = activate(wantsActivation(body, true))
  return envelope(
    'score',
    run,
    rows.map((r, index) => ({ index, object: 'score' as const, score: f(r.score) })),
    rows,
  )
}
