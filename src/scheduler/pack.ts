// Encoded rows -> the reward.onnx feeds of one right-padded batch (models/README.md). Pure; used by the
// batcher, the warm-up and bench/ so that all three feed the graph exactly the same way.
import type { ImageRef, RewardFeeds } from '../engine/types.ts'
import type { EncodedRow } from './types.ts'

export function packRewardBatch(rows: readonly EncodedRow[], padId: number, dim: number): RewardFeeds {
  const b = rows.length
  let t = 1
  for (const r of rows) t = Math.max(t, r.ids.length)
  const { embedRows, imageEmbeds, imageRefs } = imageFeeds(rows, dim)
  const inputIds = new BigInt64Array(b * t).fill(BigInt(padId))
  const imagePositions = new BigInt64Array(b * t)
  const imMask = new Float32Array(b * t)
  const attentionMask = new BigInt64Array(b * t)
  // int64 tensors are written through 32-bit views (low word, little-endian; ids and positions are small and
  // non-negative): BigInt boxing per element would dominate packing time for large batches.
  const ids32 = new Int32Array(inputIds.buffer)
  const pos32 = new Int32Array(imagePositions.buffer)
  const att32 = new Int32Array(attentionMask.buffer)
  const readoutIndex = new BigInt64Array(b)
  let embedAt = 0
  rows.forEach((r, i) => {
    const base = i * t
    const len = r.ids.length
    for (let j = 0; j < len; j++) {
      ids32[2 * (base + j)] = r.ids[j]!
      att32[2 * (base + j)] = 1
    }
    readoutIndex[i] = BigInt(len - 1)
    embedAt = placeImages(r.images, base, { imageEmbeds, imageRefs, pos32, imMask, dim }, embedAt)
  })
  return { rows: b, seqLen: t, inputIds, imageEmbeds, embedRows, dim, imageRefs, imagePositions, imMask, attentionMask, readoutIndex }
}

/** The image_embeds of a batch before placing: its row count and a buffer for the inline blocks. Blocks held by
 *  the engine (handles) are placed as refs, so a batch of them only sends an empty buffer; a text-only batch
 *  sends one zero row (the graph's minimum). */
export function imageFeeds(rows: Iterable<EncodedRow>, dim: number): { embedRows: number; imageEmbeds: Float32Array; imageRefs: ImageRef[] } {
  let m = 0
  let inline = false
  for (const r of rows) {
    for (const img of r.images) {
      m += img.block.tokens
      if (img.block.embeds) inline = true
    }
  }
  const embedRows = Math.max(1, m)
  return { embedRows, imageEmbeds: new Float32Array(inline || m === 0 ? embedRows * dim : 0), imageRefs: [] }
}

/** Writes a row's media blocks at `base` (its first position in the flat [rows, seqLen] arrays): their embeddings
 *  into image_embeds from row `embedAt` on (or a ref for the engine to fill), their positions and im_mask. Returns the next free embedding row.
 *  Shared by the padded (reward.onnx) and packed (reward_packed.onnx) layouts. */
export function placeImages(
  images: EncodedRow['images'],
  base: number,
  out: { imageEmbeds: Float32Array; imageRefs: ImageRef[]; pos32: Int32Array; imMask: Float32Array; dim: number },
  embedAt: number,
): number {
  const { imageEmbeds, pos32, imMask, dim } = out
  for (const img of images) {
    const { tokens, embeds } = img.block
    if (img.block.dim !== dim) throw new Error(`image block width ${img.block.dim} != model width ${dim} (this is a bug)`)
    if (embeds) imageEmbeds.set(embeds.subarray(0, tokens * dim), embedAt * dim)
    else out.imageRefs.push({ handle: img.block.handle, row: embedAt, tokens })
    for (let k = 0; k < tokens; k++) {
      pos32[2 * (base + img.start + k)] = embedAt + k
      imMask[base + img.start + k] = 1
    }
    embedAt += tokens
  }
  return embedAt
}
