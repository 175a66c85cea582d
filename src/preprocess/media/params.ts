// The manifest's `preprocess.image` / `preprocess.video` (opaque to the model loader) validated into the
// parameter types the image and video modules take. Parsed once per manifest object.
import { z } from 'zod'
import { issuesText, ServiceError } from '../../errors.ts'
import { checkImageParams, type ImagePreprocessParams } from '../image/hd-transform.ts'
import { checkVideoParams, type VideoPreprocessParams } from '../video/layout.ts'

const Rgb = z.array(z.number().int().min(0).max(255)).length(3)
const Triple = z.array(z.number()).length(3)

export const ImageParamsSchema = z.looseObject({
  tile_size: z.number().int().positive(),
  patch_size: z.number().int().positive(),
  hd_num: z.number().int().positive(),
  hd_num_multi: z.number().int().positive(),
  resize: z.string(),
  pad_color: Rgb,
  pad_side: z.string(),
  transpose_portrait: z.boolean(),
  mean: Triple,
  std: Triple.refine((s) => s.every((v) => v > 0), 'std must be positive'),
})

export const VideoParamsSchema = z.looseObject({
  fps: z.number().positive(),
  max_frames: z.number().int().positive(),
  frame_long_side: z.number().int().positive(),
  layout: z.string(),
  header_height: z.number().int().nonnegative(),
  gap: z.number().int().nonnegative(),
  line_width: z.number().int().nonnegative(),
  label_scale: z.number().int().positive(),
  label_font: z.object({
    width: z.number().int().positive(),
    height: z.number().int().positive(),
    glyphs: z.record(z.string(), z.array(z.string())),
  }),
})

export interface MediaParams {
  image: ImagePreprocessParams
  video: VideoPreprocessParams
}

const parsed = new WeakMap<object, MediaParams>()

// A model whose manifest has no usable preprocessing section cannot take media: 422 unsupported_modality with the
// reason (the model loader keeps `preprocess` opaque, so this is where it is checked).
export function mediaParamsOf(manifest: { preprocess?: { image?: unknown; video?: unknown } }): MediaParams {
  const hit = parsed.get(manifest)
  if (hit) return hit
  try {
    const image = ImageParamsSchema.parse(manifest.preprocess?.image) as ImagePreprocessParams
    const video = VideoParamsSchema.parse(manifest.preprocess?.video) as VideoPreprocessParams
    checkImageParams(image)
    checkVideoParams(video)
    const out = { image, video }
    parsed.set(manifest, out)
    return out
  } catch (err) {
    const why = err instanceof z.ZodError ? issuesText(err.issues.slice(0, 4)) : (err as Error).message
    throw new ServiceError('unsupported_modality', `this model cannot take images or video (manifest preprocess section: ${why})`)
  }
}
