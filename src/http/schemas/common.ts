// Request shapes shared by the scoring routes (zod). Content is a string or a list of typed parts; media parts
// are accepted here and handed to the media resolver (src/preprocess/media/types.ts).
import { z } from 'zod'
import type { Message } from '../../conversation/types.ts'
import { validationError } from '../../errors.ts'

export const TextPartSchema = z.object({ type: z.literal('text'), text: z.string() })

const mediaSource = {
  data: z.string().min(1).optional(),
  file: z.string().min(1).optional(),
  url: z.string().min(1).optional(),
  // media this server has received before, by the sha256 of its file bytes (lower-cased here)
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'sha256 must be 64 hex digits (the sha256 of the file bytes)')
    .transform((s) => s.toLowerCase())
    .optional(),
}
const oneSource = (p: { data?: string; file?: string; url?: string; sha256?: string }) =>
  [p.data, p.file, p.url, p.sha256].filter((x) => x !== undefined).length === 1

const mediaPart = <T extends 'image' | 'video'>(type: T) =>
  z.object({ type: z.literal(type), ...mediaSource }).refine(oneSource, `${type} part needs exactly one of data, file, url, sha256`)

export const PartSchema = z.discriminatedUnion('type', [TextPartSchema, mediaPart('image'), mediaPart('video')])

export const ContentSchema = z.union([z.string(), z.array(PartSchema).min(1)])

// OpenAI / TRL tool calling: an assistant turn may carry tool_calls (content null), a `tool` turn the result.
const ToolCallSchema = z.object({
  type: z.string().optional(),
  id: z.string().optional(),
  function: z.object({ name: z.string(), arguments: z.unknown().optional() }),
})

/**
 * One chat message. The reward model's template ([UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n) was
 * trained on system / user / assistant turns only and has no tool tokens, so tool traffic is rendered into
 * those: a `tool` message is a user turn (input the assistant answers, as /get_reward's query parser treats
 * tool/ipython/environment turns), `content: null` is empty text, and each tool call is appended to the
 * assistant's text as one JSON line {"name", "arguments"} (the text most chat templates put between their
 * tool-call markers).
 */
export const MessageSchema = z
  .object({
    role: z.enum(['system', 'user', 'assistant', 'tool']),
    content: ContentSchema.nullable(),
    tool_calls: z.array(ToolCallSchema).nullish(),
    name: z.string().nullish(),
    tool_call_id: z.string().nullish(),
  })
  .transform((m): Message => {
    const role = m.role === 'tool' ? 'user' : m.role
    const calls = (m.tool_calls ?? []).map((c) => JSON.stringify({ name: c.function.name, arguments: toolArguments(c.function.arguments) }))
    if (calls.length === 0) return { role, content: m.content ?? '' }
    const text = calls.join('\n')
    if (m.content === null || m.content === '') return { role, content: text }
    if (typeof m.content === 'string') return { role, content: `${m.content}\n${text}` }
    return { role, content: [...m.content, { type: 'text', text: `\n${text}` }] }
  })

/** Arguments arrive as an object (TRL) or as a JSON string (OpenAI); both render as the same JSON. */
function toolArguments(a: unknown): unknown {
  if (typeof a !== 'string') return a ?? {}
  try {
    return JSON.parse(a)
  } catch {
    return a
  }
}

/** A scored conversation: its last message is the assistant response being scored. */
export const ConversationSchema = z
  .array(MessageSchema)
  .min(1)
  .refine((ms) => ms[ms.length - 1]!.role === 'assistant', 'the last message must be the assistant response to score')

/** A prompt: a string (one user turn) or messages; parsed into messages either way. */
export const PromptSchema = z
  .union([z.string(), z.array(MessageSchema).min(1)])
  .transform((p): Message[] => (typeof p === 'string' ? [{ role: 'user', content: p }] : p))

export const ModelFieldSchema = z.string().min(1).max(200).optional()

export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body)
  if (!r.success) throw validationError(r.error.issues)
  return r.data
}
