// Rows of different requests that share a prefix run as one packed row: the pure queue view (coalesceQueue,
// table-tested), then the batcher with a held fake engine that has the packed graph — which rows are packed
// together, that each caller gets its own row's score, and that a cancelled or failing member costs only itself.
import t from 'tap'
import { coalesceQueue, isCoalesced, type Coalescable } from '../../src/scheduler/coalesce.ts'
import { Batcher } from '../../src/scheduler/batcher.ts'
import type { PackedRewardFeeds, RewardOutput } from '../../src/engine/types.ts'
import { ServiceError } from '../../src/errors.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import type { BatchModel, EncodedRow } from '../../src/scheduler/types.ts'
import { FakeEngine, fakeRowScore } from '../helpers/fake-engine.ts'

const PROMPT = Array.from({ length: 20 }, (_, i) => 100 + i)
const row = (...ids: number[]): EncodedRow => ({ ids: Int32Array.from(ids), images: [] })
const answer = (k: number, len = 3) => row(...PROMPT, ...Array.from({ length: len }, (_, i) => 500 + 10 * k + i))

interface Q extends Coalescable {
  name: string
}
const q = (name: string, r: EncodedRow | null, shareKey: string | null = 'm/1', cancelled = false): Q => ({ name, row: r, shareKey, cancelled })
/** The view as names: a group is its members' names joined with '+'. */
const names = (view: ReadonlyArray<Q | { members: Q[] }>) => view.map((x) => (isCoalesced(x as Q) ? (x as { members: Q[] }).members.map((m) => m.name).join('+') : (x as Q).name))

t.test('coalesceQueue: which queued rows become one packed row', async (t) => {
  const other = row(...Array.from({ length: 23 }, (_, i) => 900 + i))
  const cases: Array<[string, Q[], string[]]> = [
    ['rows sharing the prompt, at the first member, others in place', [q('a', answer(1)), q('x', other), q('b', answer(2)), q('c', answer(3))], ['a+b+c', 'x']],
    ['one row alone is not a group', [q('a', answer(1)), q('x', other)], ['a', 'x']],
    ['different share keys (model versions) never meet', [q('a', answer(1), 'm/1'), q('b', answer(2), 'm/2')], ['a', 'b']],
    ['a null share key is never packed', [q('a', answer(1), null), q('b', answer(2)), q('c', answer(3))], ['a', 'b+c']],
    ['cancelled rows are left out (and keep their place)', [q('a', answer(1), 'm/1', true), q('b', answer(2)), q('c', answer(3))], ['a', 'b+c']],
    ['vision work (no row) is left alone', [q('v', null), q('b', answer(2)), q('c', answer(3))], ['v', 'b+c']],
    ['fewer shared positions than MIN_SHARED (8): no group', [q('a', row(1, 2, 3, 4, 5, 6, 7, 10)), q('b', row(1, 2, 3, 4, 5, 6, 7, 20))], ['a', 'b']],
    ['two prompts, two groups', [q('a', answer(1)), q('p', row(7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1)), q('b', answer(2)), q('r', row(7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2))], ['a+b', 'p+r']],
  ]
  for (const [what, queue, want] of cases) t.same(names(coalesceQueue(queue)), want, what)

  const plain = [q('a', answer(1)), q('x', other)]
  t.equal(coalesceQueue(plain), plain, 'nothing to pack: the queue itself comes back (no copy per pump)')
  // a packed row no shorter than its rows is not sent: the trunk runs to the last position any branch shares
  // with the longest row, and every branch is padded to the longest branch — 8 shared, then two rows of 40 that
  // differ: trunk 47 + 3 branches x 40 = 167 positions against 9 + 48 + 48 = 105 apart
  const tail = (base: number) => Array.from({ length: 40 }, (_, i) => base + i)
  const P8 = [1, 2, 3, 4, 5, 6, 7, 8]
  const wide = [q('s', row(...P8, 9)), q('l', row(...P8, ...tail(300))), q('m', row(...P8, ...tail(400)))]
  t.same(names(coalesceQueue(wide)), ['s', 'l', 'm'], 'not packed when the packed row is not shorter')
  // equal is not shorter: trunk 8 + 20 - 1 = 27, branches 1, 1 and 9 padded to 9: 27 + 3 x 9 = 54 = 9 + 28 + 17
  const even = [q('s', row(...P8, 9)), q('l', row(...P8, ...tail(300).slice(0, 20))), q('m', row(...P8, ...tail(400).slice(0, 9)))]
  t.same(names(coalesceQueue(even)), ['s', 'l', 'm'], 'not packed when the packed row is just as long')
  even[2] = q('m', row(...P8, ...tail(400).slice(0, 8)))
  t.same(names(coalesceQueue(even)), ['s+l+m'], 'packed when one position shorter (27 + 3 x 8 = 51 < 53)')
  // clusterByPrefix orders rows by their ids; the group keeps queue order (branch k = the k-th queued member)
  t.same(names(coalesceQueue([q('b', answer(2)), q('x', other), q('a', answer(1))])), ['b+a', 'x'], 'members in queue order, at the first')
  const g = coalesceQueue([q('a', answer(1)), q('b', answer(2, 5))])[0] as unknown as { packed: { trunk: EncodedRow; branches: Array<{ start: number; row: EncodedRow }> } }
  t.same([...g.packed.trunk.ids], [...answer(2, 5).ids.subarray(0, 24)], 'the trunk: the longest row up to its reward token')
  t.same(
    g.packed.branches.map((b) => [b.start, [...b.row.ids]]),
    [
      [20, [510, 511, 512]],
      [24, [524]],
    ],
    'branch k is member k: where it leaves the trunk, and its own positions after that',
  )
})

/** FakeEngine with reward_packed.onnx: each branch scores as its whole row would (trunk up to its start, then
 *  its own positions), so a caller's score tells whether it got its own branch. */
class PackedEngine extends FakeEngine {
  /** branches of each packed row run, per run */
  readonly packedRuns: number[][] = []
  /** rows of this length score NaN (a model that fails on one row) */
  poison: number | null = null

  async runRewardPacked(_key: string, f: PackedRewardFeeds): Promise<RewardOutput> {
    const scores = new Float32Array(f.rows * f.branches)
    const perRow: number[] = []
    for (let r = 0; r < f.rows; r++) {
      let live = 0
      for (let k = 0; k < f.branches; k++) {
        const own: number[] = []
        for (let j = 0; j < f.branchLen; j++) {
          const at = (r * f.branches + k) * f.branchLen + j
          if (f.branchMask[at] === 1n) own.push(Number(f.inputIds[r * f.seqLen + f.trunkLen + k * f.branchLen + j]))
        }
        if (own.length === 0) continue
        live++
        const start = Number(f.branchStart[r * f.branches + k])
        const ids = [...Array.from({ length: start }, (_, i) => Number(f.inputIds[r * f.seqLen + i])), ...own]
        scores[r * f.branches + k] = this.poison === ids.length ? NaN : fakeRowScore(ids)
      }
      perRow.push(live)
    }
    this.packedRuns.push(perRow)
    await this.runStarted(f.rows)
    return { scores, inferenceMs: 0.1 }
  }
}

const model: BatchModel = { key: 'm/1', name: 'm', version: 1, manifest: { tokenizer: { pad_id: 0 }, config: { hidden_size: 4 } } }
const far = () => performance.now() + 60_000

function setup(packAcrossRequests = true) {
  const engine = new PackedEngine()
  const b = new Batcher({
    engine,
    limits: { maxBatchTokens: 4096, maxBatchSize: 32, maxQueueDelayMs: 0 },
    pipelineDepth: 1,
    packAcrossRequests,
    maxPendingItems: 64,
    maxPendingImages: 4,
    retryAfterS: 1,
    metrics: createMetrics(),
    log: { error: () => {} },
  })
  return { b, engine }
}
const own = (r: EncodedRow) => Math.fround(fakeRowScore(r.ids))

t.test('batcher: rows of separate requests sharing a prompt, queued while the engine is busy, run as one packed row', async (t) => {
  const { b, engine } = setup()
  engine.hold()
  const busy = b.submit(model, row(1, 2, 3), far(), undefined, 0)
  await engine.started(1)
  const rows = [1, 2, 3, 4].map((k) => answer(k, k))
  // four requests (share groups 1..4), one sample each, as OpenRLHF sends a GRPO group
  const got = rows.map((r, i) => b.submit(model, r, far(), undefined, i + 1))
  await new Promise((r) => setImmediate(r))
  t.equal(b.queueDepth, 4, 'queued one by one')
  engine.release()
  await busy
  const res = await Promise.all(got)
  t.same(engine.packedRuns, [[4]], 'one packed run, one row of four branches')
  t.same(
    res.map((r) => r.score),
    rows.map(own),
    "each caller gets its own row's score",
  )
  t.ok(res.every((r) => r.queueMs >= 0 && r.batchSize === 1))
})

t.test("batcher: PACK_ACROSS_REQUESTS off -> only a request's own rows are packed; no share group -> never", async (t) => {
  const { b, engine } = setup(false)
  engine.hold()
  const busy = b.submit(model, row(1, 2, 3), far(), undefined, 0)
  await engine.started(1)
  const rows = [1, 2, 3, 4, 5, 6].map((k) => answer(k))
  const got = [
    b.submit(model, rows[0]!, far(), undefined, 7), // request 7: two rows
    b.submit(model, rows[1]!, far(), undefined, 7),
    b.submit(model, rows[2]!, far(), undefined, 8), // request 8: one row
    b.submit(model, rows[3]!, far()), // no share group (packed: false, or no packed graph)
    b.submit(model, rows[4]!, far()),
    b.submit(model, rows[5]!, far(), undefined, 9),
  ]
  engine.release()
  await busy
  t.same(
    (await Promise.all(got)).map((r) => r.score),
    rows.map(own),
  )
  t.same(engine.packedRuns, [[2]], "request 7's two rows packed; the others ran as plain rows")
  t.equal(engine.rowsRun.length, 1 + 4, 'the busy row and four plain rows')
})

t.test('batcher: a member that leaves the queue is left out of the packed row; the others are scored', async (t) => {
  const { b, engine } = setup()
  engine.hold()
  const busy = b.submit(model, row(1, 2, 3), far(), undefined, 0)
  await engine.started(1)
  const gone = new AbortController()
  const rows = [1, 2, 3].map((k) => answer(k))
  const stays = [b.submit(model, rows[0]!, far(), undefined, 1), b.submit(model, rows[2]!, far(), undefined, 3)]
  const leaves = b.submit(model, rows[1]!, far(), gone.signal, 2).catch((e: unknown) => e)
  gone.abort()
  const late = b.submit(model, answer(4), performance.now() + 5, undefined, 4).catch((e: unknown) => e)
  await new Promise((r) => setTimeout(r, 20))
  engine.release()
  await busy
  t.equal(((await leaves) as ServiceError).code, 'client_closed')
  t.equal(((await late) as ServiceError).code, 'timeout', 'a member past its own deadline times out on its own')
  t.same(
    (await Promise.all(stays)).map((r) => r.score),
    [own(rows[0]!), own(rows[2]!)],
  )
  t.same(engine.packedRuns, [[2]], 'two branches: the client that left and the expired row were not run')
})

t.test('batcher: a non-finite score fails only its own caller, not the other requests packed with it', async (t) => {
  const { b, engine } = setup()
  engine.hold()
  const busy = b.submit(model, row(1, 2, 3), far(), undefined, 0)
  await engine.started(1)
  engine.poison = PROMPT.length + 5
  const ok = b.submit(model, answer(1), far(), undefined, 1)
  const bad = b.submit(model, answer(2, 5), far(), undefined, 2).catch((e: unknown) => e)
  engine.release()
  await busy
  t.equal((await ok).score, own(answer(1)))
  const e = (await bad) as ServiceError
  t.equal(e.code, 'engine_error')
  t.match(e.message, /non-finite score \(NaN\)/)
  t.same(engine.packedRuns, [[2]])
})
