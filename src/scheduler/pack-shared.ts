// Rows that share a prefix (N responses to one prompt, a response cut after each of its steps) -> one row of
// reward_packed.onnx (graph version 2, models/README.md): the prefix once as the trunk, each row's own rest as a
// branch that sees the trunk up to where it left it, positions continuing from there. Exact by construction: a
// branch attends to the same ids, media and positions as its own row would, so its score is the row's score.
// Pure; used by the batcher's queue view (coalesce.ts), model loading's check and bench/. The trainer's
// collate.share_prefix is the same algorithm (its exporter checks the graph with it).
import type { PackedRewardFeeds } from '../engine/types.ts'
import type { EncodedRow } from './types.ts'
import { imageFeeds, placeImages } from './pack.ts'

type Image = EncodedRow['images'][number]

export interface PackedRow {
  trunk: EncodedRow
  /** `start`: trunk positions the branch sees; `row`: the branch's own positions (images relative to it). */
  branches: Array<{ start: number; row: EncodedRow }>
}

function sameImage(a: Image, b: Image): boolean {
  if (a.start !== b.start || a.block.tokens !== b.block.tokens) return false
  return a.block === b.block || (a.block.handle !== undefined ? a.block.handle === b.block.handle : a.block.embeds === b.block.embeds)
}

/** Positions `x` shares with `ref` from the start (same ids, same media blocks), at most x.length − 1 (each row
 *  keeps its reward token), never ending inside a media block. */
export function sharedPrefix(x: EncodedRow, ref: EncodedRow): number {
  const n = Math.min(x.ids.length - 1, ref.ids.length)
  let a = 0
  while (a < n && x.ids[a] === ref.ids[a]) a++
  // media: a block counts only if the other row has the same block at the same place; never cut one in two
  for (let changed = true; changed; ) {
    changed = false
    for (const [own, other] of [
      [x.images, ref.images],
      [ref.images, x.images],
    ] as const) {
      for (const img of own) {
        if (img.start >= a) continue
        const straddles = img.start + img.block.tokens > a
        if (straddles || !other.some((o) => sameImage(img, o))) {
          a = img.start
          changed = true
        }
      }
    }
  }
  return a
}

function lexCompare(a: Int32Array, b: Int32Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/** Groups of row indices (each of 2 or more, at most `maxBranches`) whose rows share at least `minShared` leading
 *  positions; rows in no group are scored alone. Sorting puts rows with a common prefix next to each other. */
export function clusterByPrefix(rows: readonly EncodedRow[], minShared: number, maxBranches: number): number[][] {
  const order = rows.map((_, i) => i).sort((i, j) => lexCompare(rows[i]!.ids, rows[j]!.ids) || i - j)
  const groups: number[][] = []
  let cur: number[] = []
  const close = () => {
    if (cur.length >= 2) groups.push(cur)
    cur = []
  }
  for (const i of order) {
    if (cur.length > 0) {
      const head = rows[cur[0]!]!
      const shared = Math.min(sharedPrefix(rows[i]!, head), sharedPrefix(head, rows[i]!))
      if (shared < minShared || cur.length >= maxBranches) close()
    }
    cur.push(i)
  }
  close()
  return groups
}

/** One packed row from rows sharing a prefix: the longest row is the trunk (cut at the last position any branch
 *  sees), each row a branch after its shared prefix with it. Branch k is rows[k]. */
export function shareRows(rows: readonly EncodedRow[]): PackedRow {
  let ref = rows[0]!
  for (const r of rows) if (r.ids.length > ref.ids.length) ref = r
  const starts = rows.map((r) => sharedPrefix(r, ref))
  const p = Math.max(...starts)
  const trunk: EncodedRow = { ids: ref.ids.subarray(0, p), images: ref.images.filter((img) => img.start < p) }
  const branches = rows.map((r, k) => {
    const a = starts[k]!
    const images = r.images.filter((img) => img.start >= a).map((img) => ({ start: img.start - a, block: img.block }))
    return { start: a, row: { ids: r.ids.subarray(a), images } }
  })
  return { trunk, branches }
}

/** Positions a packed row costs in a batch (trunk + branches padded to the longest). */
export function packedLength(p: PackedRow): number {
  let l = 1
  for (const b of p.branches) l = Math.max(l, b.row.ids.length)
  return p.trunk.ids.length + p.branches.length * l
}

/** Packed rows -> the reward_packed.onnx feeds of one batch (trunks right-padded to the longest, branch count
 *  and branch length padded to the largest; a padding branch starts at 0 and has no real position). */
export function packPackedBatch(rows: readonly PackedRow[], padId: number, dim: number): PackedRewardFeeds {
  const b = rows.length
  let p = 1
  let nb = 1
  let l = 1
  for (const r of rows) {
    p = Math.max(p, r.trunk.ids.length)
    nb = Math.max(nb, r.branches.length)
    for (const br of r.branches) l = Math.max(l, br.row.ids.length)
  }
  const { embedRows, imageEmbeds, imageRefs } = imageFeeds(rows.flatMap((r) => [r.trunk, ...r.branches.map((br) => br.row)]), dim)
  const t = p + nb * l
  const inputIds = new BigInt64Array(b * t).fill(BigInt(padId))
  const imagePositions = new BigInt64Array(b * t)
  const imMask = new Float32Array(b * t)
  const attentionMask = new BigInt64Array(b * p)
  const branchStart = new BigInt64Array(b * nb)
  const branchMask = new BigInt64Array(b * nb * l)
  const readoutIndex = new BigInt64Array(b * nb)
  // int64 through 32-bit views (low word, little-endian; all values small and non-negative), as pack.ts
  const ids32 = new Int32Array(inputIds.buffer)
  const pos32 = new Int32Array(imagePositions.buffer)
  const bm32 = new Int32Array(branchMask.buffer)
  let embedAt = 0
  const place = (row: EncodedRow, base: number) => {
    for (let j = 0; j < row.ids.length; j++) ids32[2 * (base + j)] = row.ids[j]!
    embedAt = placeImages(row.images, base, { imageEmbeds, imageRefs, pos32, imMask, dim }, embedAt)
  }
  rows.forEach((r, i) => {
    place(r.trunk, i * t)
    attentionMask.fill(1n, i * p, i * p + r.trunk.ids.length)
    r.branches.forEach((br, k) => {
      const at = p + k * l
      place(br.row, i * t + at)
      branchStart[i * nb + k] = BigInt(br.start)
      for (let j = 0; j < br.row.ids.length; j++) bm32[2 * ((i * nb + k) * l + j)] = 1
      readoutIndex[i * nb + k] = BigInt(at + br.row.ids.length - 1)
    })
    for (let k = r.branches.length; k < nb; k++) readoutIndex[i * nb + k] = BigInt(p + k * l)
  })
  return {
    rows: b,
    seqLen: t,
    trunkLen: p,
    branches: nb,
    branchLen: l,
    inputIds,
    imageEmbeds,
    embedRows,
    dim,
    imageRefs,
    imagePositions,
    imMask,
    attentionMask,
    branchStart,
    branchMask,
    readoutIndex,
  }
}
