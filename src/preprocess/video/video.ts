// Video → vision.onnx input: probe (limits before decoding), frames at the manifest's fps, selection, per-frame
// resize, the ixc_stack layout, Video_transform; or, for `layout: "published"`, the published path (frames by
// index, labels in the model's font). models/README.md "Video preprocessing" is the specification.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { ServiceError } from '../../errors.ts'
import type { ImagePreprocessParams, ImageTensor } from '../image/hd-transform.ts'
import type { RgbImage } from '../image/rgb.ts'
import { inlineTransformer, type Transformer } from '../media/transformer.ts'
import type { MediaConfig } from '../media/media-config.ts'
import { DEMUXER, type VideoFormat } from '../media/sniff.ts'
import { extractFrames, extractFramesAt, ffmpegAvailable, probeVideo, type FfmpegBinaries } from './ffmpeg.ts'
import type { VideoPreprocessParams } from './layout.ts'
import { labelInkOffset, parseLabelFont } from './label-font.ts'
import { samplePositions, type LabelMask, type PublishedVideoParams } from './published.ts'
import { renderTextCoverage } from '../image/sharp.ts'

export type VideoParams = VideoPreprocessParams | PublishedVideoParams

// Most frames the fps filter may produce for a video within the duration limit (+1 for the frame at t = 0).
export function maxDecodedFrames(cfg: MediaConfig, fps: number): number {
  return Math.ceil(cfg.maxVideoDurationS * fps) + 1
}

// `input` is either the bytes (written to a server-named file in `dir`) or the path of a file already in `dir`.
export async function preprocessVideo(
  input: Uint8Array | string,
  format: VideoFormat,
  dir: string,
  video: VideoParams,
  image: ImagePreprocessParams,
  cfg: MediaConfig,
  signal?: AbortSignal,
  transformer: Transformer = inlineTransformer,
  modelDir = '.', // where a published layout's label font file lives
): Promise<ImageTensor> {
  const bins = { ffmpeg: cfg.ffmpegPath, ffprobe: cfg.ffprobePath }
  if (!(await ffmpegAvailable(bins))) {
    throw new ServiceError('video_unavailable', 'video decoding is not available on this server (ffmpeg missing)')
  }
  let file: string
  if (typeof input === 'string') {
    file = input
  } else {
    file = join(dir, `${randomUUID()}.bin`)
    await writeFile(file, input, { flag: 'wx' })
  }
  const demuxer = DEMUXER[format]
  const timeoutMs = Math.round(cfg.videoTimeoutS * 1000)
  const probe = await probeVideo(bins, file, demuxer, dir, {
    timeoutMs,
    maxStreams: cfg.maxVideoStreams,
    maxDurationS: cfg.maxVideoDurationS,
    maxWidth: cfg.maxVideoWidth,
    maxHeight: cfg.maxVideoHeight,
    probeSizeBytes: cfg.videoProbeBytes,
  }, signal, video.layout === 'published')
  if (video.layout === 'published') {
    return publishedVideo(bins, file, demuxer, dir, probe.avgFps!, probe.packets!, video, image, cfg, timeoutMs, modelDir, signal, transformer)
  }
  const frames = await resizedFrames(
    (onFrame) => extractFrames(bins, file, demuxer, dir, { fps: video.fps, frameCap: maxDecodedFrames(cfg, video.fps) + 1, timeoutMs, maxWidth: cfg.maxVideoWidth, maxHeight: cfg.maxVideoHeight }, onFrame, signal),
    (rgb) => transformer.run<RgbImage>({ op: 'frame', rgb, longSide: video.frame_long_side }),
  )
  return transformer.run<ImageTensor>({ op: 'video', frames, video, image })
}

// Frames are shrunk as they arrive (the selection needs the total count, not the full-size pixels); a failed
// resize is reported after ffmpeg is done, never left unhandled.
async function resizedFrames(decode: (onFrame: (f: RgbImage) => void) => Promise<number>, resize: (f: RgbImage) => Promise<RgbImage>): Promise<RgbImage[]> {
  const frames: Array<Promise<RgbImage>> = []
  await decode((f) => {
    const p = resize(f)
    p.catch(() => {})
    frames.push(p)
  }).catch(async (err) => {
    await Promise.allSettled(frames)
    throw err
  })
  return Promise.all(frames)
}

const fonts = new Map<string, Promise<Buffer>>()
const labelCache = new Map<string, Promise<LabelMask>>()

// `<IMAGE i>` in the model's font at its size: libvips' ink box plus its offset from PIL's anchor point.
export function publishedLabel(fontFile: string, sizePx: number, text: string): Promise<LabelMask> {
  const key = `${fontFile}\0${sizePx}\0${text}`
  let hit = labelCache.get(key)
  if (!hit) {
    let bytes = fonts.get(fontFile)
    if (!bytes) fonts.set(fontFile, (bytes = readFile(fontFile)))
    hit = bytes.then(async (buf) => {
      const font = parseLabelFont(buf, text)
      const m = await renderTextCoverage(text, fontFile, font.family, sizePx)
      return { ...m, ...labelInkOffset(font, text, sizePx) }
    })
    hit.catch(() => labelCache.delete(key))
    labelCache.set(key, hit)
  }
  return hit
}

// The published load_video + frame2img + Video_transform (video/published.ts has the arithmetic).
async function publishedVideo(
  bins: FfmpegBinaries, file: string, demuxer: string, dir: string, avgFps: number, packets: number, video: PublishedVideoParams,
  image: ImagePreprocessParams, cfg: MediaConfig, timeoutMs: number, modelDir: string, signal: AbortSignal | undefined, transformer: Transformer,
): Promise<ImageTensor> {
  // decord's len(vid) is the packet count; the published range() raises for a stride of 0 (avg_fps < 0.5 at
  // fps 1) and round() for a NaN rate (a stream without avg_frame_rate, e.g. a one-frame WebM)
  const positions = samplePositions(avgFps, packets, video.fps, video.max_frames)
  if (positions === null) throw new ServiceError('media_invalid', `video frame rate ${avgFps} gives no sampling stride (the published load_video fails on it)`)
  if (positions.length === 0) throw new ServiceError('media_invalid', 'video has no frames')
  let landscape = true
  const resized = await resizedFrames(
    (onFrame) => extractFramesAt(bins, file, demuxer, dir, { indices: positions, timeoutMs, maxWidth: cfg.maxVideoWidth, maxHeight: cfg.maxVideoHeight }, onFrame, signal),
    (rgb) => {
      landscape = rgb.width > rgb.height // frame2img's leftover w, h: the last frame's original size
      return transformer.run<RgbImage>({ op: 'frame-published', rgb, longSide: video.frame_long_side })
    },
  )
  // Fewer decoded frames than positions: packets that decode to no frame (see models/README.md). decord
  // substitutes its last decoded frame for a frame it cannot get; so do we.
  while (resized.length < positions.length) resized.push(resized[resized.length - 1])
  const fontFile = join(modelDir, video.label_font.file)
  const labels = await Promise.all(resized.map((_, i) => publishedLabel(fontFile, video.label_font.size, `<IMAGE ${i}>`)))
  // the same frame object twice cannot be transferred twice: copy the substitutes
  const seen = new Set<RgbImage>()
  const owned = resized.map((f) => (seen.has(f) ? { ...f, data: f.data.slice() } : (seen.add(f), f)))
  return transformer.run<ImageTensor>({ op: 'video-published', frames: owned, landscape, labels, video, image })
}
