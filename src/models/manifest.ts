// The service's reading of models/README.md (the trainer <-> service contract). Fields the service uses are
// validated strictly; unknown extra fields are tolerated so the trainer can add evidence without a release.
import { z } from 'zod'

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const Dim = z.union([z.number().int().nonnegative(), z.string().min(1)])

const TensorSpecSchema = z.object({
  name: z.string().min(1),
  dtype: z.enum(['float32', 'int64']),
  shape: z.array(Dim),
})

const GraphSchema = z.object({
  file: z.string().min(1),
  inputs: z.array(TensorSpecSchema).min(1),
  outputs: z.array(TensorSpecSchema).min(1),
})

export const REWARD_INPUTS = [
  'input_ids',
  'image_embeds',
  'image_positions',
  'im_mask',
  'attention_mask',
  'readout_index',
] as const
export const REWARD_OUTPUT = 'score'
export const VISION_INPUT = 'image'
export const VISION_OUTPUT = 'image_embeds'

const TokenizerSpecSchema = z.object({
  file: z.string().min(1),
  type: z.literal('sentencepiece-bpe'),
  bos_id: z.number().int().nonnegative(),
  eos_id: z.number().int().nonnegative(),
  pad_id: z.number().int().nonnegative(),
  unk_id: z.number().int().nonnegative(),
  special: z.object({ turn_start: z.string().min(1), turn_end: z.string().min(1), reward: z.string().min(1) }),
  special_ids: z.object({
    turn_start: z.number().int().nonnegative(),
    turn_end: z.number().int().nonnegative(),
    reward: z.number().int().nonnegative(),
  }),
})

const TemplateSchema = z.object({
  turn: z
    .string()
    .refine((s) => s.includes('{role}') && s.includes('{content}'), 'turn must contain {role} and {content}'),
  roles: z.array(z.string().min(1)).min(1),
  strip_content: z.boolean(),
  prefix_ids: z.array(z.number().int().nonnegative()),
  suffix_ids: z.array(z.number().int().nonnegative()).min(1),
  media_placement: z.literal('inline'),
})

export const ModelManifestSchema = z.looseObject({
  format_version: z.literal(1),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  version: z.number().int().positive(),
  architecture: z.string().min(1),
  created: z.string().optional(),
  files: z.record(z.string(), z.object({ sha256: Sha256, bytes: z.number().int().nonnegative() })),
  graphs: z.object({ vision: GraphSchema, reward: GraphSchema }),
  config: z.looseObject({
    hidden_size: z.number().int().positive(),
    vision: z.looseObject({ patch: z.number().int().positive(), tile_size: z.number().int().positive() }),
  }),
  tokenizer: TokenizerSpecSchema,
  template: TemplateSchema,
  max_seq_len: z.number().int().min(4),
  truncation: z.object({ side: z.enum(['left']) }),
  // Image/video preprocessing parameters belong to src/preprocess/{image,video}; kept opaque here except the
  // video layout: "ixc_stack" (this project's layout with a bitmap label font, the default: the embedded model
  // was trained with it) or "published" (the published IXC-2.5 load_video/frame2img/Video_transform).
  preprocess: z.looseObject({
    image: z.record(z.string(), z.unknown()),
    video: z.looseObject({ layout: z.enum(['ixc_stack', 'published']).default('ixc_stack') }),
  }),
  score: z.looseObject({
    readout: z.enum(['last', 'mean']),
    train_stats: z.object({ mean: z.number(), std: z.number().nonnegative(), n: z.number().int().nonnegative() }),
  }),
})

export type ModelManifest = z.infer<typeof ModelManifestSchema>
export type GraphName = 'vision' | 'reward'
