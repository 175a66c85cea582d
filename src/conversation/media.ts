// THE MEDIA HOOK. Routes never touch images or video themselves: every media part of a conversation goes
// through the MediaResolver injected with buildApp(config, { mediaResolver }). It turns parts into image-token
// blocks (decode -> IXC HD transform -> vision.onnx via ctx.engine.runVision). Until the image/video path
// lands, the default resolver refuses with 422 unsupported_modality.
import { ServiceError } from '../errors.ts'
import type { Engine } from '../engine/types.ts'
import type { ModelVersion } from '../models/model-version.ts'
import type { MediaBlock, MediaPart, Segment } from './types.ts'
import type { MediaRequestScope } from '../preprocess/media/request-scope.ts'

export interface MediaContext {
  /** The model version the request started on (manifest.preprocess, engine key `model.key`). */
  model: ModelVersion
  engine: Engine
  /** Aborted when the client goes away or the deadline passes: stop decoding and give resources back. */
  signal: AbortSignal
  /** State shared by all conversations of one request (uploads, media budget); see
   *  src/preprocess/media/request-scope.ts. */
  scope?: MediaRequestScope
}

export interface MediaResolver {
  /** All media parts of ONE conversation, in order (the count picks hd_num vs hd_num_multi). Returns one block
   *  per part, same order. Throws ServiceError (4xx) for bad media. */
  resolve(parts: readonly MediaPart[], ctx: MediaContext): Promise<MediaBlock[]>
  /** Releases what the resolver holds (worker threads); called when the app closes. */
  close?(): Promise<void>
}

export const unsupportedMediaResolver: MediaResolver = {
  async resolve(parts) {
    const kinds = [...new Set(parts.map((p) => p.type))].join(' and ')
    throw new ServiceError('unsupported_modality', `${kinds} input is not supported by this server yet`)
  },
}

/** Fills the media segments of `segments` in place with the resolver's blocks. Returns the preprocess and
 *  vision inference time spent. */
export async function resolveSegments(
  segments: Segment[],
  resolver: MediaResolver,
  ctx: MediaContext,
): Promise<{ preprocessMs: number; inferenceMs: number }> {
  const media = segments.filter((s): s is Extract<Segment, { kind: 'media' }> => s.kind === 'media')
  if (media.length === 0) return { preprocessMs: 0, inferenceMs: 0 }
  const blocks = await resolver.resolve(
    media.map((s) => s.part),
    ctx,
  )
  if (blocks.length !== media.length) {
    throw new Error(`media resolver returned ${blocks.length} blocks for ${media.length} parts (this is a bug)`)
  }
  let preprocessMs = 0
  let inferenceMs = 0
  media.forEach((s, i) => {
    const b = blocks[i]!
    s.block = b
    preprocessMs += b.preprocessMs
    inferenceMs += b.inferenceMs
  })
  return { preprocessMs, inferenceMs }
}
