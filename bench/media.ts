// npm run bench:media — the media intake path (issue 13, item 3), as ratios within one run on this machine.
//
// base64: validating + decoding one inline image, today's decoder (src/preprocess/media/base64.ts via
//   decodeInlineData) against the former whole-string regexes (kept below as the baseline), on a 1.5 MB image's
//   base64 (2 MB of text) and on 8 copies of it (one GRPO-style request), interleaved A/B in rounds.
// Env: BENCH_ROUNDS (default 7), BENCH_REPS (calls per segment, default 20).
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { decodeInlineData } from '../src/preprocess/media/input.ts'
import { fmtSpread, median } from './stats.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
const REPS = Number(process.env.BENCH_REPS ?? 20)

// The decoder this project used before issue 13 (input.ts at 78b1d73), as the baseline.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const BASE64URL = /^[A-Za-z0-9_-]*$/
function regexDecode(data: string, maxBytes: number): Uint8Array {
  let payload = data
  if (payload.startsWith('data:')) payload = payload.slice(payload.indexOf(',') + 1)
  payload = payload.replace(/\s+/g, '')
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) throw new Error('too large')
  if (!(BASE64.test(payload) || BASE64URL.test(payload))) throw new Error('not base64')
  const buf = Buffer.from(payload, BASE64URL.test(payload) && /[-_]/.test(payload) ? 'base64url' : 'base64')
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

// ms per call over `reps` calls on the same flat string (a JSON-parsed body's strings are flat; V8 keeps no
// per-string regex result for strings this long, so repeating the call repeats the work)
function timeCalls(fn: (s: string, max: number) => Uint8Array, input: string, reps: number): number {
  const t0 = performance.now()
  let sink = 0
  for (let i = 0; i < reps; i++) sink += fn(input, 20 << 20).length
  const ms = (performance.now() - t0) / reps
  if (sink === 0) throw new Error('nothing decoded')
  return ms
}

function base64Bench(): void {
  const bytes = randomBytes(1_500_000)
  const b64 = bytes.toString('base64')
  const uri = `data:image/jpeg;base64,${b64}`
  if (Buffer.compare(Buffer.from(decodeInlineData(uri, 20 << 20)), bytes) !== 0) throw new Error('decoders disagree')
  if (Buffer.compare(Buffer.from(regexDecode(uri, 20 << 20)), bytes) !== 0) throw new Error('baseline decoder broken')
  const uriFlat = JSON.parse(JSON.stringify(uri)) as string // as the body parser hands it over
  for (let i = 0; i < 3; i++) (timeCalls(decodeInlineData, uriFlat, 3), timeCalls(regexDecode, uriFlat, 3))
  const ratios: number[] = []
  const newMs: number[] = []
  const oldMs: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    // A B B A: a linear drift within a round cancels
    const a1 = timeCalls(regexDecode, uriFlat, REPS)
    const b1 = timeCalls(decodeInlineData, uriFlat, REPS)
    const b2 = timeCalls(decodeInlineData, uriFlat, REPS)
    const a2 = timeCalls(regexDecode, uriFlat, REPS)
    oldMs.push((a1 + a2) / 2)
    newMs.push((b1 + b2) / 2)
    ratios.push((a1 + a2) / (b1 + b2))
  }
  console.log(`base64, one 1.5 MB image (${(uri.length / 1e6).toFixed(2)} MB data: URI), ${ROUNDS} ABBA rounds x ${REPS} calls: median [min–max]`)
  console.log(`  regex (before)   ${fmtSpread(oldMs, 2)} ms per image`)
  console.log(`  base64.ts (now)  ${fmtSpread(newMs, 2)} ms per image (decode included in both)`)
  console.log(`  speed-up         ${fmtSpread(ratios, 2)}x  (8 copies in one request: ${(median(oldMs) * 8).toFixed(1)} -> ${(median(newMs) * 8).toFixed(1)} ms)`)
}

base64Bench()
