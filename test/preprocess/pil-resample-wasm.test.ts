// The WebAssembly SIMD resampler (pil-resample.wat via pil-resample-wasm.ts) against the JavaScript port of
// Pillow's bilinear resize it replaces (resizeBilinearJs, itself pinned to PIL by image-transform.test.ts): the
// bytes must be identical for every input. Sizes cover upscales, downscales with many taps, one axis unchanged,
// 1-pixel inputs and outputs and rows that are not a multiple of the 16-byte chunks; contents cover random bytes
// and the extremes that make the clamps and the 22-bit rounding matter (all 0, all 255, 0/255 checkerboards).
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { buildResampleWasm, WASM_PATH } from '../../scripts/build-wasm.ts'
import { resampleLayout, resampleWasm, resampleWasmAvailable, resampleWasmState } from '../../src/preprocess/image/pil-resample-wasm.ts'
import { resampleJs, resizeBilinear, resizeBilinearJs, resizeBilinearWasm, type Coeffs, type ResizePlan } from '../../src/preprocess/image/pil-resize.ts'
import type { RgbImage } from '../../src/preprocess/image/rgb.ts'

// mulberry32: a fixed seed so a failure names a case that can be rerun
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

type Content = 'random' | 'zero' | 'full' | 'checker' | 'byte-checker' | 'stripes'
const CONTENTS: Content[] = ['random', 'zero', 'full', 'checker', 'byte-checker', 'stripes']

function image(w: number, h: number, content: Content, rand: () => number): RgbImage {
  const data = new Uint8Array(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * w + x) * 3 + c
        data[i] =
          content === 'random' ? Math.floor(rand() * 256)
          : content === 'zero' ? 0
          : content === 'full' ? 255
          : content === 'checker' ? ((x + y) & 1 ? 255 : 0)
          : content === 'byte-checker' ? (i & 1 ? 255 : 0)
          : (x & 1 ? 0 : 255) ^ (c === 1 ? 255 : 0)
      }
    }
  }
  return { width: w, height: h, data }
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return -2
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i
  return -1
}

function check(t: Test, img: RgbImage, outW: number, outH: number, label: string): boolean {
  const want = resizeBilinearJs(img, outW, outH)
  const got = resizeBilinearWasm(img, outW, outH)
  const d = firstDiff(want.data, got.data)
  if (d === -1 && got.width === outW && got.height === outH) return true
  t.fail(`${label}: ${img.width}x${img.height} -> ${outW}x${outH} differs at byte ${d} (js ${want.data[d]}, wasm ${got.data[d]})`)
  return false
}

t.test('bit-identical to the JS port on random small sizes and contents', async (t) => {
  const rand = rng(20261204)
  let cases = 0
  let ok = 0
  for (let i = 0; i < 3000; i++) {
    const w = 1 + Math.floor(rand() * 40)
    const h = 1 + Math.floor(rand() * 40)
    // up to 2.5x up, and down to 1 pixel; sometimes one axis unchanged
    const pick = (n: number) => (rand() < 0.15 ? n : 1 + Math.floor(rand() * Math.ceil(n * 2.5)))
    const content = CONTENTS[i % CONTENTS.length]!
    cases++
    if (check(t, image(w, h, content, rand), pick(w), pick(h), `case ${i} ${content}`)) ok++
  }
  t.equal(ok, cases, `${ok}/${cases} identical`)
})

t.test('bit-identical on larger upscales, downscales with many taps and degenerate shapes', async (t) => {
  const rand = rng(7)
  const shapes: [number, number, number, number][] = [
    [450, 600, 840, 1120], // the fixture upscale the HD transform does, transposed
    [512, 512, 560, 560],
    [400, 267, 1120, 747],
    [300, 200, 30, 20], // 10x down: 21 taps per axis
    [640, 480, 61, 47],
    [257, 129, 25, 13],
    [640, 480, 1, 1], // every source pixel in one output pixel
    [1, 1, 50, 37],
    [1, 40, 7, 3],
    [40, 1, 3, 9],
    [1000, 7, 100, 7], // vertical pass skipped
    [7, 1000, 7, 97], // horizontal pass skipped
    [123, 77, 1231, 13],
    [17, 333, 5, 1000],
    [5, 5, 16, 16], // rows of exactly one 16-byte chunk and multiples
    [11, 11, 32, 32],
  ]
  for (const [w, h, ow, oh] of shapes) {
    for (const content of CONTENTS) check(t, image(w, h, content, rand), ow, oh, content)
  }
  t.pass('done')
})

// Bilinear coefficients never reach some paths (measured over 1..600 px both ways: every weight >= 0, their sum at
// most 2^22 + 64, so no sum leaves 0..255 before the clamp, and the first row the vertical pass reads is always 0).
// Hand-made plans reach them: negative weights, weights above 1.0 (the clamps at 0 and 255), weights near 2^31
// (int32 wrap-around, where the JS's doubles go through ToInt32) and a horizontal pass over a band of rows (shift).
function coeffs(inSize: number, outSize: number, rand: () => number, scale: number): Coeffs {
  const ksize = 1 + Math.floor(rand() * Math.min(inSize, 6))
  const bounds = new Int32Array(outSize * 2)
  const weights = new Int32Array(outSize * ksize)
  for (let o = 0; o < outSize; o++) {
    const count = 1 + Math.floor(rand() * ksize)
    bounds[o * 2] = Math.floor(rand() * (inSize - count + 1))
    bounds[o * 2 + 1] = count
    for (let k = 0; k < ksize; k++) weights[o * ksize + k] = Math.round((rand() * 2 - 0.6) * scale)
  }
  return { ksize, bounds, weights }
}

t.test('bit-identical on hand-made plans: clamps, int32 wrap-around, a band of rows', async (t) => {
  const rand = rng(99)
  let cases = 0
  let ok = 0
  for (let i = 0; i < 600; i++) {
    const w = 1 + Math.floor(rand() * 30)
    const h = 1 + Math.floor(rand() * 30)
    const mode = i % 3 // both passes, horizontal only, vertical only
    const needH = mode !== 2
    const needV = mode !== 1
    const outW = needH ? 1 + Math.floor(rand() * 40) : w
    const outH = needV ? 1 + Math.floor(rand() * 40) : h
    let first = 0
    let last = h
    if (needH && needV) {
      first = Math.floor(rand() * h)
      last = first + 1 + Math.floor(rand() * (h - first))
    }
    const scale = [1 << 22, 1 << 23, 2 ** 31 - 1][i % 9 < 5 ? 0 : i % 9 < 8 ? 1 : 2]!
    const ch = coeffs(w, outW, rand, scale)
    const cv = coeffs(last - first, outH, rand, scale)
    for (let o = 0; o < outH; o++) cv.bounds[o * 2] += first // the vertical pass's bounds are in source rows
    const plan: ResizePlan = { outW, outH, needH, needV, ch, cv, first, last }
    const img = image(w, h, CONTENTS[i % CONTENTS.length]!, rand)
    // the passes read and write up to 15 bytes past a pixel buffer (pil-resample.wat): that must be slack, not
    // the next buffer (it would be overwritten while still read) or past the memory (a trap)
    const L = resampleLayout(w, plan)
    const regions = [[L.src, L.srcBytes], ...(needH && needV ? [[L.mid, L.midBytes]] : []), [L.dst, L.dstBytes]]
    for (let r = 0; r < regions.length; r++) {
      const [at, bytes] = regions[r]!
      const next = r + 1 < regions.length ? regions[r + 1]![0]! : L.top
      if (next - (at! + bytes!) < 15) t.fail(`plan ${i}: only ${next - (at! + bytes!)} bytes after buffer ${r}`)
    }
    if (Math.min(L.src, L.dst) < Math.max(L.hBounds, L.hWeights, L.vBounds, L.vWeights)) t.fail(`plan ${i}: pixels overlap the coefficients`)
    const want = resampleJs(img, plan)
    const got = resampleWasm(img, plan)
    const d = firstDiff(want.data, got.data)
    cases++
    if (d === -1) ok++
    else t.fail(`plan ${i}: ${w}x${h} -> ${outW}x${outH} rows [${first}, ${last}) scale ${scale} differs at byte ${d} (js ${want.data[d]}, wasm ${got.data[d]})`)
  }
  t.equal(ok, cases, `${ok}/${cases} identical`)
})

t.test('resizeBilinear runs the WebAssembly passes, and keeps the identity and argument checks', async (t) => {
  t.ok(resampleWasmAvailable(), 'pil-resample.wasm loads (else resizeBilinear falls back to JavaScript)')
  const img = image(9, 7, 'random', rng(3))
  t.same(resizeBilinear(img, 20, 5).data, resizeBilinearJs(img, 20, 5).data)
  const after = resampleWasmState()
  t.ok(after.instancesCreated >= 1 && after.memoryBytes > 0, 'an instance with its memory exists after a resize')
  const same = resizeBilinear(img, 9, 7)
  t.same(same.data, img.data)
  t.not(same.data, img.data, 'the identity resize returns a copy')
  t.throws(() => resizeBilinear(img, 0, 5), RangeError)
  t.throws(() => resizeBilinear(img, 2.5, 5), RangeError)
  // the dispatch itself: a resize larger than any before it must grow the module's memory (src 4.5 MB + the
  // horizontal pass's 5.4 MB + 6.5 MB out); through the JavaScript passes it would not
  const need = 16e6
  const before = resampleWasmState().memoryBytes
  t.ok(before < need, `the instance holds less than the big resize needs before it (${before})`)
  const big = image(1500, 1000, 'random', rng(4))
  resizeBilinear(big, 1800, 1200)
  t.ok(resampleWasmState().memoryBytes >= need, 'resizeBilinear ran in the module: its memory grew')
})

t.test('an instance that grew past the retention bound is dropped, and the next call is right', async (t) => {
  const rand = rng(11)
  const small = image(37, 23, 'random', rand)
  check(t, small, 80, 50, 'warm-up')
  const s0 = resampleWasmState()
  t.ok(s0.memoryBytes > 0 && s0.memoryBytes <= s0.retainMaxBytes, `small call keeps a small memory (${s0.memoryBytes})`)
  // ~1.3 MB in, 69 MB out: more than 64 MiB of linear memory
  const big = image(700, 600, 'random', rand)
  const outW = 4900
  const outH = 4700
  t.ok(outW * outH * 3 > s0.retainMaxBytes, 'the big call needs more memory than the bound')
  check(t, big, outW, outH, 'big')
  const s1 = resampleWasmState()
  t.equal(s1.memoryBytes, 0, 'the grown instance was dropped')
  check(t, small, 80, 50, 'after the big call')
  const s2 = resampleWasmState()
  t.equal(s2.instancesCreated, s0.instancesCreated + 1, 'the big call reused the instance, the next one made a fresh one')
  t.ok(s2.memoryBytes > 0 && s2.memoryBytes < 1 << 20, `the fresh instance is small again (${s2.memoryBytes})`)
})

t.test('the committed pil-resample.wasm is the build of pil-resample.wat', async (t) => {
  const built = await buildResampleWasm()
  const committed = new Uint8Array(readFileSync(WASM_PATH))
  t.equal(firstDiff(built, committed), -1, 'run `npm run build:wasm` after editing the .wat')
})
