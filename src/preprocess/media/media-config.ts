// Media limits and switches, all configurable (src/config.ts nests this schema) and reported in /v1/models.
// Defaults are far below what the decoders allow by themselves (sharp: 268 MP; ffmpeg: unbounded).
import { tmpdir } from 'node:os'
import { z } from 'zod'

const MiB = 1024 * 1024

export const mediaConfigSchema = z.object({
  maxFileBytes: z.number().int().positive().default(20 * MiB), // one image or video, decoded from base64 or uploaded
  maxRequestBytes: z.number().int().positive().default(64 * MiB), // all media of one request together
  maxFilesPerRequest: z.number().int().positive().default(16), // media parts (JSON) or files (multipart) per request
  maxImagePixels: z.number().int().positive().default(36_000_000), // from the header, before decoding
  imageDecodeTimeoutS: z.number().int().positive().default(10),
  // pixels of all image decodes in flight together (a 36 Mpx RGBA image holds ~250 MB while decoded); more wait
  decodePixelBudget: z.number().int().positive().default(72_000_000),
  // pixels that may wait for the budget; beyond it an image gets 503 overloaded + Retry-After at once
  decodeQueuePixels: z.number().int().nonnegative().default(16 * 36_000_000),
  videoFormats: z.array(z.enum(['mp4', 'webm', 'avi'])).default(['mp4', 'webm']), // AVI is off: GAB2/HLS history
  maxVideoDurationS: z.number().positive().default(120),
  maxVideoWidth: z.number().int().positive().default(4096),
  maxVideoHeight: z.number().int().positive().default(4096),
  maxVideoStreams: z.number().int().positive().default(8),
  videoTimeoutS: z.number().positive().default(30), // wall clock per ffprobe / ffmpeg run, then SIGKILL
  videoMaxConcurrent: z.number().int().positive().default(2), // video decodes (ffprobe + ffmpeg) at once, per app
  videoProbeBytes: z.number().int().positive().default(5_000_000),
  ffmpegPath: z.string().min(1).default('ffmpeg'),
  ffprobePath: z.string().min(1).default('ffprobe'),
  tempDir: z.string().min(1).default(tmpdir()), // per-request directories are created (and removed) under it
  embeddingCacheBytes: z.number().int().nonnegative().default(128 * MiB), // 0 disables the cache
  mediaStoreBytes: z.number().int().nonnegative().default(128 * MiB), // media files kept by sha256; 0: references off
  workers: z.number().int().nonnegative().default(1), // threads for pixel work; 0 = on the event loop
  tensorPoolBytes: z.number().int().nonnegative().default(64 * MiB), // idle vision-tensor buffers kept for reuse; 0: none
  remoteUrls: z
    .object({
      enabled: z.boolean().default(false), // off: SSRF
      allowedHosts: z.array(z.string().min(1)).default([]), // exact host names; https only
      maxBytes: z.number().int().positive().default(20 * MiB),
      timeoutMs: z.number().int().positive().default(10_000),
    })
    .default({ enabled: false, allowedHosts: [], maxBytes: 20 * MiB, timeoutMs: 10_000 }),
})

export type MediaConfig = z.infer<typeof mediaConfigSchema>

const int = (min: number) => z.coerce.number().int().min(min).optional()
const num = () => z.coerce.number().positive().optional()
const list = () => z.string().transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0)).optional()

// The environment variables of the media path (src/config.ts parses them with the rest; unset = default above).
export const MediaEnvSchema = z.object({
  /** Bytes of one image/video (inline base64 decoded size, upload, or remote fetch). */
  MEDIA_MAX_FILE_BYTES: int(1),
  /** Bytes of all media in one request; multipart uploads are cut off while streaming past it. */
  MEDIA_MAX_REQUEST_BYTES: int(1),
  /** Media parts (and uploaded files) per request. */
  MEDIA_MAX_FILES: int(1),
  /** Pixels of one image (first frame), from its header before decoding. sharp's own default is 268 MP. */
  MEDIA_MAX_IMAGE_PIXELS: int(1),
  /** libvips time limit per image decode, seconds. */
  MEDIA_IMAGE_TIMEOUT_S: int(1),
  /** Pixels (width x height from the header) of all image decodes in flight together; bounds decode memory
   *  (16 concurrent 36 Mpx images once took 5.5 GB). An image waits for room; must be >= MEDIA_MAX_IMAGE_PIXELS
   *  to let the largest image decode while nothing else does (a larger one always runs alone). */
  MEDIA_DECODE_PIXEL_BUDGET: int(1),
  /** Pixels that may wait for that budget; beyond it 503 + Retry-After at once. */
  MEDIA_DECODE_QUEUE_PIXELS: int(0),
  /** Allowed video containers, sniffed from magic bytes: mp4 (MP4/MOV), webm (WebM/MKV), avi. */
  VIDEO_FORMATS: z.string().transform((s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0)).pipe(z.array(z.enum(['mp4', 'webm', 'avi']))).optional(),
  VIDEO_MAX_DURATION_S: num(),
  VIDEO_MAX_WIDTH: int(1),
  VIDEO_MAX_HEIGHT: int(1),
  VIDEO_MAX_STREAMS: int(1),
  /** Wall clock per ffprobe/ffmpeg run, seconds; then SIGKILL. */
  VIDEO_TIMEOUT_S: num(),
  /** Video decodes running at once (each is one ffprobe then one ffmpeg); more wait for a slot. */
  VIDEO_MAX_CONCURRENT: int(1),
  /** Without these binaries video requests get 503 video_unavailable and everything else works. A bare name is
   *  looked up in /usr/bin:/bin only (ffmpeg runs with an empty environment); elsewhere give an absolute path. */
  FFMPEG_PATH: z.string().min(1).optional(),
  FFPROBE_PATH: z.string().min(1).optional(),
  /** Where per-request temp directories are created (and removed). Default: the OS temp dir. */
  MEDIA_TEMP_DIR: z.string().min(1).optional(),
  /** Image/video embedding cache size in bytes (LRU); 0 = off. */
  EMBEDDING_CACHE_BYTES: int(0),
  /** Bytes of received media files kept by their sha256 (LRU), for `{"type": "image", "sha256": ...}` parts that
   *  refer to them instead of resending the bytes; 0 = references off (each gets media_not_cached). */
  MEDIA_STORE_BYTES: int(0),
  /** Worker threads for media pixel work (resizes, layout, normalisation); 0 = run it on the event loop. */
  MEDIA_WORKERS: int(0),
  /** Bytes of idle vision-tensor buffers kept for the next image (tensor-pool.ts: a reused buffer skips a fresh
   *  one's page faults); 0 = a fresh buffer per image. */
  MEDIA_TENSOR_POOL_BYTES: int(0),
  /** Remote media URLs (off: SSRF). When on, https only, to exactly these hosts, with these limits. */
  MEDIA_URLS_ENABLED: z.stringbool().optional(),
  MEDIA_URL_ALLOWED_HOSTS: list(),
  MEDIA_URL_MAX_BYTES: int(1),
  MEDIA_URL_TIMEOUT_MS: int(1),
})

export function mediaConfigFromEnv(e: z.infer<typeof MediaEnvSchema>): MediaConfig {
  const d = mediaConfigSchema.parse({})
  return mediaConfigSchema.parse({
    maxFileBytes: e.MEDIA_MAX_FILE_BYTES,
    maxRequestBytes: e.MEDIA_MAX_REQUEST_BYTES,
    maxFilesPerRequest: e.MEDIA_MAX_FILES,
    maxImagePixels: e.MEDIA_MAX_IMAGE_PIXELS,
    imageDecodeTimeoutS: e.MEDIA_IMAGE_TIMEOUT_S,
    decodePixelBudget: e.MEDIA_DECODE_PIXEL_BUDGET,
    decodeQueuePixels: e.MEDIA_DECODE_QUEUE_PIXELS,
    videoFormats: e.VIDEO_FORMATS,
    maxVideoDurationS: e.VIDEO_MAX_DURATION_S,
    maxVideoWidth: e.VIDEO_MAX_WIDTH,
    maxVideoHeight: e.VIDEO_MAX_HEIGHT,
    maxVideoStreams: e.VIDEO_MAX_STREAMS,
    videoTimeoutS: e.VIDEO_TIMEOUT_S,
    videoMaxConcurrent: e.VIDEO_MAX_CONCURRENT,
    ffmpegPath: e.FFMPEG_PATH,
    ffprobePath: e.FFPROBE_PATH,
    tempDir: e.MEDIA_TEMP_DIR,
    embeddingCacheBytes: e.EMBEDDING_CACHE_BYTES,
    mediaStoreBytes: e.MEDIA_STORE_BYTES,
    workers: e.MEDIA_WORKERS,
    tensorPoolBytes: e.MEDIA_TENSOR_POOL_BYTES,
    remoteUrls: {
      enabled: e.MEDIA_URLS_ENABLED ?? d.remoteUrls.enabled,
      allowedHosts: e.MEDIA_URL_ALLOWED_HOSTS ?? d.remoteUrls.allowedHosts,
      maxBytes: e.MEDIA_URL_MAX_BYTES ?? d.remoteUrls.maxBytes,
      timeoutMs: e.MEDIA_URL_TIMEOUT_MS ?? d.remoteUrls.timeoutMs,
    },
  })
}

export function defaultMediaConfig(overrides: Partial<MediaConfig> = {}): MediaConfig {
  return mediaConfigSchema.parse(overrides)
}

// What /v1/models reports (no paths).
export function describeMediaLimits(c: MediaConfig): Record<string, unknown> {
  return {
    max_file_bytes: c.maxFileBytes,
    max_request_bytes: c.maxRequestBytes,
    max_files_per_request: c.maxFilesPerRequest,
    max_image_pixels: c.maxImagePixels,
    image_decode_timeout_s: c.imageDecodeTimeoutS,
    decode_pixel_budget: c.decodePixelBudget,
    image_formats: ['jpeg', 'png', 'webp', 'gif'],
    video_formats: c.videoFormats,
    max_video_duration_s: c.maxVideoDurationS,
    max_video_width: c.maxVideoWidth,
    max_video_height: c.maxVideoHeight,
    max_video_streams: c.maxVideoStreams,
    video_timeout_s: c.videoTimeoutS,
    video_max_concurrent: c.videoMaxConcurrent,
    embedding_cache_bytes: c.embeddingCacheBytes,
    media_store_bytes: c.mediaStoreBytes,
    remote_urls: { enabled: c.remoteUrls.enabled, allowed_hosts: c.remoteUrls.allowedHosts, max_bytes: c.remoteUrls.maxBytes, timeout_ms: c.remoteUrls.timeoutMs },
  }
}
