// IEEE 754 binary16 <-> binary32 for float16 graphs' inputs and outputs. Node 20 has no Float16Array, and
// onnxruntime-node takes and returns float16 tensors as Uint16Array bit patterns, so the conversion is done
// here on the bits: round to nearest even, overflow to ±Infinity, subnormals kept, NaN stays NaN.
const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

export function toFloat16Bits(x: number): number {
  f32[0] = x
  const b = u32[0]!
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  const mant = b & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0) // Inf / NaN (quiet)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00 // too large: ±Infinity
  if (e <= 0) {
    if (e < -10) return sign // below half the smallest subnormal: ±0
    const m = mant | 0x800000 // implicit 1
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = m & ((1 << shift) - 1)
    let h = m >>> shift
    if (rest > half || (rest === half && h & 1)) h++
    return sign | h // a carry into the exponent field is the correct smallest normal
  }
  let h = (e << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++ // a carry may round up to Infinity: correct
  return sign | h
}

export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant ? NaN : sign * Infinity
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

export function float32ToFloat16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = toFloat16Bits(src[i]!)
  return out
}

export function float16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = fromFloat16Bits(src[i]!)
  return out
}
