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

// Where normalizeToTensor puts the image: on a canvas of `width` x `height` (at least the image's) filled with
// `padColor` around it (image at the top left: IXC pads at the bottom and, for video, at the right), then
// transposed when `transpose` (PIL's TRANSPOSE). `out`: a buffer to write into (every element is written), e.g. one
// back from the engine worker (tensor-pool.ts); a fresh array otherwise.
export interface TensorCanvas {
  width: number
  height: number
  padColor: readonly number[]
  transpose: boolean
  out?: Float32Array
}

// ToTensor (/255, HWC -> CHW) then Normalize(mean, std), as float32 [1, 3, H, W]. The division and subtraction
// are done in float32 like torchvision so the values match the trainer's to the last bits that matter. With a
// canvas, the tensor is that of transposeRgb(pad(img)) without building either raster: the pad and the transpose
// cost a copy of the pixels each (3.4 ms of 62 for a 2000x1500 photo, bench/README.md), and a fresh array's pages
// fault in on first write (a reused 15 MB buffer fills in 0.3 ms, a fresh one in 6.9).
export function normalizeToTensor(img: RgbImage, mean: readonly number[], std: readonly number[], canvas?: TensorCanvas): Float32Array {
  const { width: w, height: h, data } = img
  const cw = canvas?.width ?? w
  const ch = canvas?.height ?? h
  if (cw < w || ch < h) throw new RangeError(`canvas ${cw}x${ch} is smaller than the image ${w}x${h}`)
  const plane = cw * ch
  const out = canvas?.out ?? new Float32Array(3 * plane)
  if (out.length !== 3 * plane) throw new RangeError(`tensor buffer holds ${out.length} values, the canvas needs ${3 * plane}`)
  // the value depends on the byte alone: 256 entries per channel computed once, then a table lookup per pixel
  const luts = [0, 1, 2].map((c) => {
    const m = Math.fround(mean[c]!)
    const s = Math.fround(std[c]!)
    return Float32Array.from({ length: 256 }, (_, b) => Math.fround(Math.fround(Math.fround(b / 255) - m) / s))
  })
  const [r, g, b] = luts as [Float32Array, Float32Array, Float32Array]
  // the pad colour as a Uint8Array stores it (padBottom's raster), through the same tables
  const pad = luts.map((l, c) => l[(canvas?.padColor[c] ?? 0) & 255]!)
  const fill = (from: number, to: number) => {
    if (to > from) for (let c = 0; c < 3; c++) out.fill(pad[c]!, c * plane + from, c * plane + to)
  }
  if (!canvas?.transpose) {
    // one pass over the pixels writing the three planes, not a pass per channel: the source is read once (the
    // step 11.6 -> 10.0 ms on a 1120x1120 tensor, 2.9 -> 2.4 ms at 560x560, bench/README.md)
    for (let y = 0; y < h; y++) {
      const row = y * cw
      for (let x = 0, i = y * w * 3; x < w; x++, i += 3) {
        const p = row + x
        out[p] = r[data[i]!]!
        out[plane + p] = g[data[i + 1]!]!
        out[2 * plane + p] = b[data[i + 2]!]!
      }
      fill(row + w, row + cw)
    }
    fill(h * cw, plane)
    return out
  }
  // transposed: output row x is the canvas' column x (written in order; the source is read down a column)
  for (let x = 0; x < w; x++) {
    const row = x * ch
    for (let y = 0, i = x * 3; y < h; y++, i += w * 3) {
      const p = row + y
      out[p] = r[data[i]!]!
      out[plane + p] = g[data[i + 1]!]!
      out[2 * plane + p] = b[data[i + 2]!]!
    }
    fill(row + h, row + ch)
  }
  fill(w * ch, plane)
  return out
}
