// The pixel work of the media path (pure JS: PIL-bilinear resizes, layout, normalisation) as three operations,
// run either on the calling thread or in transform workers (transformer.ts). A 24 MP photo costs ~0.5 s of CPU
// here; off the event loop that is latency for one request instead of a stall for all of them.
import { imageTransform, videoTransform, type ImagePreprocessParams, type ImageTensor } from '../image/hd-transform.ts'
import type { RgbImage } from '../image/rgb.ts'
import { layoutFrames, resizeLongSide, type VideoPreprocessParams } from '../video/layout.ts'
import { layoutPublished, publishedVideoTransform, resizePublishedFrame, type LabelMask, type PublishedVideoParams } from '../video/published.ts'

export type TransformRequest =
  | { op: 'image'; rgb: RgbImage; image: ImagePreprocessParams; hdNum: number; out?: Float32Array }
  | { op: 'frame'; rgb: RgbImage; longSide: number }
  | { op: 'video'; frames: RgbImage[]; video: VideoPreprocessParams; image: ImagePreprocessParams }
  | { op: 'frame-published'; rgb: RgbImage; longSide: number }
  | { op: 'video-published'; frames: RgbImage[]; landscape: boolean; labels: LabelMask[]; video: PublishedVideoParams; image: ImagePreprocessParams }

export type TransformResult = ImageTensor | RgbImage

export function runTransform(req: TransformRequest): TransformResult {
  switch (req.op) {
    case 'image':
      return imageTransform(req.rgb, req.image, req.hdNum, req.out)
    case 'frame':
      return resizeLongSide(req.rgb, req.longSide)
    case 'video':
      return videoTransform(layoutFrames(req.frames, req.video), req.image)
    case 'frame-published':
      return resizePublishedFrame(req.rgb, req.longSide)
    case 'video-published':
      return publishedVideoTransform(layoutPublished(req.frames, req.landscape, req.labels, req.video), req.image)
  }
}

// Buffers that can move between threads without a copy.
export function transferables(v: TransformRequest | TransformResult): ArrayBuffer[] {
  if ('op' in v) {
    if (v.op === 'video' || v.op === 'video-published') return v.frames.map((f) => f.data.buffer as ArrayBuffer)
    return v.op === 'image' && v.out ? [v.rgb.data.buffer as ArrayBuffer, v.out.buffer as ArrayBuffer] : [v.rgb.data.buffer as ArrayBuffer]
  }
  return [v.data.buffer as ArrayBuffer]
}
