// Frame selection, per-frame resize and the `ixc_stack` layout (IXC-2.5's frame2img with the manifest's numbers
// and a bitmap font instead of SimHei). The exact geometry is models/README.md "Video preprocessing" 2–3; the
// trainer (trainer/reward_trainer/media.py) produces the same canvas pixel for pixel.
import { createRgb, fillRect, pasteRgb, type RgbImage } from '../image/rgb.ts'
import { resizeBilinear } from '../image/pil-resize.ts'

export interface LabelFont {
  width: number
  height: number
  advance?: number // pen advance per character in font pixels (default width + 1)
  glyphs: Record<string, string[]>
}

// `preprocess.video` of the manifest (the fields this module reads).
export interface VideoPreprocessParams {
  fps: number
  max_frames: number
  frame_long_side: number
  layout: 'ixc_stack'
  header_height: number
  gap: number
  line_width: number
  label_scale: number
  label_font: LabelFont
}

const BLACK = [0, 0, 0]

export function checkVideoParams(p: VideoPreprocessParams): void {
  if (p.layout !== 'ixc_stack') throw new Error(`preprocess.video.layout "${p.layout}" is not supported`)
  if (!(p.fps > 0 && p.max_frames >= 1 && p.frame_long_side >= 1)) throw new Error('preprocess.video: fps, max_frames, frame_long_side must be positive')
  for (const [ch, rows] of Object.entries(p.label_font.glyphs)) {
    if (rows.length !== p.label_font.height || rows.some((r) => r.length !== p.label_font.width || /[^01]/.test(r))) {
      throw new Error(`preprocess.video.label_font glyph ${JSON.stringify(ch)} does not match ${p.label_font.width}x${p.label_font.height}`)
    }
  }
}

// Indices of the frames kept when more than max_frames were decoded: floor(i·n/(max_frames+1)).
export function selectFrameIndices(n: number, maxFrames: number): number[] {
  if (n <= maxFrames) return Array.from({ length: n }, (_, i) => i)
  return Array.from({ length: maxFrames }, (_, i) => Math.floor((i * n) / (maxFrames + 1)))
}

// Python's round(): half to even (the trainer computes the short side with it).
export function roundHalfEven(x: number): number {
  const f = Math.floor(x)
  const d = x - f
  if (d > 0.5) return f + 1
  if (d < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}

// Long side -> frame_long_side; short side max(1, round(short·L/long)) (models/README.md video step 2).
export function resizeLongSide(frame: RgbImage, longSide: number): RgbImage {
  const { width: w, height: h } = frame
  const [nw, nh] = w >= h
    ? [longSide, Math.max(1, roundHalfEven((h * longSide) / w))]
    : [Math.max(1, roundHalfEven((w * longSide) / h)), longSide]
  return resizeBilinear(frame, nw, nh)
}

// Ink outside the canvas is clipped (fillRect); nothing else is: a label wider than a narrow portrait frame runs
// into the next band, exactly as the trainer's numpy drawing does.
function drawLabel(canvas: RgbImage, text: string, x0: number, y0: number, p: VideoPreprocessParams): void {
  const { width, height, glyphs } = p.label_font
  const advance = p.label_font.advance ?? width + 1
  const s = p.label_scale
  for (let k = 0; k < text.length; k++) {
    const rows = glyphs[text[k]]
    if (!rows) continue
    const cx = x0 + k * advance * s
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        if (rows[r][c] === '1') fillRect(canvas, cx + c * s, y0 + r * s, s, s, BLACK)
      }
    }
  }
}

// Lays out already-resized frames on one white canvas with `<IMAGE i>` header bands and separator lines.
export function layoutIxcStack(frames: RgbImage[], p: VideoPreprocessParams): RgbImage {
  if (frames.length === 0) throw new RangeError('no frames to lay out')
  const H = p.header_height
  const last = frames[frames.length - 1]
  const lineOffset = Math.floor((p.gap - p.line_width) / 2)
  if (last.width >= last.height) {
    const width = Math.max(...frames.map((f) => f.width))
    const height = frames.reduce((a, f) => a + H + f.height, 0) + p.gap * (frames.length - 1)
    const canvas = createRgb(width, height)
    let y = 0
    frames.forEach((f, i) => {
      drawLabel(canvas, `<IMAGE ${i}>`, 2, y + 2, p)
      pasteRgb(canvas, f, 0, y + H)
      if (i + 1 < frames.length) fillRect(canvas, 0, y + H + f.height + lineOffset, width, p.line_width, BLACK)
      y += H + f.height + p.gap
    })
    return canvas
  }
  const height = H + Math.max(...frames.map((f) => f.height))
  const width = frames.reduce((a, f) => a + f.width, 0) + p.gap * (frames.length - 1)
  const canvas = createRgb(width, height)
  let x = 0
  frames.forEach((f, i) => {
    drawLabel(canvas, `<IMAGE ${i}>`, x + 2, 2, p)
    pasteRgb(canvas, f, x, H)
    if (i + 1 < frames.length) fillRect(canvas, x + f.width + lineOffset, 0, p.line_width, height, BLACK)
    x += f.width + p.gap
  })
  return canvas
}


// Frames (already resized) -> one laid-out RGB canvas: selection, then the ixc_stack layout.
export function layoutFrames(frames: RgbImage[], p: VideoPreprocessParams): RgbImage {
  const picked = selectFrameIndices(frames.length, p.max_frames).map((i) => frames[i])
  return layoutIxcStack(picked, p)
}
