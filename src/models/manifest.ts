// The service's reading of models/README.md (the trainer <-> service contract). Fields the service uses are
// validated strictly; unknown extra fields are tolerated so the trainer can add evidence without a release.
import { z } from 'zod'

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const Dim = z.union([z.number().int().nonnegative(), z.string().min(1)])

/** Float type of a model's graphs and of their float inputs/outputs: float32 (every EP; the only one the CPU EP
 *  serves) or float16 (GPU EPs; models/README.md §Large models). */
export const ModelDtype = z.enum(['float32', 'float16'])
export type ModelDtype = z.infer<typeof ModelDtype>

const TensorSpecSchema = z.object({
  name: z.string().min(1),
  dtype: z.enum(['float32', 'float16', 'int64']),
  shape: z.array(Dim),
})

const GraphSchema = z.object({
  file: z.string().min(1),
  inputs: z.array(TensorSpecSchema).min(1),
  outputs: z.array(TensorSpecSchema).min(1),
  // Large-model exports (trainer onnx_large.py); absent = the top-level dtype, eager attention, weights inline.
  dtype: ModelDtype.optional(),
  attention: z.enum(['eager', 'com.microsoft.GroupQueryAttention', 'com.microsoft.MultiHeadAttention']).default('eager'),
  /** ONNX external data files beside the graph (ORT opens them from the graph's folder); each is listed and
   *  hashed in `files`. */
  external_data: z.array(z.string().min(1)).default([]),
})

export const REWARD_INPUTS = [
  'input_ids',
  'image_embeds',
  'image_positions',
  'im_mask',
  'attention_mask',
  'readout_index',
] as const
export const REWARD_PACKED_INPUTS = [
  'input_ids',
  'image_embeds',
  'image_positions',
  'im_mask',
  'attention_mask',
  'branch_start',
  'branch_mask',
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
  // The control pieces' strings: only read by template.content_special_tokens = "published", where a literal
  // "</s>" in content becomes eos_id as the published slow tokenizer makes it.
  control_pieces: z
    .object({ bos: z.string().min(1), eos: z.string().min(1), unk: z.string().min(1) })
    .default({ bos: '<s>', eos: '</s>', unk: '<unk>' }),
  // Strings the published tokenizer maps to ids past the embedding table (InternLM2's added tokens
  // <|im_start|> … <|plugin|>, ids 92544–92549 ≥ vocab 92544): under content_special_tokens = "published" content
  // holding one is refused (422 content_token_out_of_range) where the published get_score fails on the GPU.
  out_of_table_tokens: z.array(z.string().min(1)).default([]),
})

const TemplateSchema = z.object({
  turn: z
    .string()
    .refine((s) => s.includes('{role}') && s.includes('{content}'), 'turn must contain {role} and {content}'),
  roles: z.array(z.string().min(1)).min(1),
  strip_content: z.boolean(),
  prefix_ids: z.array(z.number().int().nonnegative()),
  suffix_ids: z.array(z.number().int().nonnegative()).min(1),
  // inline: BOS, then each turn with its media where the part is (after the turn header). ixc: the published
  // apply_chat_template: BOS, then the media, then `[UNUSED_TOKEN_146]user\n…` for one media item; media parts
  // act as `<ImageHere>` markers when there are several (models/README.md §Text).
  media_placement: z.enum(['inline', 'ixc']),
  // keep: "…[UNUSED_TOKEN_145]\n" then EOS (the `\n` stays, id 364 for InternLM2); strip: the whitespace before
  // EOS is removed, as transformers ≤ 4.33 does when eos_token is a plain string in special_tokens_map.json.
  eos_newline: z.enum(['keep', 'strip']).default('keep'),
  // literal (safe): no content can produce a control id: `[UNUSED_TOKEN_*]` and other atomic pieces in content
  // are split apart, `</s>` and friends stay characters. published: as the published get_score with its pinned
  // slow tokenizer: atomic pieces and `<s>`/`</s>`/`<unk>` become their ids, `<ImageHere>` is a media marker
  // (ixc placement), tokenizer.out_of_table_tokens are refused with 422.
  content_special_tokens: z.enum(['literal', 'published']).default('literal'),
})

export const ModelManifestSchema = z
  .looseObject({
    format_version: z.literal(1),
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
    version: z.number().int().positive(),
    architecture: z.string().min(1),
    created: z.string().optional(),
    files: z.record(z.string(), z.object({ sha256: Sha256, bytes: z.number().int().nonnegative() })),
    dtype: ModelDtype.default('float32'),
    // reward_packed (optional, graph version 2): a trunk and branches per row with several readouts, used for
    // shared-prompt groups and step rewards (models/README.md "reward_packed.onnx"); without it rows run one by one.
    graphs: z.object({
      vision: GraphSchema,
      reward: GraphSchema,
      reward_packed: GraphSchema.extend({ version: z.literal(2) }).optional(),
    }),
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
  .superRefine(checkLargeModelFields)

/** The trainer's _check_large (manifest.py), same rules: each graph's dtype and every float input/output equal
 *  the top-level dtype; every external data file is listed (so hashed) in `files`. */
function checkLargeModelFields(
  m: {
    dtype: ModelDtype
    files: Record<string, unknown>
    graphs: Record<'vision' | 'reward', z.infer<typeof GraphSchema>>
  },
  ctx: z.RefinementCtx,
): void {
  for (const g of ['vision', 'reward'] as const) {
    const graph = m.graphs[g]
    if ((graph.dtype ?? m.dtype) !== m.dtype) {
      ctx.addIssue({ code: 'custom', path: ['graphs', g, 'dtype'], message: `must equal the model dtype ${m.dtype}` })
    }
    for (const [side, specs] of [['inputs', graph.inputs], ['outputs', graph.outputs]] as const) {
      specs.forEach((s, i) => {
        if (s.dtype !== 'int64' && s.dtype !== m.dtype) {
          ctx.addIssue({ code: 'custom', path: ['graphs', g, side, i, 'dtype'], message: `float tensors must be ${m.dtype}` })
        }
      })
    }
    graph.external_data.forEach((f, i) => {
      if (!(f in m.files)) {
        ctx.addIssue({ code: 'custom', path: ['graphs', g, 'external_data', i], message: `${f} is not listed (and hashed) in files` })
      }
    })
  }
}

export type ModelManifest = z.infer<typeof ModelManifestSchema>
export type GraphName = 'vision' | 'reward'
