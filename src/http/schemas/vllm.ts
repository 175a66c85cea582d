// Request shapes of vLLM's pooling API (vllm/entrypoints/pooling/*/protocol.py), which this server also speaks
// so that clients written for vLLM's reward/classifier serving work unchanged: POST /pooling, /classify, /score
// (and its body on /v1/score), /rerank (Jina/Cohere shape, also /v1/rerank and /v2/rerank).
//
// Chat content comes in OpenAI's form (text, image_url, video_url parts; a data: URL inlines the bytes) and is
// turned into this server's messages here. Knobs that only mean something to vLLM's engine (truncation,
// priority, cache_salt, chat_template, ...) are accepted and ignored, as vLLM ignores unknown fields: this
// server always keeps the end of an over-long conversation (the reward is read at the last token).
import { z } from 'zod'
import type { Content, Message, Part } from '../../conversation/types.ts'
import { PartSchema } from './common.ts'

const urlOf = (v: string | { url: string }) => (typeof v === 'string' ? v : v.url)
const UrlField = z.union([z.string().min(1), z.object({ url: z.string().min(1) }).loose()])

/** data: URLs carry the bytes inline; anything else is a remote reference (MEDIA_URLS_ENABLED decides). */
function mediaPart(type: 'image' | 'video', url: string): Part {
  return url.startsWith('data:') ? { type, data: url } : { type, url }
}

export const OpenAIPartSchema = z.union([
  z.object({ type: z.literal('image_url'), image_url: UrlField }).loose().transform((p): Part => mediaPart('image', urlOf(p.image_url))),
  z.object({ type: z.literal('video_url'), video_url: UrlField }).loose().transform((p): Part => mediaPart('video', urlOf(p.video_url))),
  PartSchema, // text parts, and this server's own image/video parts
])

const OpenAIContentSchema = z.union([z.string(), z.array(OpenAIPartSchema).min(1)])

/** One OpenAI chat message. `developer` is OpenAI's newer name for `system`; `content: null` (an assistant turn
 *  that only called tools) is empty text. Other roles are passed on, and refused by the conversation schema. */
export const OpenAIMessageSchema = z
  .object({ role: z.string().min(1), content: OpenAIContentSchema.nullish() })
  .loose()
  .transform((m): Message => ({ role: (m.role === 'developer' ? 'system' : m.role) as Message['role'], content: (m.content ?? '') as Content }))

const ModelField = z.string().min(1).max(200).nullish()

/** vLLM's activation switch (`use_activation`; `activation` is its older name, still sent by some clients). */
const activationFields = {
  use_activation: z.boolean().nullish(),
  activation: z.boolean().nullish(),
}
export const wantsActivation = (b: { use_activation?: boolean | null; activation?: boolean | null }, byDefault: boolean) =>
  b.use_activation ?? b.activation ?? byDefault

/** Completion-style input: one text or several; token ids are recognised to refuse them clearly. */
const CompletionInput = z.union([
  z.string(),
  z.array(z.string()).min(1),
  z.array(z.number().int()).min(1),
  z.array(z.array(z.number().int()).min(1)).min(1),
])

const inputOrMessages = <T extends { input?: unknown; messages?: unknown }>(b: T) => (b.input === undefined) !== (b.messages === undefined)
const INPUT_OR_MESSAGES = 'give either input (text) or messages (one chat conversation), not both'

export const PoolingRequestSchema = z
  .object({
    model: ModelField,
    input: CompletionInput.optional(),
    messages: z.array(OpenAIMessageSchema).min(1).optional(),
    /** A reward model pools one value per sequence: classify / reward (vLLM's older name) or none. */
    task: z.enum(['classify', 'reward']).nullish(),
    ...activationFields,
  })
  .loose()
  .refine(inputOrMessages, INPUT_OR_MESSAGES)
export type PoolingRequest = z.infer<typeof PoolingRequestSchema>

export const ClassifyRequestSchema = z
  .object({
    model: ModelField,
    input: CompletionInput.optional(),
    messages: z.array(OpenAIMessageSchema).min(1).optional(),
    ...activationFields,
  })
  .loose()
  .refine(inputOrMessages, INPUT_OR_MESSAGES)
export type ClassifyRequest = z.infer<typeof ClassifyRequestSchema>

/** A score/rerank input: text, or vLLM's multimodal `{content: [parts]}`. */
const ScoreInput = z.union([z.string(), z.object({ content: z.array(OpenAIPartSchema).min(1) }).loose().transform((x) => x.content)])
const ScoreInputs = z.union([ScoreInput.transform((x): Content[] => [x]), z.array(ScoreInput).min(1)])

/** vLLM's /score body under any of its four spellings: queries+documents, queries+items, data_1+data_2,
 *  text_1+text_2. Queries are the prompts (user turns), documents the responses scored against them. */
export const VllmScoreRequestSchema = z
  .object({
    model: ModelField,
    queries: ScoreInputs.optional(),
    documents: ScoreInputs.optional(),
    items: ScoreInputs.optional(),
    data_1: ScoreInputs.optional(),
    data_2: ScoreInputs.optional(),
    text_1: ScoreInputs.optional(),
    text_2: ScoreInputs.optional(),
    ...activationFields,
  })
  .loose()
  .transform((b, ctx) => {
    const pairs: Array<[Content[] | undefined, Content[] | undefined]> = [
      [b.queries, b.documents ?? b.items],
      [b.data_1, b.data_2],
      [b.text_1, b.text_2],
    ]
    const given = pairs.filter(([q, d]) => q !== undefined && d !== undefined)
    if (given.length !== 1) {
      ctx.addIssue({ code: 'custom', message: 'give one pair: queries + documents (or items), data_1 + data_2, or text_1 + text_2' })
      return z.NEVER
    }
    const [queries, documents] = given[0] as [Content[], Content[]]
    if (queries.length !== 1 && queries.length !== documents.length) {
      ctx.addIssue({ code: 'custom', path: ['documents'], message: `${queries.length} queries need 1 or ${queries.length} documents, got ${documents.length}` })
      return z.NEVER
    }
    return { model: b.model, queries, documents, use_activation: b.use_activation, activation: b.activation }
  })
export type VllmScoreRequest = z.infer<typeof VllmScoreRequestSchema>

/** True when a /v1/score body is vLLM's (it has none of this server's `items`). */
export const isVllmScoreBody = (body: unknown) =>
  typeof body === 'object' && body !== null && !('items' in body) && ['queries', 'data_1', 'text_1'].some((k) => k in body)

const RerankDocument = z.union([
  z.string(),
  z.object({ text: z.string() }).loose().transform((d) => d.text),
  z.object({ content: z.array(OpenAIPartSchema).min(1) }).loose().transform((d) => d.content),
])

/** Jina / Cohere / vLLM rerank: one query, documents ranked by the reward of answering it with each. */
export const RerankRequestSchema = z
  .object({
    model: ModelField,
    query: ScoreInput,
    documents: z.array(RerankDocument).min(1),
    top_n: z.number().int().min(0).nullish(),
    return_documents: z.boolean().nullish(),
    ...activationFields,
  })
  .loose()
export type RerankRequest = z.infer<typeof RerankRequestSchema>
