import { z } from 'zod'
import { ContentSchema, ConversationSchema, ModelFieldSchema, PromptSchema } from './common.ts'
import { LengthControlSchema } from '../../rlhf/length-control.ts'
import { GroupSchema } from '../../rlhf/group-advantage.ts'

/** Step-level rewards: the reward the model gives if the response (the last, assistant message) ended after each
 *  step. A list: the steps, whose concatenation is the response (the message's own content is replaced); or a
 *  separator that splits the message's text. At most MAX_STEPS steps. */
export const MAX_STEPS = 256
export const StepsSchema = z.union([
  z.array(z.string()).min(1).max(MAX_STEPS),
  z.object({ separator: z.string().min(1) }).strict(),
])
export type StepsSpec = z.infer<typeof StepsSchema>

export const ScoreRequestSchema = z.object({
  model: ModelFieldSchema,
  items: z.array(z.object({ messages: ConversationSchema, steps: StepsSchema.optional() })).min(1),
  normalize: z.boolean().default(false),
})
export type ScoreRequest = z.infer<typeof ScoreRequestSchema>

export const CompareRequestSchema = z
  .object({
    model: ModelFieldSchema,
    prompt: PromptSchema.optional(),
    responses: z.tuple([ContentSchema, ContentSchema]).optional(),
    conversations: z.tuple([ConversationSchema, ConversationSchema]).optional(),
    normalize: z.boolean().default(false),
  })
  .refine(
    (r) => (r.conversations !== undefined) !== (r.prompt !== undefined && r.responses !== undefined),
    'give either prompt + responses (two) or conversations (two)',
  )
  .refine((r) => r.conversations === undefined || (r.prompt === undefined && r.responses === undefined), 'conversations excludes prompt and responses')
export type CompareRequest = z.infer<typeof CompareRequestSchema>

export const RankRequestSchema = z.object({
  model: ModelFieldSchema,
  prompt: PromptSchema,
  candidates: z.array(ContentSchema).min(1),
  normalize: z.boolean().default(false),
  /** Optional length-controlled pick (src/rlhf/length-control.ts), reported next to the plain best. */
  length_control: LengthControlSchema.optional(),
  /** GRPO group advantages over the candidates (src/rlhf/group-advantage.ts); `on`: raw (default) | normalized */
  group: GroupSchema.optional(),
})
export type RankRequest = z.infer<typeof RankRequestSchema>
