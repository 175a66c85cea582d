// Rows that different requests queued and that share a prefix -> one packed row, as the scoring service already
// does within one request. RL trainers send a GRPO group's samples as separate calls (OpenRLHF's remote reward
// function per micro-batch, one call per sample from async reward managers), so within a request there is often
// nothing to share while the queue holds the whole group. Pure: the batcher builds this view of its queue before
// each policy decision, so a group grows with every sample that arrives while the engine is busy, and rows the
// policy does not take stay queued as they came.
import { clusterByPrefix, packedLength, shareRows, type PackedRow } from './pack-shared.ts'
import type { EncodedRow } from './types.ts'

/** Rows sharing fewer leading positions than this are not worth a packed row. */
export const MIN_SHARED = 8
/** Branches per packed row: bounds its attention tensors ([heads, branches, L, P + L] per layer). */
export const MAX_BRANCHES = 128

export interface Coalescable {
  /** Rows of one key may be packed together (the model version); null: never packed with others (packed rows
   *  already, vision work, rows of a model without the packed graph or of a request that opted out). */
  readonly shareKey: string | null
  readonly row: EncodedRow | null
  readonly cancelled: boolean
}

export interface Coalesced<J> {
  /** In queue order; branch k of `packed` is members[k]'s row. */
  members: J[]
  packed: PackedRow
}

export function isCoalesced<J extends Coalescable>(x: J | Coalesced<J>): x is Coalesced<J> {
  return Array.isArray((x as Partial<Coalesced<J>>).members)
}

/** The queue with each set of two or more live rows of one shareKey that share at least minShared leading
 *  positions (clusterByPrefix) replaced by one Coalesced entry at the place of its earliest member, where the
 *  packed row is shorter than its rows together (rows cut on the left share little). Everything else keeps its
 *  place; with nothing to pack, the queue itself comes back. */
export function coalesceQueue<J extends Coalescable>(
  queue: readonly J[],
  minShared = MIN_SHARED,
  maxBranches = MAX_BRANCHES,
): ReadonlyArray<J | Coalesced<J>> {
  const byKey = new Map<string, number[]>()
  queue.forEach((j, i) => {
    if (j.shareKey === null || j.row === null || j.cancelled) return
    const at = byKey.get(j.shareKey)
    if (at) at.push(i)
    else byKey.set(j.shareKey, [i])
  })
  const groupAt = new Map<number, Coalesced<J>>()
  const grouped = new Set<number>()
  for (const at of byKey.values()) {
    if (at.length < 2) continue
    for (const g of clusterByPrefix(
      at.map((i) => queue[i]!.row!),
      minShared,
      maxBranches,
    )) {
      const members = g.map((k) => at[k]!).sort((a, b) => a - b)
      const packed = shareRows(members.map((i) => queue[i]!.row!))
      if (packedLength(packed) >= members.reduce((n, i) => n + queue[i]!.row!.ids.length, 0)) continue
      groupAt.set(members[0]!, { members: members.map((i) => queue[i]!), packed })
      for (const i of members) grouped.add(i)
    }
  }
  if (groupAt.size === 0) return queue
  const out: Array<J | Coalesced<J>> = []
  queue.forEach((j, i) => {
    const g = groupAt.get(i)
    if (g) out.push(g)
    else if (!grouped.has(i)) out.push(j)
  })
  return out
}
