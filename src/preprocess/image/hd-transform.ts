// IXC-2.5's HD transforms (ixc_utils.Image_transform and Video_transform) with the manifest's numbers, producing
// vision.onnx's `image` input. The steps and their order follow the trainer exactly (models/README.md, "Image
// preprocessing" / "Video preprocessing" step 4); the resize is our port of PIL bilinear.
import { normalizeToTensor, transposeRgb, type RgbImage, type TensorCanvas } from './rgb.ts'
import { resizeBilinear } from './pil-resize.ts'

// `preprocess.image` of the manifest (the fields this module reads).
export interface ImagePreprocessParams {
  tile_size: number
  patch_size: number
  hd_num: number
  hd_num_multi: number
  resize: string
  pad_color: number[]
  pad_side: string
  transpose_portrait: boolean
  mean: number[]
  std: number[]
  decode?: 'normalized' | 'published'
  multi_count?: 'images' | 'media'
}

export interface ImageTensor {
  data: Float32Array // [1, 3, height, width], CLIP-normalised
  width: number
  height: number
  rows: number
  cols: number
  tokens: number // T_img
}

// Refuses manifests asking for a transform this module does not implement, instead of silently diverging from
// the trainer.
export function checkImageParams(p: ImagePreprocessParams): void {
  if (p.resize !== 'pil_bilinear') throw new Error(`preprocess.image.resize "${p.resize}" is not supported`)
  if (p.pad_side !== 'bottom') throw new Error(`preprocess.image.pad_side "${p.pad_side}" is not supported`)
  if (p.transpose_portrait !== true) throw new Error('preprocess.image.transpose_portrait must be true')
  if (!(p.tile_size > 0 && p.patch_size > 0 && (p.tile_size / p.patch_size) % 2 === 0)) {
    throw new Error('preprocess.image.tile_size must be an even multiple of patch_size')
  }
}

// T_img = (rows·cols + 1)·G² + 1 + (rows + 1)·G with G = S / patch / 2 (global view with a separator per row, one
// glb separator, the tile grid with a separator per row).
export function imageTokenCount(rows: number, cols: number, tileSize: number, patchSize: number): number {
  const g = tileSize / patchSize / 2
  return (rows * cols + 1) * g * g + 1 + (rows + 1) * g
}

// The column count IXC chooses: the largest `scale` with scale·ceil(scale/ratio) ≤ hd_num, but never more columns
// than the image needs at native resolution.
export function chooseColumns(width: number, height: number, hdNum: number, tile: number): number {
  const ratio = width / height
  let scale = 1
  while (scale * Math.ceil(scale / ratio) <= hdNum) scale++
  scale--
  return Math.min(Math.ceil(width / tile), scale)
}

// The grid an image will get, from its (oriented) size alone: lets admission count tokens before any pixel work.
export function planImageGrid(width: number, height: number, hdNum: number, tile: number): { rows: number; cols: number; newW: number; newH: number } {
  const portrait = width < height
  const w = portrait ? height : width
  const h = portrait ? width : height
  const ratio = w / h
  const scale = chooseColumns(w, h, hdNum, tile)
  const newW = Math.trunc(scale * tile)
  const newH = Math.trunc(newW / ratio)
  if (newH < 1) throw new RangeError(`image aspect ratio ${w}:${h} is too extreme`)
  const along = scale
  const across = Math.ceil(newH / tile)
  return portrait ? { rows: along, cols: across, newW, newH } : { rows: across, cols: along, newW, newH }
}

// The tensor of `canvas` (the resized image padded, transposed back when the transform transposed it), normalised.
function finish(img: RgbImage, p: ImagePreprocessParams, canvas: TensorCanvas): ImageTensor {
  const S = p.tile_size
  const width = canvas.transpose ? canvas.height : canvas.width
  const height = canvas.transpose ? canvas.width : canvas.height
  const rows = height / S
  const cols = width / S
  return {
    data: normalizeToTensor(img, p.mean, p.std, canvas),
    width,
    height,
    rows,
    cols,
    tokens: imageTokenCount(rows, cols, S, p.patch_size),
  }
}

// Values in the tensor imageTransform makes of a `width` x `height` image: its buffer can be taken in advance
// (tensor-pool.ts) from the header's size alone.
export function imageTensorLength(width: number, height: number, p: ImagePreprocessParams, hdNum: number): number {
  const { rows, cols } = planImageGrid(width, height, hdNum, p.tile_size)
  return 3 * rows * cols * p.tile_size * p.tile_size
}

// Image_transform: transpose portrait, resize to scale·S wide, pad white at the bottom, transpose back, normalise
// (the last three in one pass, normalizeToTensor). `out`: a buffer for the tensor (imageTensorLength values).
export function imageTransform(img: RgbImage, p: ImagePreprocessParams, hdNum: number, out?: Float32Array): ImageTensor {
  const S = p.tile_size
  const trans = img.width < img.height
  let cur = trans ? transposeRgb(img) : img
  const { newW, newH } = planImageGrid(cur.width, cur.height, hdNum, S)
  cur = resizeBilinear(cur, newW, newH)
  return finish(cur, p, { width: newW, height: Math.ceil(newH / S) * S, padColor: p.pad_color, transpose: trans, out })
}

// Video_transform: make landscape, resize so the short side is S, pad the long side at its end to a multiple of S,
// restore the orientation, normalise.
export function videoTransform(img: RgbImage, p: ImagePreprocessParams): ImageTensor {
  const S = p.tile_size
  const trans = img.width < img.height
  let cur = trans ? transposeRgb(img) : img
  // S·w/h, in this order (the trainer's expression; S·(w/h) can differ in the last bit and truncate differently)
  const newW = Math.trunc((S * cur.width) / cur.height)
  if (newW < 1) throw new RangeError('video layout aspect ratio is too extreme')
  cur = resizeBilinear(cur, newW, S)
  // the long side (the width, here) padded at its end
  return finish(cur, p, { width: Math.ceil(newW / S) * S, height: S, padColor: p.pad_color, transpose: trans })
}
