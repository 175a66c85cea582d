// npm run bench:shared — shared-prompt scoring and step rewards (reward_packed.onnx) against today's path, as
// ratios within one run on this machine (issue 13 item 2, issue 17 item 1).
//
// Engine part (this process, the service's threads/spin settings, rows encoded by the model's own encoder):
//   sep1   the N rows through reward.onnx one at a time (what the batcher does on cpu: its default budget is one
//          max_seq_len of padded positions per batch, so a 330-position row runs alone),
//   sepB   the N rows through reward.onnx as one padded batch (the strictest baseline),
//   packed one packed row through reward_packed.onnx (prompt once, N branches).
//   Workloads: best-of-N over a 300-token prompt with 32-token answers (N = 8, 64), the same with one image
//   block in the prompt (N = 8; the image's embeddings are given: vision runs once either way), and step rewards
//   (a 16-step response, K = 4 and 16 prefixes).
// HTTP part: src/server.ts twice — the committed model, and a copy whose manifest lacks graphs.reward_packed
//   (today's path) — POST /get_reward with 64 samples, 8 per prompt, alternating A/B. Then the same 64 samples
//   as 64 concurrent one-sample calls (OpenRLHF's per-sample traffic), the committed model with
//   PACK_ACROSS_REQUESTS on (the default) against off, ABBA.
// BENCH_ROUNDS rounds (default 5), segments in a fresh seeded order each round; median [min–max] of the per-round
// ratios. Env: BENCH_ROUNDS, BENCH_SEED, MODELS_DIR, DEFAULT_MODEL, THREADS.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { loadConfig } from '../src/config.ts'
import type { Message, Segment } from '../src/conversation/types.ts'
import { createSession, runReward, runRewardPacked } from '../src/engine/onnx.ts'
import { readVersion } from '../src/models/load.ts'
import { packRewardBatch } from '../src/scheduler/pack.ts'
import { packPackedBatch, shareRows } from '../src/scheduler/pack-shared.ts'
import type { EncodedRow } from '../src/scheduler/types.ts'
import { benchModel } from './model.ts'
import { startServer } from './server.ts'
import { abbaRounds, fmtSpread, mulberry32, shuffled } from './stats.ts'

const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' })
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const SEED = Number(process.env.BENCH_SEED ?? 1)
const WORDS = 'the a of to and in is it that for on with as was at by this be from or an are not but have all which one their there can'.split(' ')
const NOUNS = 'answer model reward prompt river mountain number colour table image video cat spider insect leg step proof'.split(' ')

async function main() {
  const { modelsDir, entry } = await benchModel(config)
  const { manifest: m, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: 1e9 })
  if (!m.graphs.reward_packed) throw new Error(`${entry.name}/${entry.version} has no reward_packed graph`)
  const opts = { providers: ['cpu'], threads: config.threads, spin: config.ortSpin }
  const reward = (await createSession(path.join(entry.dir, m.graphs.reward.file), opts)).session
  const packed = (await createSession(path.join(entry.dir, m.graphs.reward_packed.file), opts)).session
  const pad = m.tokenizer.pad_id
  const dim = m.config.hidden_size
  const rnd = mulberry32(SEED)
  const text = (tokens: number) => {
    let s = ''
    while (encoder.turns([{ role: 'user', content: s }]).reduce((n, g) => n + (g.kind === 'text' ? g.ids.length : 0), 0) < tokens + 6) {
      s += `${rnd() < 0.2 ? NOUNS[Math.floor(rnd() * NOUNS.length)] : WORDS[Math.floor(rnd() * WORDS.length)]} `
    }
    return s.trim()
  }
  const block = (tokens: number) => ({ tokens, dim, embeds: Float32Array.from({ length: tokens * dim }, () => rnd() - 0.5), preprocessMs: 0, inferenceMs: 0 })
  // 1×2 tiles at tile 112 / patch 14 (G = 4): (2 + 1)·16 + 1 + 2·4 = 57 positions; the prompt's text is 300 − 57
  const imageTokens = 57
  const encode = (prompt: Message[], responses: string[], withImage: boolean): EncodedRow[] => {
    const p = encoder.turns(prompt)
    if (withImage) for (const s of p) if (s.kind === 'media') s.block = block(imageTokens)
    return responses.map((r) => encoder.finish(p, encoder.turns([{ role: 'assistant', content: r }])))
  }
  const promptText = text(300)
  const answers = (n: number) => Array.from({ length: n }, () => text(32))
  const imagePrompt: Message[] = [{ role: 'user', content: [{ type: 'image', data: 'x' }, { type: 'text', text: text(300 - imageTokens) }] }]
  const steps = Array.from({ length: 16 }, () => text(10))
  const stepPrompt = text(150)
  const prefixes = (k: number) => Array.from({ length: k }, (_, i) => steps.slice(0, Math.round(((i + 1) * 16) / k)).join('\n\n'))
  const work: Record<string, EncodedRow[]> = {
    'best-of-8 (300-token prompt, 32-token answers)': encode([{ role: 'user', content: promptText }], answers(8), false),
    'best-of-64': encode([{ role: 'user', content: promptText }], answers(64), false),
    'best-of-8, one image in the prompt': encode(imagePrompt, answers(8), true),
    // max_seq_len of the default model is 384: a 150-token prompt and 16 steps of ~12 tokens fit untruncated
    'steps K = 4 (16-step response)': encode([{ role: 'user', content: stepPrompt }], prefixes(4), false),
    'steps K = 16': encode([{ role: 'user', content: stepPrompt }], prefixes(16), false),
  }
  const seg = {
    sep1: async (rows: EncodedRow[]) => {
      for (const r of rows) await runReward(reward, packRewardBatch([r], pad, dim))
    },
    sepB: async (rows: EncodedRow[]) => void (await runReward(reward, packRewardBatch(rows, pad, dim))),
    packed: async (rows: EncodedRow[]) => void (await runRewardPacked(packed, packPackedBatch([shareRows(rows)], pad, dim))),
  }
  // warm-up and an exactness check on every workload
  for (const [name, rows] of Object.entries(work)) {
    const a = await runReward(reward, packRewardBatch(rows, pad, dim))
    const b = await runRewardPacked(packed, packPackedBatch([shareRows(rows)], pad, dim))
    const worst = Math.max(...[...a].map((x, i) => Math.abs(x - b[i]!)))
    if (!(worst <= 1e-4)) throw new Error(`${name}: packed differs from separate rows by ${worst}`)
    console.log(`${name}: ${rows.length} rows of ${rows[0]!.ids.length}–${Math.max(...rows.map((r) => r.ids.length))} positions, max |packed − separate| ${worst.toExponential(1)}`)
  }
  const ms: Record<string, Record<string, number[]>> = {}
  for (let round = 0; round < ROUNDS; round++) {
    const order = shuffled(Object.keys(work).flatMap((w) => Object.keys(seg).map((s) => [w, s] as const)), SEED + round)
    for (const [w, s] of order) {
      const t0 = performance.now()
      await seg[s as keyof typeof seg](work[w]!)
      ;((ms[w] ??= {})[s] ??= []).push(performance.now() - t0)
    }
  }
  console.log(`\nengine, ${ROUNDS} rounds (median [min–max]); ratio = packed time / baseline time, per round`)
  console.log('workload | sep1 ms | sepB ms | packed ms | packed/sep1 | packed/sepB')
  for (const w of Object.keys(work)) {
    const r = ms[w]!
    const ratio = (b: string) => r.packed!.map((x, i) => x / r[b]![i]!)
    console.log(`${w} | ${fmtSpread(r.sep1!, 1)} | ${fmtSpread(r.sepB!, 1)} | ${fmtSpread(r.packed!, 1)} | ${fmtSpread(ratio('sep1'), 3)} | ${fmtSpread(ratio('sepB'), 3)}`)
  }

  // HTTP: GRPO-shaped /get_reward through the service, today's path (no packed graph) vs packed
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-shared-'))
  const copy = path.join(tmp, entry.name, String(entry.version))
  cpSync(entry.dir, copy, { recursive: true })
  const man = JSON.parse(readFileSync(path.join(copy, 'model.json'), 'utf8'))
  delete man.graphs.reward_packed
  writeFileSync(path.join(copy, 'model.json'), JSON.stringify(man))
  rmSync(path.join(copy, m.graphs.reward_packed.file))
  delete man.files[m.graphs.reward_packed.file]
  writeFileSync(path.join(copy, 'model.json'), JSON.stringify(man))
  const today = await startServer({ MODELS_DIR: tmp })
  const withPacked = await startServer({ MODELS_DIR: modelsDir })
  const perRequest = await startServer({ MODELS_DIR: modelsDir, PACK_ACROSS_REQUESTS: 'false' })
  try {
    const grpo = Array.from({ length: 8 }, () => text(200)).flatMap((p) => answers(8).map((a) => [{ role: 'user', content: p }, { role: 'assistant', content: a }]))
    const call = async (base: string) => {
      const t0 = performance.now()
      const res = await fetch(`${base}/get_reward`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: grpo }) })
      if (!res.ok) throw new Error(`${base}: ${res.status} ${await res.text()}`)
      const body = (await res.json()) as { rewards: number[] }
      return { ms: performance.now() - t0, rewards: body.rewards }
    }
    const a0 = await call(today.base)
    const b0 = await call(withPacked.base)
    const worst = Math.max(...a0.rewards.map((x, i) => Math.abs(x - b0.rewards[i]!)))
    if (!(worst <= 1e-4)) throw new Error(`/get_reward: packed differs from today's path by ${worst}`)
    const { a: tA, b: tB } = await abbaRounds(async () => (await call(today.base)).ms, async () => (await call(withPacked.base)).ms, ROUNDS)
    const ratios = tA.map((x, i) => x / tB[i]!)
    console.log(`\nGRPO /get_reward (64 samples, 8 per prompt, 200-token prompts, 32-token answers), ${ROUNDS} ABBA rounds; max |Δreward| ${worst.toExponential(1)}`)
    console.log(`today's path ${fmtSpread(tA, 0)} ms/request (${fmtSpread(tA.map((x) => 64000 / x), 0)} samples/s); packed ${fmtSpread(tB, 0)} ms (${fmtSpread(tB.map((x) => 64000 / x), 0)} samples/s)`)
    console.log(`throughput ratio packed / today: ${fmtSpread(ratios, 2)}`)

    // the same samples, one per call, all at once: packed across requests (default) vs each call on its own
    const single = async (base: string) => {
      const t0 = performance.now()
      const rewards = await Promise.all(
        grpo.map(async (messages) => {
          const res = await fetch(`${base}/get_reward`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [messages] }) })
          if (!res.ok) throw new Error(`${base}: ${res.status} ${await res.text()}`)
          return ((await res.json()) as { rewards: number[] }).rewards[0]!
        }),
      )
      return { ms: performance.now() - t0, rewards }
    }
    const c0 = await single(perRequest.base)
    const d0 = await single(withPacked.base)
    const worstSingle = Math.max(...c0.rewards.map((x, i) => Math.max(Math.abs(x - d0.rewards[i]!), Math.abs(x - a0.rewards[i]!))))
    if (!(worstSingle <= 1e-4)) throw new Error(`per-sample /get_reward: packed across requests differs by ${worstSingle}`)
    const { a: tC, b: tD } = await abbaRounds(async () => (await single(perRequest.base)).ms, async () => (await single(withPacked.base)).ms, ROUNDS)
    const sRatios = tC.map((x, i) => x / tD[i]!)
    console.log(`\nthe same 64 samples as 64 concurrent one-sample /get_reward calls, ${ROUNDS} ABBA rounds; max |Δreward| ${worstSingle.toExponential(1)} (vs each other and one call)`)
    console.log(`PACK_ACROSS_REQUESTS=false ${fmtSpread(tC, 0)} ms (${fmtSpread(tC.map((x) => 64000 / x), 0)} samples/s); on (default) ${fmtSpread(tD, 0)} ms (${fmtSpread(tD.map((x) => 64000 / x), 0)} samples/s)`)
    console.log(`throughput ratio packed across requests / per request: ${fmtSpread(sRatios, 2)}`)
  } finally {
    today.child.kill()
    withPacked.child.kill()
    perRequest.child.kill()
    rmSync(tmp, { recursive: true, force: true })
  }
}

void main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
