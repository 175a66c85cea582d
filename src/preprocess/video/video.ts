// Video → vision.onnx input: probe (limits before decoding), frames at the manifest's fps, selection, per-frame
// resize, the ixc_stack layout, Video_transform. models/README.md "Video preprocessing" is the specification.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { ServiceError } from '../../errors.ts'
import type { ImagePreprocessParams, ImageTensor } from '../image/hd-transform.ts'
import type { RgbImage } from '../image/rgb.ts'
import { inlineTransformer, type Transformer } from '../media/transformer.ts'
import type { MediaConfig } from '../media/media-config.ts'
import { DEMUXER, type VideoFormat } from '../media/sniff.ts'
import { extractFrames, ffmpegAvailable, probeVideo } from './ffmpeg.ts'
import type { VideoPreprocessParams } from './layout.ts'

// Most frames the fps filter may produce for a video within the duration limit (+1 for the frame at t = 0).
export function maxDecodedFrames(cfg: MediaConfig, fps: number): number {
  return Math.ceil(cfg.maxVideoDurationS * fps) + 1
}

// `input` is either the bytes (written to a server-named file in `dir`) or the path of a file already in `dir`.
export async function preprocessVideo(
  input: Uint8Array | string,
  format: VideoFormat,
  dir: string,
  video: VideoPreprocessParams,
  image: ImagePreprocessParams,
  cfg: MediaConfig,
  signal?: AbortSignal,
  transformer: Transformer = inlineTransformer,
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
  await probeVideo(bins, file, demuxer, dir, {
    timeoutMs,
    maxStreams: cfg.maxVideoStreams,
    maxDurationS: cfg.maxVideoDurationS,
    maxWidth: cfg.maxVideoWidth,
    maxHeight: cfg.maxVideoHeight,
    probeSizeBytes: cfg.videoProbeBytes,
  }, signal)
  // Frames are shrunk as they arrive (the selection needs the total count, not the full-size pixels); a failed
  // resize is reported after ffmpeg is done, never left unhandled.
  const frames: Array<Promise<RgbImage>> = []
  await extractFrames(
    bins, file, demuxer, dir,
    { fps: video.fps, frameCap: maxDecodedFrames(cfg, video.fps) + 1, timeoutMs, maxWidth: cfg.maxVideoWidth, maxHeight: cfg.maxVideoHeight },
    (f) => {
      const p = transformer.run<RgbImage>({ op: 'frame', rgb: f, longSide: video.frame_long_side })
      p.catch(() => {})
      frames.push(p)
    },
    signal,
  ).catch(async (err) => {
    await Promise.allSettled(frames)
    throw err
  })
  return transformer.run<ImageTensor>({ op: 'video', frames: await Promise.all(frames), video, image })
}
