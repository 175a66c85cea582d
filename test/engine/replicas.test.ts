// ENGINE_REPLICAS (src/engine/replicas.ts): the dispatch rule as a table, then the engine over recording fakes.
import t from 'tap'
import { pickReplica, ReplicatedEngine } from '../../src/engine/replicas.ts'
import type { Engine, LoadedGraphs, PackedRewardFeeds, RewardFeeds, RewardOutput } from '../../src/engine/types.ts'

t.test('pickReplica: stored embeddings pin replica 0; otherwise the least busy, ties in cyclic order from start', async (t) => {
  const table: Array<[number[], boolean, number, number]> = [
    [[0], false, 0, 0],
    [[0], true, 0, 0],
    [[0, 0], false, 0, 0],
    [[0, 0], false, 1, 1],
    [[0, 0], true, 1, 0],
    [[1, 0], false, 0, 1],
    [[0, 1], false, 1, 0],
    [[0, 5], true, 1, 0],
    [[2, 2, 1], false, 0, 2],
    [[1, 2, 2], false, 2, 0],
    [[2, 1, 1], false, 0, 1],
    [[2, 1, 1], false, 2, 2],
    [[1, 1, 2], false, 2, 0],
    [[1, 1, 1], false, 4, 1],
  ]
  for (const [inFlight, store, start, want] of table) {
    t.equal(pickReplica(inFlight, store, start), want, `${JSON.stringify(inFlight)} store=${store} start=${start}`)
  }
})

const graphs: LoadedGraphs = {
  reward: { inputNames: [], outputNames: [], executionProvider: 'fake', fallbacks: [] },
  vision: { inputNames: [], outputNames: [], executionProvider: 'fake', fallbacks: [] },
}

/** Records what reaches it; runs can be held open so that several are in flight at once. */
class Recorder implements Engine {
  calls: string[] = []
  loaded = new Set<string>()
  failLoad = false
  alive = true
  closed = false
  #gate: Promise<void> | null = null
  #open: () => void = () => {}
  constructor(readonly packed = true) {
    if (!packed) this.runRewardPacked = undefined
  }
  hold() {
    this.#gate = new Promise((r) => (this.#open = r))
  }
  release() {
    this.#open()
    this.#gate = null
  }
  async load(key: string) {
    this.calls.push(`load ${key}`)
    if (this.failLoad) throw new Error('no provider')
    this.loaded.add(key)
    return graphs
  }
  async unload(key: string) {
    this.calls.push(`unload ${key}`)
    this.loaded.delete(key)
  }
  async #run(op: string): Promise<RewardOutput> {
    this.calls.push(op)
    if (this.#gate) await this.#gate
    return { scores: new Float32Array(1), inferenceMs: 0 }
  }
  runReward(_key: string, f: RewardFeeds) {
    return this.#run(f.imageRefs?.length ? 'reward+refs' : 'reward')
  }
  runRewardPacked?: (key: string, f: PackedRewardFeeds) => Promise<RewardOutput> = (_key, f) =>
    this.#run(f.imageRefs?.length ? 'packed+refs' : 'packed')
  async runVision() {
    this.calls.push('vision')
    return { embeds: new Float32Array(4), tokens: 1, dim: 4, inferenceMs: 0 }
  }
  async encodeImage() {
    this.calls.push('encodeImage')
    return { tokens: 1, dim: 4, inferenceMs: 0, evicted: [] }
  }
  retainImages() {
    this.calls.push('retain')
  }
  releaseImages() {
    this.calls.push('release')
  }
  transferStats() {
    return { toEngine: 10, fromEngine: 1, handedBack: 3 }
  }
  async health() {
    return this.alive
  }
  async close() {
    this.closed = true
  }
}

const feeds = (refs = false) =>
  ({
    rows: 1,
    seqLen: 1,
    inputIds: new BigInt64Array(1),
    imageEmbeds: new Float32Array(0),
    embedRows: 0,
    dim: 4,
    imagePositions: new BigInt64Array(1),
    imMask: new Float32Array(1),
    attentionMask: new BigInt64Array(1),
    readoutIndex: new BigInt64Array(1),
    ...(refs ? { imageRefs: [{ handle: 'h', row: 0, tokens: 1 }] } : {}),
  }) as RewardFeeds

t.test('text runs spread over the replicas by runs in flight; runs naming stored embeddings stay on replica 0', async (t) => {
  const [a, b] = [new Recorder(), new Recorder()]
  const e = new ReplicatedEngine([a, b])
  a.hold()
  b.hold()
  const runs = [e.runReward('m/1', feeds()), e.runReward('m/1', feeds()), e.runReward('m/1', feeds(true)), e.runReward('m/1', feeds())]
  t.same(a.calls, ['reward', 'reward+refs'], 'the first text run, and the run with refs although replica 0 is then the busier')
  t.same(b.calls, ['reward', 'reward'], 'the second text run (replica 1 idle) and the fourth (replica 0 busier)')
  t.same(e.runs, [2, 2])
  a.release()
  b.release()
  await Promise.all(runs)
  const packed = e.runRewardPacked!('m/1', feeds(true) as unknown as PackedRewardFeeds)
  await packed
  t.equal(a.calls.at(-1), 'packed+refs')
})

t.test('runs sent one at a time take turns, so a warm-up or golden check runs every replica', async (t) => {
  const rs = [new Recorder(), new Recorder(), new Recorder()]
  const e = new ReplicatedEngine(rs)
  for (let i = 0; i < 6; i++) await e.runReward('m/1', feeds())
  t.same(e.runs, [2, 2, 2])
  t.ok(rs.every((r) => r.calls.length === 2))
})

t.test('media work and pins go to replica 0 only', async (t) => {
  const [a, b] = [new Recorder(), new Recorder()]
  const e = new ReplicatedEngine([a, b])
  await e.runVision('m/1', new Float32Array(3), 1, 1)
  await e.encodeImage('m/1', 'h', 7, new Float32Array(3), 1, 1)
  e.retainImages(7, ['h'])
  e.releaseImages(7)
  t.same(a.calls, ['vision', 'encodeImage', 'retain', 'release'])
  t.same(b.calls, [])
})

t.test('a version loads on every replica or on none', async (t) => {
  const [a, b, c] = [new Recorder(), new Recorder(), new Recorder()]
  const e = new ReplicatedEngine([a, b, c])
  t.same(await e.load('m/1', { reward: 'r', vision: 'v' }), graphs)
  t.ok([a, b, c].every((r) => r.loaded.has('m/1')))
  b.failLoad = true
  await t.rejects(e.load('m/2', { reward: 'r', vision: 'v' }), /no provider/)
  t.ok([a, b, c].every((r) => !r.loaded.has('m/2')), 'the replicas that loaded m/2 unloaded it again')
  t.ok(a.calls.includes('unload m/2') && c.calls.includes('unload m/2'))
  await e.unload('m/1')
  t.ok([a, b, c].every((r) => !r.loaded.has('m/1')))
})

t.test('health, close, transfer counts and the packed run cover every replica', async (t) => {
  const [a, b] = [new Recorder(), new Recorder()]
  const e = new ReplicatedEngine([a, b])
  t.equal(await e.health(), true)
  b.alive = false
  t.equal(await e.health(), false, 'one dead replica makes the engine unhealthy (readiness follows)')
  t.same(e.transferStats(), { toEngine: 20, fromEngine: 2, handedBack: 6 })
  await e.close()
  t.ok(a.closed && b.closed)
  t.ok(new ReplicatedEngine([new Recorder(), new Recorder()]).runRewardPacked)
  t.notOk(new ReplicatedEngine([new Recorder(), new Recorder(false)]).runRewardPacked, 'no packed run unless every replica has one')
  t.throws(() => new ReplicatedEngine([]))
})
