// The only file that spawns ffmpeg/ffprobe. Both run with a fixed argv on a server-generated file path, the
// demuxer forced from the sniffed magic bytes (never ffmpeg's probing, which is how an HLS playlist hidden in an
// upload gets opened), only the `file` protocol, no stdin, a wall-clock deadline enforced with SIGKILL, and capped
// stderr. Every child is tracked so tests can check that none outlives its request.
import { spawn, type ChildProcess } from 'node:child_process'
import { ServiceError } from '../../errors.ts'
import { PpmParseError, PpmStreamParser } from './ppm.ts'
import { abortReason } from '../media/slots.ts'
import type { RgbImage } from '../image/rgb.ts'

export interface FfmpegBinaries {
  ffmpeg: string
  ffprobe: string
}

export interface VideoProbeLimits {
  timeoutMs: number
  maxStreams: number
  maxDurationS: number
  maxWidth: number
  maxHeight: number
  probeSizeBytes: number
}

export interface VideoProbe {
  width: number
  height: number
  durationS: number | null // null when the container does not say
  streams: number
  // with `countPackets` only (the published layout): the first video stream's avg_frame_rate as a number (NaN for
  // ffprobe's "0/0", as decord's num/den gives) and its demuxed packet count (decord's len(vid))
  avgFps?: number
  packets?: number
}

const STDERR_CAP = 4096
const live = new Set<ChildProcess>()

// Number of ffmpeg/ffprobe children currently running (tests assert it returns to 0).
export function liveFfmpegChildren(): number {
  return live.size
}

interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
  timedOut: boolean
}

function run(bin: string, args: string[], timeoutMs: number, cwd: string, onStdout: (chunk: Buffer) => void, signal?: AbortSignal): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal))
      return
    }
    let child: ChildProcess
    try {
      // an empty environment: nothing of ours leaks into the decoder; a bare binary name is then looked up in
      // /usr/bin:/bin (Node's default), so FFMPEG_PATH/FFPROBE_PATH elsewhere must be absolute
      child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: {} })
    } catch (err) {
      reject(err)
      return
    }
    live.add(child)
    let stderr = ''
    let timedOut = false
    let failure: unknown = null
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    // the client left or the request deadline passed: nobody wants these frames any more
    const onAbort = () => {
      failure ??= abortReason(signal!)
      child.kill('SIGKILL')
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    child.stdout!.on('data', (chunk: Buffer) => {
      if (failure !== null) return
      try {
        onStdout(chunk)
      } catch (err) {
        // the consumer refused the output (limit, malformed frame): stop the decoder now
        failure = err
        child.kill('SIGKILL')
      }
    })
    child.stderr!.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_CAP) stderr += chunk.toString('utf8', 0, Math.min(chunk.length, STDERR_CAP - stderr.length))
    })
    child.on('error', (err) => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      live.delete(child)
      reject(err)
    })
    child.on('close', (code, exitSignal) => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      live.delete(child)
      if (failure !== null) reject(failure)
      else resolve({ code, signal: exitSignal, stderr, timedOut })
    })
  })
}

function unavailable(err: unknown): ServiceError | null {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOENT' || code === 'EACCES') return new ServiceError('video_unavailable', 'video decoding is not available on this server (ffmpeg missing)')
  return null
}

// A decoder killed from outside (the OOM killer's SIGKILL, an operator's SIGTERM) says nothing about the input:
// 503, retryable. A crash signal on its own (SIGSEGV, SIGABRT, ...) follows the input: 422 as before. Our own
// kills (timeout, abort, refused output) never get here: they are reported as what they are.
function killedBySignal(res: RunResult): ServiceError | null {
  if (res.code !== null || res.signal === null) return null
  if (['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'].includes(res.signal)) {
    return new ServiceError('decoder_killed', `the video decoder was killed (${res.signal}); retry later`, { 'retry-after': '1' })
  }
  return new ServiceError('media_invalid', `the video decoder crashed on this input (${res.signal})`)
}

// First line of ffmpeg's stderr, with the server's temp path removed (it is ours, but nobody else's business).
function firstLine(stderr: string, file: string): string {
  const line = stderr.split('\n').find((l) => l.trim() !== '') ?? 'unknown error'
  return line.replaceAll(file, '<input>').replace(/^\[[^\]]*@ 0x[0-9a-f]+\]\s*/, '').slice(0, 200)
}

let availability: Promise<boolean> | null = null
let availabilityFor = ''

// Whether the configured ffmpeg binary runs at all (checked once per binary path).
export function ffmpegAvailable(bins: FfmpegBinaries): Promise<boolean> {
  const key = `${bins.ffmpeg}\0${bins.ffprobe}`
  if (availability === null || availabilityFor !== key) {
    availabilityFor = key
    const probe = (bin: string) => run(bin, ['-hide_banner', '-version'], 10_000, '/', () => {}).then((r) => r.code === 0, () => false)
    availability = probe(bins.ffmpeg).then((ok) => ok && probe(bins.ffprobe))
  }
  return availability
}

// ffprobe with the same hardening, reading only what the limits need.
// `countPackets` reads the whole file (demux only, no decoding) to count the video stream's packets.
export async function probeVideo(bins: FfmpegBinaries, file: string, demuxer: string, cwd: string, limits: VideoProbeLimits, signal?: AbortSignal, countPackets = false): Promise<VideoProbe> {
  const args = [
    '-hide_banner', '-loglevel', 'error',
    '-protocol_whitelist', 'file', '-format_whitelist', demuxer,
    '-probesize', String(limits.probeSizeBytes), '-analyzeduration', '5000000', '-max_streams', String(limits.maxStreams),
    '-f', demuxer,
    ...(countPackets ? ['-count_packets'] : []),
    '-show_entries', `format=duration,nb_streams:stream=codec_type,width,height${countPackets ? ',avg_frame_rate,nb_read_packets' : ''}`,
    '-of', 'json', '-i', file,
  ]
  const chunks: Buffer[] = []
  let bytes = 0
  let res: RunResult
  try {
    res = await run(bins.ffprobe, args, limits.timeoutMs, cwd, (c) => {
      bytes += c.length
      if (bytes > 1 << 20) throw new ServiceError('media_invalid', 'video metadata is too large')
      chunks.push(c)
    }, signal)
  } catch (err) {
    throw unavailable(err) ?? err
  }
  if (res.timedOut) throw new ServiceError('media_limit_exceeded', `video probe exceeded ${limits.timeoutMs} ms`)
  const killed = killedBySignal(res)
  if (killed) throw killed
  if (res.code !== 0) {
    if (/max_streams|nb_streams|streams.*limit/i.test(res.stderr)) throw new ServiceError('media_limit_exceeded', `video has more than ${limits.maxStreams} streams`)
    throw new ServiceError('media_invalid', `video could not be read: ${firstLine(res.stderr, file)}`)
  }
  let info: { format?: { duration?: string; nb_streams?: number }; streams?: Array<{ codec_type?: string; width?: number; height?: number; avg_frame_rate?: string; nb_read_packets?: string }> }
  try {
    info = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new ServiceError('media_invalid', 'video metadata could not be parsed')
  }
  const streams = info.streams ?? []
  const nbStreams = Number(info.format?.nb_streams ?? streams.length)
  if (nbStreams > limits.maxStreams) throw new ServiceError('media_limit_exceeded', `video has ${nbStreams} streams, over the limit of ${limits.maxStreams}`)
  const video = streams.find((s) => s.codec_type === 'video')
  if (!video) throw new ServiceError('no_video_stream', 'the file has no video stream')
  const width = Number(video.width ?? 0)
  const height = Number(video.height ?? 0)
  if (!(width > 0 && height > 0)) throw new ServiceError('media_invalid', 'video stream has no dimensions')
  if (width > limits.maxWidth || height > limits.maxHeight) {
    throw new ServiceError('media_limit_exceeded', `video is ${width}x${height}, over the limit of ${limits.maxWidth}x${limits.maxHeight}`)
  }
  const d = Number(info.format?.duration)
  const durationS = Number.isFinite(d) && d >= 0 ? d : null
  if (durationS !== null && durationS > limits.maxDurationS) {
    throw new ServiceError('media_limit_exceeded', `video lasts ${durationS.toFixed(1)} s, over the limit of ${limits.maxDurationS} s`)
  }
  if (!countPackets) return { width, height, durationS, streams: nbStreams }
  const [num, den] = String(video.avg_frame_rate ?? '0/0').split('/').map(Number)
  return { width, height, durationS, streams: nbStreams, avgFps: num / den, packets: Number(video.nb_read_packets ?? 0) }
}

export interface ExtractAtOptions {
  indices: number[] // frame numbers in decoding output order (presentation order), ascending
  timeoutMs: number
  maxWidth: number
  maxHeight: number
}

// ffmpeg's select filter expression for exact frame numbers (`n` counts the frames the decoder outputs).
export function selectFilter(indices: number[]): string {
  return `select=${indices.map((k) => `eq(n\\,${k})`).join('+')}`
}

// Runs one decode with the contract's argv around `filter` (models/README.md, "ffmpeg frame extraction") and
// hands the PPM frames to `onFrame` as they arrive; returns how many came.
async function decodeFrames(bins: FfmpegBinaries, file: string, demuxer: string, cwd: string, filter: string[], frames: number, limits: { timeoutMs: number; maxWidth: number; maxHeight: number }, onFrame: (f: RgbImage) => void, signal?: AbortSignal): Promise<number> {
  const args = [
    '-nostdin', '-hide_banner', '-loglevel', 'error', '-protocol_whitelist', 'file', '-f', demuxer, '-i', file,
    '-map', '0:v:0', '-an', '-sn', '-dn', ...filter, '-frames:v', String(frames), '-f', 'image2pipe', '-c:v', 'ppm', '-',
  ]
  const parser = new PpmStreamParser(onFrame, limits.maxWidth, limits.maxHeight)
  let res: RunResult
  try {
    res = await run(bins.ffmpeg, args, limits.timeoutMs, cwd, (c) => parser.push(c), signal)
  } catch (err) {
    if (err instanceof PpmParseError) throw new ServiceError('media_limit_exceeded', `video decoding refused: ${err.message}`)
    throw unavailable(err) ?? err
  }
  if (res.timedOut) throw new ServiceError('media_limit_exceeded', `video decoding exceeded ${limits.timeoutMs} ms`)
  const killed = killedBySignal(res)
  if (killed) throw killed
  if (res.code !== 0) throw new ServiceError('media_invalid', `video could not be decoded: ${firstLine(res.stderr, file)}`)
  try {
    parser.end()
  } catch {
    throw new ServiceError('media_invalid', 'video decoding ended inside a frame')
  }
  return parser.frames
}

// The frames at the given indices (the published layout's positions): passthrough timing so that the image2pipe
// muxer neither duplicates nor drops a selected frame. Returns the number of frames decoded (fewer than asked
// when the stream decodes to fewer frames than it has packets).
export async function extractFramesAt(bins: FfmpegBinaries, file: string, demuxer: string, cwd: string, opts: ExtractAtOptions, onFrame: (f: RgbImage) => void, signal?: AbortSignal): Promise<number> {
  if (opts.indices.length === 0) throw new RangeError('no frame indices')
  const n = await decodeFrames(bins, file, demuxer, cwd, ['-vf', selectFilter(opts.indices), '-fps_mode', 'passthrough'], opts.indices.length, opts, onFrame, signal)
  if (n === 0) throw new ServiceError('media_invalid', 'video has no decodable frames')
  return n
}

export interface ExtractOptions {
  fps: number | null // null: no fps filter (the contract's first-frame fallback)
  frameCap: number // the contract's <frame_cap>; reaching it means the video is over the duration limit
  timeoutMs: number
  maxWidth: number
  maxHeight: number
}

// Frame extraction with the contract's exact argv (models/README.md, "ffmpeg frame extraction"), including its
// first-frame fallback when the fps filter yields nothing; frames are handed to `onFrame` as they arrive.
// Returns the number of frames decoded.
export async function extractFrames(bins: FfmpegBinaries, file: string, demuxer: string, cwd: string, opts: ExtractOptions, onFrame: (f: RgbImage) => void, signal?: AbortSignal): Promise<number> {
  const frames = await decodeFrames(bins, file, demuxer, cwd, opts.fps === null ? [] : ['-vf', `fps=${opts.fps}`], opts.frameCap, opts, onFrame, signal)
  if (frames === 0 && opts.fps !== null) {
    return extractFrames(bins, file, demuxer, cwd, { ...opts, fps: null, frameCap: 1 }, onFrame, signal)
  }
  if (frames === 0) throw new ServiceError('media_invalid', 'video has no decodable frames')
  if (opts.fps !== null && frames >= opts.frameCap) throw new ServiceError('media_limit_exceeded', `video has more than ${opts.frameCap - 1} frames at ${opts.fps} fps`)
  return frames
}
