// Fills the media segments of a conversation through the media hook (src/preprocess/media/types.ts
// MediaResolver): routes never touch images or video themselves.
import type { MediaContext, MediaResolver } from '../preprocess/media/types.ts'
import type { Segment } from './types.ts'

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

/** Positions a run of segments takes in a row (text ids + media blocks): a response's length as the RM sees
 *  it, for the length penalty and best-of-N diagnostics. */
export function segmentTokens(segments: readonly Segment[]): number {
  return segments.reduce((n, s) => n + (s.kind === 'text' ? s.ids.length : s.kind === 'media' ? (s.block?.tokens ?? 0) : 0), 0)
}
