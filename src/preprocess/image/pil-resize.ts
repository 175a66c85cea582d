// PIL's `Image.resize(size, Image.BILINEAR)` for 8-bit RGB, ported from Pillow's libImaging/Resample.c
// (precompute_coeffs, normalize_coeffs_8bpc, ImagingResampleHorizontal/Vertical_8bpc, ImagingResampleInner).
// Why our own: the trainer (and IXC) resize with PIL, and libvips (sharp) enlarges with a different pixel-centre
// convention (mean error 2-4 levels on upscales, see reference Appendix). Matching PIL means: a triangle filter whose
// support widens by the shrink factor (antialias), source centre (x + 0.5)·scale, weights renormalised inside the
// image, 22-bit fixed-point weights, horizontal pass first, rounding to uint8 between the passes.
// resizeBilinear runs the two passes in WebAssembly SIMD (pil-resample.wat, bit-identical; the test
// pil-resample-wasm.test.ts compares it with the JavaScript passes here, which stay as the readable reference).
import { resampleWasm, resampleWasmAvailable } from './pil-resample-wasm.ts'
import type { RgbImage } from './rgb.ts'

const PRECISION_BITS = 32 - 8 - 2

export interface Coeffs {
  ksize: number
  bounds: Int32Array // [xmin, count] per output pixel
  weights: Int32Array // ksize per output pixel, fixed point
}

function bilinearFilter(x: number): number {
  if (x < 0) x = -x
  return x < 1 ? 1 - x : 0
}

export function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const support0 = 1 // bilinear
  const scale = inSize / outSize
  const filterscale = scale < 1 ? 1 : scale
  const support = support0 * filterscale
  const ksize = Math.ceil(support) * 2 + 1
  const bounds = new Int32Array(outSize * 2)
  const weights = new Int32Array(outSize * ksize)
  const k = new Float64Array(ksize)
  const ss = 1 / filterscale
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale
    // C casts with (int), which truncates toward zero
    let xmin = Math.trunc(center - support + 0.5)
    if (xmin < 0) xmin = 0
    let xmax = Math.trunc(center + support + 0.5)
    if (xmax > inSize) xmax = inSize
    xmax -= xmin
    let ww = 0
    for (let x = 0; x < xmax; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * ss)
      k[x] = w
      ww += w
    }
    for (let x = 0; x < ksize; x++) {
      let v = x < xmax ? k[x] : 0
      if (x < xmax && ww !== 0) v /= ww
      // normalize_coeffs_8bpc
      weights[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS))
    }
    bounds[xx * 2] = xmin
    bounds[xx * 2 + 1] = xmax
  }
  return { ksize, bounds, weights }
}

function clip8(v: number): number {
  // v fits in a signed 32-bit int in C; the shift is arithmetic
  const r = v >> PRECISION_BITS
  return r < 0 ? 0 : r > 255 ? 255 : r
}

// One horizontal pass over rows [y0, y0 + rows) of the input.
function resampleHorizontal(src: RgbImage, outW: number, y0: number, rows: number, c: Coeffs): RgbImage {
  const out = new Uint8Array(outW * rows * 3)
  const { ksize, bounds, weights } = c
  const half = 1 << (PRECISION_BITS - 1)
  for (let y = 0; y < rows; y++) {
    const rowIn = (y + y0) * src.width * 3
    const rowOut = y * outW * 3
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2]
      const xmax = bounds[xx * 2 + 1]
      const kb = xx * ksize
      let s0 = half
      let s1 = half
      let s2 = half
      for (let x = 0; x < xmax; x++) {
        const w = weights[kb + x]
        const p = rowIn + (x + xmin) * 3
        s0 += src.data[p] * w
        s1 += src.data[p + 1] * w
        s2 += src.data[p + 2] * w
      }
      const o = rowOut + xx * 3
      out[o] = clip8(s0)
      out[o + 1] = clip8(s1)
      out[o + 2] = clip8(s2)
    }
  }
  return { width: outW, height: rows, data: out }
}

function resampleVertical(src: RgbImage, outH: number, c: Coeffs, shift: number): RgbImage {
  const w = src.width
  const out = new Uint8Array(w * outH * 3)
  const { ksize, bounds, weights } = c
  const half = 1 << (PRECISION_BITS - 1)
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - shift
    const ymax = bounds[yy * 2 + 1]
    const kb = yy * ksize
    for (let xx = 0; xx < w; xx++) {
      let s0 = half
      let s1 = half
      let s2 = half
      for (let y = 0; y < ymax; y++) {
        const wt = weights[kb + y]
        const p = ((y + ymin) * w + xx) * 3
        s0 += src.data[p] * wt
        s1 += src.data[p + 1] * wt
        s2 += src.data[p + 2] * wt
      }
      const o = (yy * w + xx) * 3
      out[o] = clip8(s0)
      out[o + 1] = clip8(s1)
      out[o + 2] = clip8(s2)
    }
  }
  return { width: w, height: outH, data: out }
}

// What both implementations do for one resize: the coefficients per axis, which passes run, and the source rows
// [first, last) the horizontal pass produces (like Pillow, only the rows the vertical pass will read).
export interface ResizePlan {
  outW: number
  outH: number
  needH: boolean
  needV: boolean
  ch: Coeffs
  cv: Coeffs
  first: number
  last: number
}

function planResize(img: RgbImage, outW: number, outH: number): ResizePlan | null {
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW < 1 || outH < 1) {
    throw new RangeError(`resize target must be positive integers, got ${outW}x${outH}`)
  }
  if (outW === img.width && outH === img.height) return null
  const needH = outW !== img.width
  const needV = outH !== img.height
  const ch = precomputeCoeffs(img.width, outW)
  const cv = precomputeCoeffs(img.height, outH)
  const first = needH && needV ? cv.bounds[0] : 0
  const last = needH && needV ? cv.bounds[outH * 2 - 2] + cv.bounds[outH * 2 - 1] : img.height
  return { outW, outH, needH, needV, ch, cv, first, last }
}

// One resize through `run` (the JavaScript or the WebAssembly passes); the same size is a copy.
function resizeWith(img: RgbImage, outW: number, outH: number, run: (img: RgbImage, plan: ResizePlan) => RgbImage): RgbImage {
  const plan = planResize(img, outW, outH)
  return plan ? run(img, plan) : { width: outW, height: outH, data: img.data.slice() }
}

export function resizeBilinearJs(img: RgbImage, outW: number, outH: number): RgbImage {
  return resizeWith(img, outW, outH, resampleJs)
}

// The JavaScript passes for a plan. For bilinear coefficients `first` is always 0 and no sum leaves 0..255 before
// the clamp; the WebAssembly test also feeds hand-made plans (a band of rows, negative or oversized weights) so
// that those paths are compared too.
export function resampleJs(img: RgbImage, plan: ResizePlan): RgbImage {
  let cur = img
  let shift = 0
  if (plan.needH) {
    cur = resampleHorizontal(img, plan.outW, plan.first, plan.last - plan.first, plan.ch)
    shift = plan.first
  }
  if (plan.needV) cur = resampleVertical(cur, plan.outH, plan.cv, shift)
  return cur
}

// The same resize through the WebAssembly passes; throws where the module cannot be loaded.
export function resizeBilinearWasm(img: RgbImage, outW: number, outH: number): RgbImage {
  return resizeWith(img, outW, outH, resampleWasm)
}

export function resizeBilinear(img: RgbImage, outW: number, outH: number): RgbImage {
  return resizeWith(img, outW, outH, resampleWasmAvailable() ? resampleWasm : resampleJs)
}
