// The manifest's `preprocess.image` / `preprocess.video` (opaque to the model loader) validated into the
// parameter types the image and video modules take. Parsed once per manifest object.
import { z } from 'zod'
import { issuesText, ServiceError } from '../../errors.ts'
import { checkImageParams, type ImagePreprocessParams } from '../image/hd-transform.ts'
import { checkVideoParams, type VideoPreprocessParams } from '../video/layout.ts'
import { checkPublishedParams, type PublishedVideoParams } from '../video/published.ts'
import type { VideoParams } from '../video/video.ts'

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
  // normalized: EXIF orientation applied, alpha flattened on white, 16-bit grey scaled by 1/257 (ours).
  // published: PIL's Image.open().convert('RGB') and nothing else (image/sharp.ts has each case).
  decode: z.enum(['normalized', 'published']).default('normalized'),
  // What "more than one" counts for hd_num_multi: images (ours) or media = images and videos (published).
  multi_count: z.enum(['images', 'media']).default('images'),
})

const StackVideoParamsSchema = z.looseObject({
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

// layout "published": the published IXC-2.5 video path (video/published.ts); the label font is a model file
const PublishedVideoParamsSchema = z.looseObject({
  layout: z.literal('published'),
  fps: z.number().positive(),
  max_frames: z.number().int().positive(),
  frame_long_side: z.number().int().positive(),
  header_height: z.number().int().nonnegative(),
  gap: z.number().int().nonnegative(),
  line_width: z.number().int().nonnegative(),
  label_font: z.object({ file: z.string().min(1), size: z.number().int().positive() }),
})

export const VideoParamsSchema = z.union([PublishedVideoParamsSchema, StackVideoParamsSchema])

export interface MediaParams {
  image: ImagePreprocessParams
  video: VideoParams
}

const parsed = new WeakMap<object, MediaParams>()

// A model whose manifest has no usable preprocessing section cannot take media: 422 unsupported_modality with the
// reason (the model loader keeps `preprocess` opaque, so this is where it is checked).
export function mediaParamsOf(manifest: { preprocess?: { image?: unknown; video?: unknown }; files?: Record<string, unknown> }): MediaParams {
  const hit = parsed.get(manifest)
  if (hit) return hit
  try {
    const image = ImageParamsSchema.parse(manifest.preprocess?.image) as ImagePreprocessParams
    const video = VideoParamsSchema.parse(manifest.preprocess?.video) as VideoParams
    checkImageParams(image)
    if (video.layout === 'published') {
      checkPublishedParams(video as PublishedVideoParams)
      // a listed file is checksummed by the model loader; an unlisted one could be anything
      if (!manifest.files?.[video.label_font.file]) throw new Error(`label_font.file "${video.label_font.file}" is not listed in files`)
    } else checkVideoParams(video as VideoPreprocessParams)
    const out = { image, video }
    parsed.set(manifest, out)
    return out
  } catch (err) {
    const why = err instanceof z.ZodError ? issuesText(err.issues.slice(0, 4)) : (err as Error).message
    throw new ServiceError('unsupported_modality', `this model cannot take images or video (manifest preprocess section: ${why})`)
  }
}

/** hd_num for the images of a row: hd_num_multi when the row has more than one image (multi_count = images) or
 *  more than one image or video (multi_count = media: the published apply_chat_template sets hd_num 6 when its
 *  media list has more than one item, videos included). */
export function hdNumFor(
  p: Pick<ImagePreprocessParams, 'hd_num' | 'hd_num_multi' | 'multi_count'>,
  parts: ReadonlyArray<{ type: 'image' | 'video' }>,
  rowMedia?: number,
): number {
  const n = p.multi_count === 'media' ? (rowMedia ?? parts.length) : parts.filter((x) => x.type === 'image').length
  return n > 1 ? p.hd_num_multi : p.hd_num
}
