// Runs the passes of pil-resample.wat (Pillow's 8-bit bilinear resample in WebAssembly SIMD) for
// resizeBilinear. The coefficients and the plan come from pil-resize.ts; this file lays them and the pixels out in
// the module's linear memory, runs the passes and copies the result out.
//
// One compiled module and one instance per thread (image transforms run in worker threads; module state is
// per-thread), created on first use. The module is read synchronously: a resize is a synchronous call.
import { readFileSync } from 'node:fs'
import type { ResizePlan } from './pil-resize.ts'
import type { RgbImage } from './rgb.ts'

interface Exports {
  memory: WebAssembly.Memory
  horizontal(src: number, rowBytes: number, rows: number, outW: number, bounds: number, weights: number, ksize: number, dst: number): void
  vertical(src: number, rowBytes: number, outH: number, bounds: number, weights: number, ksize: number, shift: number, dst: number): void
}

// Linear memory never shrinks, so an instance that grew past this for one large image would keep that much for
// the life of the thread; past it, the instance is dropped after the call and the next call starts a small one.
// 64 MiB covers the common sizes (a 2000x1500 photo to 1680x1260 needs ~23 MiB) without a fresh instance per call.
const RETAIN_MAX_BYTES = 64 << 20
// Every pixel buffer gets this much slack after it: the passes read and write up to 15 bytes past a row's end
// (see the .wat).
const PAD = 16
const PAGE = 65536

let module: WebAssembly.Module | null | undefined
let instance: Exports | null = null
let instancesCreated = 0

function loadModule(): WebAssembly.Module | null {
  if (module !== undefined) return module
  try {
    module = new WebAssembly.Module(readFileSync(new URL('./pil-resample.wasm', import.meta.url)))
  } catch (err) {
    // e.g. a build that compiled the .ts sources without copying the .wasm next to them (tsc does not): rather
    // than fail every image, resizeBilinear falls back to the JavaScript passes (same bytes, several times slower)
    // and says so once per thread.
    module = null
    process.emitWarning(`pil-resample.wasm could not be loaded, resizing in JavaScript: ${(err as Error).message}`, 'PilResampleWasm')
  }
  return module
}

export function resampleWasmAvailable(): boolean {
  return loadModule() !== null
}

function getInstance(): Exports {
  if (instance) return instance
  const mod = loadModule()
  if (!mod) throw new Error('pil-resample.wasm is not available')
  instance = new WebAssembly.Instance(mod, {}).exports as unknown as Exports
  instancesCreated++
  return instance
}

// arithmetic, not `& ~15`: offsets may pass 2^31, where JavaScript's bitwise operators wrap
const align = (n: number) => Math.ceil(n / 16) * 16

export interface ResampleLayout {
  hBounds: number
  hWeights: number
  vBounds: number
  vWeights: number
  src: number // the source rows [first, last)
  srcBytes: number
  mid: number // the horizontal pass's output where a vertical pass follows (= src otherwise)
  midBytes: number
  dst: number
  dstBytes: number
  top: number // bytes of linear memory needed
}

// Where a call puts everything in linear memory: the coefficients, then the pixel buffers, each followed by PAD
// bytes of slack and aligned to 16.
export function resampleLayout(width: number, plan: ResizePlan): ResampleLayout {
  const { outW, outH, needH, needV, ch, cv, first, last } = plan
  let top = 0
  const place = (bytes: number) => {
    const at = top
    top = align(top + bytes)
    return at
  }
  const hBounds = needH ? place(ch.bounds.byteLength) : 0
  const hWeights = needH ? place(ch.weights.byteLength) : 0
  const vBounds = needV ? place(cv.bounds.byteLength) : 0
  const vWeights = needV ? place(cv.weights.byteLength) : 0
  const srcBytes = (last - first) * width * 3
  const src = place(srcBytes + PAD)
  const midBytes = needH && needV ? (last - first) * outW * 3 : 0
  const mid = needH && needV ? place(midBytes + PAD) : src
  const dstBytes = outW * outH * 3
  const dst = place(dstBytes + PAD)
  return { hBounds, hWeights, vBounds, vWeights, src, srcBytes, mid, midBytes, dst, dstBytes, top }
}

export function resampleWasm(img: RgbImage, plan: ResizePlan): RgbImage {
  const { outW, outH, needH, needV, ch, cv, first, last } = plan
  const inRow = img.width * 3
  const outRow = outW * 3
  const rows = last - first
  const { hBounds, hWeights, vBounds, vWeights, src, mid, dst, top } = resampleLayout(img.width, plan)

  const ex = getInstance()
  const have = ex.memory.buffer.byteLength
  if (top > have) ex.memory.grow(Math.ceil((top - have) / PAGE))
  const buf = ex.memory.buffer // after grow: the old buffer is detached
  const i32 = new Int32Array(buf)
  const u8 = new Uint8Array(buf)
  if (needH) {
    i32.set(ch.bounds, hBounds / 4)
    i32.set(ch.weights, hWeights / 4)
  }
  if (needV) {
    i32.set(cv.bounds, vBounds / 4)
    i32.set(cv.weights, vWeights / 4)
  }
  u8.set(img.data.subarray(first * inRow, last * inRow), src)
  if (needH) ex.horizontal(src, inRow, rows, outW, hBounds, hWeights, ch.ksize, needV ? mid : dst)
  if (needV) ex.vertical(needH ? mid : src, outRow, outH, vBounds, vWeights, cv.ksize, needH ? first : 0, dst)
  const data = u8.slice(dst, dst + outW * outH * 3)
  if (buf.byteLength > RETAIN_MAX_BYTES) instance = null
  return { width: outW, height: outH, data }
}

// For the tests: how many instances this thread has made, the current one's memory, and the retention bound.
export function resampleWasmState(): { instancesCreated: number; memoryBytes: number; retainMaxBytes: number } {
  return { instancesCreated, memoryBytes: instance ? instance.memory.buffer.byteLength : 0, retainMaxBytes: RETAIN_MAX_BYTES }
}
