// POST /get_reward request shapes: OpenRLHF's exact payload ({query, prompts, labels}, lists that may be empty)
// plus a native variant for multimodal policies ({messages: one conversation per sample, media as parts}).
// Shaping can come from the URL query string, because OpenRLHF posts to --remote_rm_url as given and has no
// other way to pass options.
import { z } from 'zod'
import { ConversationSchema, ModelFieldSchema } from './common.ts'
import { QUERY_TEMPLATE_NAMES } from '../../rlhf/query-template.ts'
import { ClipSchema, LengthPenaltySchema, parseClipSpec, parseLengthPenaltySpec, specField } from '../../rlhf/reward-shaping.ts'

export const GetRewardOptionsSchema = z
  .object({
    normalize: z.boolean().optional(),
    clip: ClipSchema.nullable().optional(),
    length_penalty: LengthPenaltySchema.nullable().optional(),
  })
  .strict()

export const GetRewardRequestSchema = z
  .object({
    query: z.array(z.string()).optional(),
    prompts: z.array(z.string()).nullish(),
    // The dataset's label column; a reward model does not use it, but OpenRLHF always sends it.
    labels: z.unknown().optional(),
    messages: z.array(ConversationSchema).optional(),
    template: z.enum(QUERY_TEMPLATE_NAMES).optional(),
    options: GetRewardOptionsSchema.optional(),
    model: ModelFieldSchema,
  })
  .refine((b) => (b.query === undefined) !== (b.messages === undefined), 'give either query (OpenRLHF) or messages (native), not both')
  .refine(
    (b) => !b.query || !b.prompts || b.prompts.length === 0 || b.prompts.length === b.query.length,
    'prompts must be empty or as long as query',
  )

export type GetRewardRequest = z.infer<typeof GetRewardRequestSchema>

const urlBool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')

const urlNumber = z
  .string()
  .regex(/^-?[\d.]+(?:e-?\d+)?$/i, 'a number')
  .transform(Number)
  .pipe(z.number().finite())

/** ?template=qwen2&normalize=true&clip=-5:5&length_penalty=512:0.001&model=name — no value needs a comma,
 *  because OpenRLHF splits --remote_rm_url at commas (several servers). clip_min/clip_max are the same clip
 *  as two parameters; give both. */
export const GetRewardUrlSchema = z
  .object({
    template: z.enum(QUERY_TEMPLATE_NAMES).optional(),
    normalize: urlBool.optional(),
    clip: specField(parseClipSpec).optional(),
    clip_min: urlNumber.optional(),
    clip_max: urlNumber.optional(),
    length_penalty: specField(parseLengthPenaltySpec).optional(),
    model: ModelFieldSchema,
  })
  .refine((u) => (u.clip_min === undefined) === (u.clip_max === undefined), 'give both clip_min and clip_max')
  .refine((u) => u.clip_min === undefined || u.clip === undefined, 'give clip or clip_min/clip_max, not both')
  .refine((u) => u.clip_min === undefined || u.clip_min <= u.clip_max!, 'clip_min must be <= clip_max')
  .transform(({ clip_min, clip_max, ...u }) => (clip_min === undefined ? u : { ...u, clip: { min: clip_min, max: clip_max! } }))
