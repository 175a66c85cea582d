// Start-up loading of the model repository: every models/<name>/<version>/ is validated (manifest schema,
// file sizes + sha256, graph input/output names against the live sessions), warmed up with one real run of
// each graph, and only then published. Any failure marks that version failed with its reason; it never serves.
import { readdir, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { ConversationEncoder } from '../conversation/encode.ts'
import type { Message } from '../conversation/types.ts'
import type { Engine, LoadedGraph } from '../engine/types.ts'
import { issuesText } from '../errors.ts'
import { packRewardBatch } from '../scheduler/pack.ts'
import { packPackedBatch, shareRows } from '../scheduler/pack-shared.ts'
import { imageTokenCount } from '../preprocess/image/hd-transform.ts'
import { HfTextTokenizer } from '../preprocess/text/tokenize.ts'
import { ModelManifestSchema, REWARD_INPUTS, REWARD_PACKED_INPUTS, REWARD_OUTPUT, VISION_INPUT, VISION_OUTPUT, type ModelManifest } from './manifest.ts'
import { autoBatchTokens, modelKey, type ModelVersion } from './model-version.ts'
import type { ModelRegistry } from './registry.ts'
import { ChecksumCache } from './checksums.ts'

export interface LoadOptions {
  engine: Engine
  registry: ModelRegistry
  maxBatchTokens: number
  maxItemChars: number
  /** TOKENIZE_INLINE_CHARS (absent: its default) */
  tokenizeInlineChars?: number
  log: { info(o: object, msg: string): void; error(o: object, msg: string): void; warn(o: object, msg: string): void }
  /** Remembers file hashes across starts (CHECKSUM_CACHE); absent: every file is hashed on every load. */
  checksums?: ChecksumCache
}


export async function versionDirs(root: string): Promise<Array<{ name: string; version: number; dir: string }>> {
  const out: Array<{ name: string; version: number; dir: string }> = []
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const nameDir = path.join(root, name)
    if (!(await stat(nameDir)).isDirectory()) continue
    for (const v of await readdir(nameDir)) {
      const dir = path.join(nameDir, v)
      if (/^[1-9][0-9]*$/.test(v) && (await stat(dir)).isDirectory()) out.push({ name, version: Number(v), dir })
    }
  }
  return out
}

function checkNames(graph: string, side: string, want: string[], got: string[]): void {
  const a = [...want].sort().join(',')
  const b = [...got].sort().join(',')
  if (a !== b) throw new Error(`${graph} ${side}: manifest says [${a}], the ONNX session has [${b}]`)
}

async function verifyFiles(dir: string, m: ModelManifest, checksums: ChecksumCache): Promise<void> {
  const needed = [m.graphs.reward.file, m.graphs.vision.file, m.tokenizer.file, ...(m.graphs.reward_packed ? [m.graphs.reward_packed.file] : [])]
  for (const f of needed) if (!m.files[f]) throw new Error(`manifest.files has no entry for ${f}`)
  for (const [f, want] of Object.entries(m.files)) {
    const file = path.join(dir, f)
    if (path.dirname(path.resolve(file)) !== path.resolve(dir)) throw new Error(`manifest file ${f} escapes the version dir`)
    const st = await stat(file).catch(() => null)
    if (!st?.isFile()) throw new Error(`${f} is missing`)
    if (st.size !== want.bytes) throw new Error(`${f} has ${st.size} bytes, manifest says ${want.bytes}`)
    const got = (await checksums.sha256(file)).sha256
    if (got !== want.sha256) throw new Error(`${f} sha256 ${got} does not match the manifest (${want.sha256})`)
  }
}

function checkManifestGraphs(m: ModelManifest): void {
  checkNames('reward.onnx (manifest)', 'inputs', [...REWARD_INPUTS], m.graphs.reward.inputs.map((i) => i.name))
  checkNames('reward.onnx (manifest)', 'outputs', [REWARD_OUTPUT], m.graphs.reward.outputs.map((i) => i.name))
  if (m.graphs.reward_packed) {
    const p = m.graphs.reward_packed
    checkNames('reward_packed.onnx (manifest)', 'inputs', [...REWARD_PACKED_INPUTS], p.inputs.map((i) => i.name))
    checkNames('reward_packed.onnx (manifest)', 'outputs', [REWARD_OUTPUT], p.outputs.map((i) => i.name))
  }
  checkNames('vision.onnx (manifest)', 'inputs', [VISION_INPUT], m.graphs.vision.inputs.map((i) => i.name))
  checkNames('vision.onnx (manifest)', 'outputs', [VISION_OUTPUT], m.graphs.vision.outputs.map((i) => i.name))
}

function checkSessions(m: ModelManifest, graphs: { reward: LoadedGraph; vision: LoadedGraph; rewardPacked?: LoadedGraph }): void {
  for (const g of ['reward', 'vision'] as const) {
    checkNames(`${g}.onnx`, 'inputs', m.graphs[g].inputs.map((i) => i.name), graphs[g].inputNames)
    checkNames(`${g}.onnx`, 'outputs', m.graphs[g].outputs.map((i) => i.name), graphs[g].outputNames)
  }
  const p = m.graphs.reward_packed
  if (p && graphs.rewardPacked) {
    checkNames('reward_packed.onnx', 'inputs', p.inputs.map((i) => i.name), graphs.rewardPacked.inputNames)
    checkNames('reward_packed.onnx', 'outputs', p.outputs.map((i) => i.name), graphs.rewardPacked.outputNames)
  }
}

/** The graphs' declared element types against the manifest's (a float16 graph under a float32 manifest would
 *  otherwise be fed tensors of the wrong type at the first request). */
function checkSessionDtypes(m: ModelManifest, graphs: { reward: LoadedGraph; vision: LoadedGraph }): void {
  for (const g of ['reward', 'vision'] as const) {
    const types = graphs[g].valueTypes
    if (!types) continue
    for (const spec of [...m.graphs[g].inputs, ...m.graphs[g].outputs]) {
      if (types[spec.name] !== spec.dtype) {
        throw new Error(`${g}.onnx ${spec.name}: the graph has ${types[spec.name]}, manifest says ${spec.dtype} (model dtype ${m.dtype})`)
      }
    }
  }
}

async function saveChecksums(entry: { name: string; version: number }, opts: LoadOptions): Promise<void> {
  const c = opts.checksums
  if (!c) return
  const err = await c.flush()
  if (err) opts.log.warn({ model: `${entry.name}/${entry.version}`, err: err.message }, 'checksum cache not saved (files are hashed again next start)')
  else opts.log.info({ model: `${entry.name}/${entry.version}`, ...c.stats }, 'model files verified')
}

function checkTokenizer(tok: HfTextTokenizer, m: ModelManifest): void {
  // safe mode relies on this: control pieces typed in text (<s>, </s>, <unk>) are plain characters
  const control = new Set([m.tokenizer.bos_id, m.tokenizer.eos_id, m.tokenizer.pad_id, m.tokenizer.unk_id])
  for (const piece of tok.controlPieces) {
    const got = tok.encode(`x${piece}x ${piece}`)
    if (got.some((id) => control.has(id))) throw new Error(`tokenizer turns the text ${JSON.stringify(piece)} into a control id`)
  }
  for (const k of ['turn_start', 'turn_end', 'reward'] as const) {
    const got = tok.encode(m.tokenizer.special[k])
    if (got.length !== 1 || got[0] !== m.tokenizer.special_ids[k]) {
      throw new Error(`tokenizer maps ${m.tokenizer.special[k]} to [${got}], manifest says ${m.tokenizer.special_ids[k]}`)
    }
  }
}

/** One run of each graph on a minimal input; also proves the graphs agree with the manifest's geometry. */
async function warmUp(engine: Engine, model: ModelVersion): Promise<number> {
  const m = model.manifest
  const s = m.config.vision.tile_size
  const vis = await engine.runVision(model.key, new Float32Array(3 * s * s), s, s)
  const want = imageTokenCount(1, 1, s, m.config.vision.patch)
  if (vis.tokens !== want || vis.dim !== m.config.hidden_size) {
    throw new Error(`vision.onnx warm-up gave [${vis.tokens}, ${vis.dim}], expected [${want}, ${m.config.hidden_size}]`)
  }
  const row = model.encoder.finish([])
  const feeds = packRewardBatch([row], m.tokenizer.pad_id, m.config.hidden_size)
  const out = await engine.runReward(model.key, feeds)
  if (out.scores.length !== 1 || !Number.isFinite(out.scores[0])) {
    throw new Error(`reward.onnx warm-up gave ${out.scores.length} scores (${out.scores[0]})`)
  }
  return out.scores[0]!
}

/** Two branches of the empty conversation through reward_packed.onnx: each must give reward.onnx's score for it
 *  (the packed graph's I/O and its equivalence, checked once at load, after the golden scores). */
async function checkPacked(engine: Engine, model: ModelVersion, plain: number): Promise<void> {
  if (!model.graphs.rewardPacked || !engine.runRewardPacked) return
  const m = model.manifest
  const row = model.encoder.finish([])
  const packed = await engine.runRewardPacked(model.key, packPackedBatch([shareRows([row, row])], m.tokenizer.pad_id, m.config.hidden_size))
  if (packed.scores.length !== 2 || !packed.scores.every((s) => Math.abs(s - plain) <= 1e-4)) {
    throw new Error(`reward_packed.onnx warm-up gave [${[...packed.scores]}], reward.onnx ${plain}`)
  }
}

/** Text cases of golden.json checked at load, and the score tolerance (ONNX Runtime vs the trainer's PyTorch
 *  export run: ~1e-5 in practice; a wrong model is off by far more). */
const GOLDEN_CASES = 3
const GOLDEN_MIN_TOL = 1e-3

/** The version scores its own golden.json text cases (same input_ids, same scores): a model whose weights and
 *  manifest checksums were changed together is self-consistent, but it is not the model the trainer verified,
 *  and it is refused. A few cases in one batch: milliseconds. */
async function verifyGolden(engine: Engine, model: ModelVersion): Promise<void> {
  if (!model.manifest.files['golden.json']) throw new Error('manifest.files has no golden.json: the model cannot be verified')
  const golden = JSON.parse(await readFile(path.join(model.dir, 'golden.json'), 'utf8')) as {
    atol_score?: number
    cases?: Array<{ id: string; kind: string; messages: Message[]; input_ids: number[]; score: number }>
  }
  // cases with marker strings in content test the published tokenizer's (unsafe) behaviour, not the model
  const cases = (golden.cases ?? []).filter((c) => c.kind === 'text' && !model.encoder.hasControlText(c.messages)).slice(0, GOLDEN_CASES)
  if (cases.length === 0) throw new Error('golden.json has no text case to verify the model with')
  const rows = cases.map((c) => {
    const row = model.encoder.finish(model.encoder.turns(c.messages))
    if (row.ids.length !== c.input_ids.length || row.ids.some((id, i) => id !== c.input_ids[i])) {
      throw new Error(`golden.json ${c.id}: the tokenizer/template give other input_ids than the trainer`)
    }
    return row
  })
  const m = model.manifest
  const out = await engine.runReward(model.key, packRewardBatch(rows, m.tokenizer.pad_id, m.config.hidden_size))
  const tol = Math.max(golden.atol_score ?? 0, GOLDEN_MIN_TOL)
  cases.forEach((c, i) => {
    const got = out.scores[i]!
    if (!(Math.abs(got - c.score) <= tol)) {
      throw new Error(`golden.json ${c.id}: this model scores ${got}, the trainer's model scored ${c.score} (tolerance ${tol})`)
    }
  })
}

/** Everything about a version dir that needs no engine: manifest, file checks, tokenizer, encoder. */
export async function readVersion(
  entry: { name: string; version: number; dir: string },
  limits: { maxBatchTokens: number; maxItemChars: number; tokenizeInlineChars?: number; checksums?: ChecksumCache },
): Promise<{ manifest: ModelManifest; encoder: ConversationEncoder }> {
  const raw: unknown = JSON.parse(await readFile(path.join(entry.dir, 'model.json'), 'utf8'))
  const parsed = ModelManifestSchema.safeParse(raw)
  if (!parsed.success) throw new Error(`model.json invalid: ${issuesText(parsed.error.issues)}`)
  const m = parsed.data
  if (m.name !== entry.name || m.version !== entry.version) {
    throw new Error(`model.json says ${m.name}/${m.version} but lives in ${entry.name}/${entry.version}`)
  }
  if (limits.maxBatchTokens > 0 && m.max_seq_len > limits.maxBatchTokens) {
    throw new Error(`max_seq_len ${m.max_seq_len} exceeds MAX_BATCH_TOKENS ${limits.maxBatchTokens}`)
  }
  checkManifestGraphs(m)
  await verifyFiles(entry.dir, m, limits.checksums ?? new ChecksumCache(''))
  const tokenizer = await HfTextTokenizer.fromFile(path.join(entry.dir, m.tokenizer.file), m.tokenizer, { worker: true, inlineChars: limits.tokenizeInlineChars })
  checkTokenizer(tokenizer, m)
  const { bos, eos, unk } = m.tokenizer.control_pieces
  const vocabSize = m.config.vocab_size
  const encoder = new ConversationEncoder(tokenizer, {
    template: m.template,
    padId: m.tokenizer.pad_id,
    maxSeqLen: m.max_seq_len,
    maxChars: limits.maxItemChars,
    atomicPieces: tokenizer.atomicPieces,
    controlLiterals: { [bos]: m.tokenizer.bos_id, [eos]: m.tokenizer.eos_id, [unk]: m.tokenizer.unk_id },
    outOfTable: m.tokenizer.out_of_table_tokens,
    vocabSize: typeof vocabSize === 'number' ? vocabSize : undefined,
  })
  return { manifest: m, encoder }
}

export async function loadVersion(
  entry: { name: string; version: number; dir: string },
  opts: LoadOptions,
): Promise<ModelVersion> {
  const { manifest: m, encoder } = await readVersion(entry, opts).finally(() => saveChecksums(entry, opts))
  const key = modelKey(m.name, m.version)
  const graphs = await opts.engine.load(key, {
    reward: path.join(entry.dir, m.graphs.reward.file),
    vision: path.join(entry.dir, m.graphs.vision.file),
    ...(m.graphs.reward_packed ? { rewardPacked: path.join(entry.dir, m.graphs.reward_packed.file) } : {}),
    dtype: m.dtype,
  })
  const batchTokens = opts.maxBatchTokens > 0 ? opts.maxBatchTokens : autoBatchTokens(graphs.reward.executionProvider, m.max_seq_len)
  const model: ModelVersion = { key, name: m.name, version: m.version, dir: entry.dir, manifest: m, encoder, graphs, batchTokens }
  try {
    checkSessions(m, graphs)
    checkSessionDtypes(m, graphs)
    const plain = await warmUp(opts.engine, model)
    // The golden scores before the packed graph's agreement with reward.onnx: weights that differ from the
    // trainer's (which also break that agreement) are named as such.
    await verifyGolden(opts.engine, model)
    await checkPacked(opts.engine, model, plain)
  } catch (err) {
    await opts.engine.unload(key).catch(() => {})
    throw err
  }
  return model
}

/** Loads every version under `root` (sequentially: one engine, and loading is start-up only). */
export async function loadRepository(root: string, opts: LoadOptions, load: typeof loadVersion = loadVersion): Promise<void> {
  const entries = await versionDirs(root)
  if (entries.length === 0) opts.log.warn({ root }, 'model repository is empty')
  for (const entry of entries) {
    opts.registry.setStatus({ ...entry, state: 'loading' })
    try {
      const model = await load(entry, opts)
      opts.registry.publish(model)
      const g = model.graphs.reward
      opts.log.info(
        { model: model.key, executionProvider: g.executionProvider, fallbacks: g.fallbacks },
        `model ${model.key} ready on ${g.executionProvider}`,
      )
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err)
      opts.registry.setStatus({ ...entry, state: 'failed', error })
      opts.log.error({ model: `${entry.name}/${entry.version}`, err: error }, 'model failed to load; it will not serve')
    }
  }
}
