// The published IXC-2.5 video path (ixc_utils.py of internlm-xcomposer2d5-7b-reward: load_video, frame2img,
// Video_transform), ported literally for `preprocess.video.layout: "published"`. Every rounding here is the
// published one: Python round (half to even) for the stride, int() truncation for sizes, a strict w > h for the
// orientation, a 10-px gap after every frame including the last, a width-2 PIL line covering the two rows/columns
// starting 5 px into the gap, Video_transform's int(560 * (w / h)). models/README.md "Video preprocessing,
// published layout" is the specification; trainer/reward_trainer/media.py is the same port in Python.
import { createRgb, normalizeToTensor, padBottom, pasteRgb, fillRect, transposeRgb, type RgbImage } from '../image/rgb.ts'
import { resizeBilinear } from '../image/pil-resize.ts'
import { imageTokenCount, type ImagePreprocessParams, type ImageTensor } from '../image/hd-transform.ts'
import { roundHalfEven } from './layout.ts'

// `preprocess.video` of a manifest with the published layout.
export interface PublishedVideoParams {
  layout: 'published'
  fps: number // samples per second: stride = round(avg_fps / fps) frames (published: 1)
  max_frames: number // published num_frm = 32
  frame_long_side: number // published 560 * 2
  header_height: number // published pad = 40 (the label band above each frame)
  gap: number // published 10
  line_width: number // published 2
  label_font: { file: string; size: number } // published SimHei.ttf at size 40; `file` is a model file
}

export function checkPublishedParams(p: PublishedVideoParams): void {
  if (!(p.fps > 0 && p.max_frames >= 1 && p.frame_long_side >= 1 && p.label_font.size >= 1)) {
    throw new Error('preprocess.video: fps, max_frames, frame_long_side, label_font.size must be positive')
  }
  // the line offset (5) and PIL's width-2 rasterisation are the published code's literals, not parameters
  if (p.gap !== 10 || p.line_width !== 2) throw new Error('preprocess.video (published): gap must be 10 and line_width 2')
}

// load_video: stride s = round(avg_fps / fps) (Python, half to even); positions 0, s, 2s, … < frameCount; more
// than max_frames of them -> positions[int(i * (n / (max_frames + 1)))] for i < max_frames (so the last ~1/33 of
// a long video is never seen). Returns null where the published code raises (s = 0 or a NaN/∞ rate).
export function samplePositions(avgFps: number, frameCount: number, fps: number, maxFrames: number): number[] | null {
  const q = avgFps / fps
  if (!Number.isFinite(q)) return null
  const stride = roundHalfEven(q)
  if (stride < 1) return null
  const all: number[] = []
  for (let k = 0; k < frameCount; k += stride) all.push(k)
  if (all.length <= maxFrames) return all
  const step = all.length / (maxFrames + 1)
  return Array.from({ length: maxFrames }, (_, i) => all[Math.trunc(i * step)])
}

// frame2img's per-frame size: the long side becomes L, the other int(L / (w/h)) or int(L * (w/h)), strict w > h.
export function publishedFrameSize(w: number, h: number, longSide: number): [number, number] {
  const scale = w / h
  const size: [number, number] = w > h ? [longSide, Math.trunc(longSide / scale)] : [Math.trunc(longSide * scale), longSide]
  if (size[0] < 1 || size[1] < 1) throw new RangeError(`video frame aspect ratio ${w}:${h} is too extreme`)
  return size
}

export function resizePublishedFrame(frame: RgbImage, longSide: number): RgbImage {
  const [w, h] = publishedFrameSize(frame.width, frame.height, longSide)
  return resizeBilinear(frame, w, h)
}

// A rendered label: coverage (0..255) of its ink box, placed at (dx, dy) from the anchor point.
export interface LabelMask {
  width: number
  height: number
  data: Uint8Array
  dx: number
  dy: number
}

// PIL's draw.text(fill='black') on an RGB image: out = DIV255(in · (255 − a)) per channel (ImagingFill2's BLEND
// with ink 0), clipped to the canvas.
function blendLabel(canvas: RgbImage, m: LabelMask, x0: number, y0: number): void {
  for (let r = 0; r < m.height; r++) {
    const y = y0 + m.dy + r
    if (y < 0 || y >= canvas.height) continue
    for (let c = 0; c < m.width; c++) {
      const x = x0 + m.dx + c
      const a = m.data[r * m.width + c]
      if (a === 0 || x < 0 || x >= canvas.width) continue
      const i = (y * canvas.width + x) * 3
      for (let k = 0; k < 3; k++) {
        const t = canvas.data[i + k] * (255 - a) + 128
        canvas.data[i + k] = ((t >> 8) + t) >> 8
      }
    }
  }
}

const BLACK = [0, 0, 0]

// frame2img after the resize: `frames` are resized, `landscape` is the published `w > h` of the last ORIGINAL
// frame (the loop variable left over). Per frame: paste, label, then the separator (not after the last).
export function layoutPublished(frames: RgbImage[], landscape: boolean, labels: LabelMask[], p: PublishedVideoParams): RgbImage {
  if (frames.length === 0) throw new RangeError('no frames to lay out')
  const pad = p.header_height
  const n = frames.length
  if (landscape) {
    const width = Math.max(...frames.map((f) => f.width))
    const height = frames.reduce((a, f) => a + f.height + p.gap + pad, 0)
    const canvas = createRgb(width, height)
    let y = 0
    frames.forEach((f, i) => {
      pasteRgb(canvas, f, 0, pad + y)
      blendLabel(canvas, labels[i], 0, y)
      if (i + 1 < n) fillRect(canvas, 0, pad + y + f.height + 5, width, 2, BLACK)
      y += f.height + p.gap + pad
    })
    return canvas
  }
  const width = frames.reduce((a, f) => a + f.width + p.gap, 0)
  const height = Math.max(...frames.map((f) => f.height)) + pad
  const canvas = createRgb(width, height)
  let x = 0
  frames.forEach((f, i) => {
    pasteRgb(canvas, f, x, pad)
    blendLabel(canvas, labels[i], x, 0)
    if (i + 1 < n) fillRect(canvas, x + f.width + 5, 0, 2, height, BLACK)
    x += f.width + p.gap
  })
  return canvas
}

// Video_transform up to the pixels: transpose a portrait canvas, height S and width int(S * (w / h)) (float64, in
// this order), pad the long side at its end with white to a multiple of S, restore the orientation. hd_num unused.
export function publishedVideoImage(img: RgbImage, S: number, padColor: readonly number[]): RgbImage {
  const trans = img.width < img.height
  let cur = trans ? transposeRgb(img) : img
  const newW = Math.trunc(S * (cur.width / cur.height))
  if (newW < 1) throw new RangeError('video layout aspect ratio is too extreme')
  cur = resizeBilinear(cur, newW, S)
  cur = padBottom(transposeRgb(cur), Math.ceil(newW / S) * S, padColor)
  return trans ? cur : transposeRgb(cur)
}

export function publishedVideoTransform(img: RgbImage, p: ImagePreprocessParams): ImageTensor {
  const S = p.tile_size
  const cur = publishedVideoImage(img, S, p.pad_color)
  const rows = cur.height / S
  const cols = cur.width / S
  return { data: normalizeToTensor(cur, p.mean, p.std), width: cur.width, height: cur.height, rows, cols, tokens: imageTokenCount(rows, cols, S, p.patch_size) }
}
