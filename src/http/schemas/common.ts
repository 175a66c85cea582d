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
}
const oneSource = (p: { data?: string; file?: string; url?: string }) =>
  [p.data, p.file, p.url].filter((x) => x !== undefined).length === 1

const mediaPart = <T extends 'image' | 'video'>(type: T) =>
  z.object({ type: z.literal(type), ...mediaSource }).refine(oneSource, `${type} part needs exactly one of data, file, url`)

export const PartSchema = z.discriminatedUnion('type', [TextPartSchema, mediaPart('image'), mediaPart('video')])

export const ContentSchema = z.union([z.string(), z.array(PartSchema).min(1)])

export const MessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: ContentSchema,
})

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
