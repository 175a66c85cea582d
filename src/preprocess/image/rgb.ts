// 8-bit RGB rasters and the pixel operations the IXC transforms are made of. Every operation mirrors the PIL call
// the trainer makes (Image.transpose(TRANSPOSE), ImageOps/transforms pad, ToTensor + Normalize), because parity with
// the trainer's tensors is the contract (models/README.md).

export interface RgbImage {
  width: number
  height: number
  data: Uint8Array // row-major, 3 bytes per pixel
}

export function createRgb(width: number, height: number, fill = 255): RgbImage {
  const data = new Uint8Array(width * height * 3)
  if (fill !== 0) data.fill(fill)
  return { width, height, data }
}

// PIL Image.TRANSPOSE: swaps the axes (pixel (x, y) goes to (y, x)).
export function transposeRgb(img: RgbImage): RgbImage {
  const { width: w, height: h, data } = img
  const out = new Uint8Array(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * 3
      const d = (x * h + y) * 3
      out[d] = data[s]
      out[d + 1] = data[s + 1]
      out[d + 2] = data[s + 2]
    }
  }
  return { width: h, height: w, data: out }
}

// Copies `src` into `dst` with its top-left corner at (x0, y0); the caller guarantees it fits.
export function pasteRgb(dst: RgbImage, src: RgbImage, x0: number, y0: number): void {
  const rowBytes = src.width * 3
  for (let y = 0; y < src.height; y++) {
    const s = y * rowBytes
    dst.data.set(src.data.subarray(s, s + rowBytes), ((y0 + y) * dst.width + x0) * 3)
  }
}

// Pads at the bottom to `height` rows with `color` (IXC's padding_336 with top_padding = 0).
export function padBottom(img: RgbImage, height: number, color: readonly number[]): RgbImage {
  if (height === img.height) return img
  const out = createRgb(img.width, height, 0)
  out.data.set(img.data, 0)
  for (let i = img.data.length; i < out.data.length; i += 3) {
    out.data[i] = color[0]
    out.data[i + 1] = color[1]
    out.data[i + 2] = color[2]
  }
  return out
}

export function fillRect(img: RgbImage, x0: number, y0: number, w: number, h: number, color: readonly number[]): void {
  const x1 = Math.min(img.width, x0 + w)
  const y1 = Math.min(img.height, y0 + h)
  for (let y = Math.max(0, y0); y < y1; y++) {
    for (let x = Math.max(0, x0); x < x1; x++) {
      const i = (y * img.width + x) * 3
      img.data[i] = color[0]
      img.data[i + 1] = color[1]
      img.data[i + 2] = color[2]
    }
  }
}

// ToTensor (/255, HWC -> CHW) then Normalize(mean, std), as float32 [1, 3, H, W]. The division and subtraction
// are done in float32 like torchvision so the values match the trainer's to the last bits that matter.
export function normalizeToTensor(img: RgbImage, mean: readonly number[], std: readonly number[]): Float32Array {
  const { width: w, height: h, data } = img
  const plane = w * h
  const out = new Float32Array(3 * plane)
  // the value depends on the byte alone: 256 entries per channel computed once, then a table lookup per pixel
  const luts = [0, 1, 2].map((c) => {
    const m = Math.fround(mean[c]!)
    const s = Math.fround(std[c]!)
    return Float32Array.from({ length: 256 }, (_, b) => Math.fround(Math.fround(Math.fround(b / 255) - m) / s))
  })
  const [r, g, b] = luts as [Float32Array, Float32Array, Float32Array]
  // one pass over the pixels writing the three planes, not a pass per channel: the source is read once (the step
  // 11.6 -> 10.0 ms on a 1120x1120 tensor, 2.9 -> 2.4 ms at 560x560, bench/README.md); most of what remains is the
  // fresh array's pages faulting in on first write
  for (let p = 0, i = 0; p < plane; p++, i += 3) {
    out[p] = r[data[i]!]!
    out[plane + p] = g[data[i + 1]!]!
    out[2 * plane + p] = b[data[i + 2]!]!
  }
  return out
}
