// The README's curl examples, run for real: every ```sh block that calls localhost:8080 and is followed by a ```json
// block with one JSON answer (optionally followed by curl's ` HTTP <status>`) is run with bash and curl against the
// service on the embedded default model, and the answer is compared with the one printed. test/docs runs the check;
// after a retrain `npm run docs:examples` rewrites the printed answers from the new model.
//   npm run docs:examples             rewrite README.md's answers from the running code and model
//   npm run docs:examples -- --check  print the differences, exit 1 if any
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'

const run = promisify(execFile)
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Relative float tolerance of printed scores: across CPUs and thread counts ONNX Runtime's sums differ in the last
 *  bits, far below the 1e-4 of the trainer's ONNX-vs-PyTorch gate. */
export const RTOL = 1e-4

export interface Example {
  /** 1-based line of the ```sh fence */
  line: number
  command: string
  /** the ```json block's text */
  expected: string
  /** character range of `expected` in the README */
  start: number
  end: number
}

/** The sh blocks that call the service, each with the json block right after it. */
export function parseExamples(readme: string): Example[] {
  const out: Example[] = []
  const fence = /^```(sh|json)\n([\s\S]*?)^```$/gm
  const blocks: Array<{ lang: string; body: string; at: number; bodyStart: number; end: number }> = []
  for (let m; (m = fence.exec(readme)); ) {
    blocks.push({ lang: m[1]!, body: m[2]!, at: m.index, bodyStart: m.index + 4 + m[1]!.length, end: m.index + m[0].length })
  }
  blocks.forEach((b, i) => {
    const next = blocks[i + 1]
    if (b.lang !== 'sh' || !b.body.includes('localhost:8080') || next?.lang !== 'json' || next.at !== b.end + 1) return
    out.push({
      line: readme.slice(0, b.at).split('\n').length,
      command: b.body,
      expected: next.body.replace(/\n$/, ''),
      start: next.bodyStart,
      end: next.bodyStart + next.body.replace(/\n$/, '').length,
    })
  })
  return out
}

/** One JSON value, then optionally ` HTTP <status>`; null when the printed answer is something else (several
 *  lines of different commands, a truncated document). */
export function splitAnswer(text: string): { json: unknown; tail: string } | null {
  const m = /^([\s\S]*?)( HTTP \d{3})?$/.exec(text.trim())!
  try {
    return { json: JSON.parse(m[1]!), tail: m[2] ?? '' }
  } catch {
    return null
  }
}

const GENERATED_ID = /^[a-z]+-[0-9a-f]{32}$/

/** Differences between a printed and an actual answer: numbers within RTOL, a printed string with `…` matches any
 *  text in its place, generated ids (`rerank-<32 hex>`) match any id of that shape. */
export function differences(expected: unknown, actual: unknown, at = '$'): string[] {
  if (typeof expected === 'number' && typeof actual === 'number') {
    return Math.abs(expected - actual) <= RTOL * Math.max(1, Math.abs(expected)) ? [] : [`${at}: ${expected} printed, ${actual} now`]
  }
  if (typeof expected === 'string' && typeof actual === 'string') {
    if (expected.includes('…')) {
      const re = new RegExp(`^${expected.split('…').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*')}$`)
      return re.test(actual) ? [] : [`${at}: ${JSON.stringify(actual)} does not match ${JSON.stringify(expected)}`]
    }
    if (GENERATED_ID.test(expected) && GENERATED_ID.test(actual) && expected.split('-')[0] === actual.split('-')[0]) return []
    return expected === actual ? [] : [`${at}: ${JSON.stringify(expected)} printed, ${JSON.stringify(actual)} now`]
  }
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length !== actual.length) return [`${at}: ${expected.length} elements printed, ${actual.length} now`]
    return expected.flatMap((e, i) => differences(e, actual[i], `${at}[${i}]`))
  }
  if (expected && actual && typeof expected === 'object' && typeof actual === 'object' && !Array.isArray(expected) && !Array.isArray(actual)) {
    const ek = Object.keys(expected).sort()
    const ak = Object.keys(actual).sort()
    if (ek.join() !== ak.join()) return [`${at}: keys ${ek.join(',')} printed, ${ak.join(',')} now`]
    return ek.flatMap((k) => differences((expected as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k], `${at}.${k}`))
  }
  return expected === actual ? [] : [`${at}: ${JSON.stringify(expected)} printed, ${JSON.stringify(actual)} now`]
}

export interface Outcome {
  example: Example
  /** the answer as curl printed it now */
  actual: string
  /** null: not a single JSON answer, shown but not compared */
  diffs: string[] | null
}

/** The media files the README makes with ffmpeg (its first sh block that runs ffmpeg), in `dir`. */
async function makeMedia(readme: string, dir: string): Promise<void> {
  const setup = /^```sh\n((?:ffmpeg [^\n]*\n)+)```$/m.exec(readme)
  if (!setup) throw new Error('README: no ffmpeg block making the example media')
  await run('bash', ['-euc', setup[1]!], { cwd: dir })
}

/** Runs every example in README order against one service (examples whose printed answer has `…` — a state that
 *  differs with what was sent before, like a media reference the server does not hold yet — get a fresh one). */
export async function runExamples(readme: string, env: Record<string, string> = {}): Promise<Outcome[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'readme-examples-'))
  const start = async () => {
    const app = buildApp(loadConfig({ LOG_LEVEL: 'silent', MODELS_DIR: path.join(ROOT, 'models'), ...env }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { app, port: (app.server.address() as AddressInfo).port }
  }
  const main = await start()
  try {
    await makeMedia(readme, dir)
    const outcomes: Outcome[] = []
    for (const example of parseExamples(readme)) {
      const fresh = example.expected.includes('…') ? await start() : null
      try {
        const port = (fresh ?? main).port
        const { stdout } = await run('bash', ['-euc', example.command.replaceAll('localhost:8080', `127.0.0.1:${port}`)], { cwd: dir })
        const actual = stdout.replace(/\n$/, '')
        const want = splitAnswer(example.expected)
        const got = splitAnswer(actual)
        const diffs = want === null ? null : got === null ? [`not one JSON answer now: ${actual.slice(0, 200)}`] : want.tail !== got.tail ? [`${want.tail} printed, ${got.tail} now`] : differences(want.json, got.json)
        outcomes.push({ example, actual, diffs })
      } finally {
        await fresh?.app.close()
      }
    }
    return outcomes
  } finally {
    await main.app.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** README with the compared answers replaced by today's (the `…` ones kept: they are written by hand). */
export function rewrite(readme: string, outcomes: Outcome[]): string {
  let out = readme
  for (const o of [...outcomes].sort((a, b) => b.example.start - a.example.start)) {
    if (o.diffs === null || o.diffs.length === 0 || o.example.expected.includes('…')) continue
    out = out.slice(0, o.example.start) + o.actual + out.slice(o.example.end)
  }
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = path.join(ROOT, 'README.md')
  const readme = readFileSync(file, 'utf8')
  const outcomes = await runExamples(readme)
  let bad = 0
  for (const o of outcomes) {
    const state = o.diffs === null ? 'shown, not compared' : o.diffs.length === 0 ? 'same' : `${o.diffs.length} differences`
    console.log(`README.md:${o.example.line}: ${state}`)
    for (const d of o.diffs ?? []) console.log(`  ${d}`)
    if (o.diffs?.length) bad++
  }
  if (process.argv.includes('--check')) process.exit(bad > 0 ? 1 : 0)
  writeFileSync(file, rewrite(readme, outcomes))
  console.log(`${bad} answers rewritten in README.md`)
}
