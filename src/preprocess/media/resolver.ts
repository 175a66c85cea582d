// THE media hook implementation (types.ts): one conversation's image/video parts ->
// image-token blocks. Per part: bytes (inline / upload / allowed URL, budget-checked) -> sniffed format ->
// embedding cache lookup (hit: no decoding, no vision run) -> decode + IXC transform -> vision.onnx through the
// engine, whose embedding store keeps the floats (the block carries the handle). Concurrent identical media share
// one decode and one vision run (the cache's in-flight map), which is what makes best-of-N with one image cost one
// vision run, not N. Media that resolved is kept by content hash (media-store.ts), so a later part may be
// `{"sha256": ...}` instead of the bytes.
import { performance } from 'node:perf_hooks'
import type { MediaBlock, MediaContext, MediaPart, MediaResolver } from './types.ts'
import { ServiceError } from '../../errors.ts'
import { decodeImage, planImageDecode } from '../image/sharp.ts'
import { imageTensorLength, type ImageTensor } from '../image/hd-transform.ts'
import { TensorPool } from '../image/tensor-pool.ts'
import { ffmpegAvailable } from '../video/ffmpeg.ts'
import { preprocessVideo } from '../video/video.ts'
import { EmbeddingCache, mediaCacheKey, type CachedEmbedding, type EmbeddingCacheMetrics } from './embedding-cache.ts'
import { chargeMedia, loadPartBytes, type LoadedMedia } from './input.ts'
import { MediaStore, sha256Hex, type MediaStoreMetrics } from './media-store.ts'
import type { MediaConfig } from './media-config.ts'
import { hdNumFor, mediaParamsOf, type MediaParams } from './params.ts'
import { mediaScopeOf, type MediaRequestScope } from './request-scope.ts'
import type { FetchLike } from './remote-url.ts'
import { sniffPart, type SniffedMedia } from './sniff.ts'
import { withRequestTempDir } from './temp-dir.ts'
import { Slots, abortReason } from './slots.ts'
import { createTransformer, type Transformer } from './transformer.ts'

// A computation stopped because the request that started it was cancelled.
class Cancelled extends Error {
  constructor(override readonly cause: unknown) {
    super('media computation cancelled with its request')
  }
}

interface Job {
  bytes: Uint8Array
  path: string | undefined
  sniffed: SniffedMedia
  params: MediaParams
  hdNum: number
  modelDir: string
}

function notCached(part: MediaPart): ServiceError {
  return new ServiceError(
    'media_not_cached',
    `${part.type} sha256 ${part.sha256} is not in this server's media cache (never received here, or evicted); resend this part with its bytes ("data", "file" or "url"), after which the hash can be used again`,
  )
}

export class IxcMediaResolver implements MediaResolver {
  readonly cache: EmbeddingCache
  /** Media by content hash, for `{"sha256": ...}` parts (MEDIA_STORE_BYTES). */
  readonly store: MediaStore
  readonly videoSlots: Slots
  /** Vision-tensor buffers handed back by the engine, for the next image (MEDIA_TENSOR_POOL_BYTES). */
  readonly tensors: TensorPool
  /** Decoded pixels of the image decodes in flight (MEDIA_DECODE_PIXEL_BUDGET). */
  readonly pixelBudget: Slots
  private readonly transformer: Transformer

  constructor(
    readonly cfg: MediaConfig,
    metrics?: EmbeddingCacheMetrics,
    private readonly fetchImpl?: FetchLike,
    private readonly storeMetrics?: MediaStoreMetrics,
  ) {
    this.cache = new EmbeddingCache(cfg.embeddingCacheBytes, metrics)
    this.store = new MediaStore(cfg.mediaStoreBytes, storeMetrics?.evictions)
    this.videoSlots = new Slots(cfg.videoMaxConcurrent)
    this.pixelBudget = new Slots(cfg.decodePixelBudget, cfg.decodeQueuePixels)
    this.transformer = createTransformer(cfg.workers)
    this.tensors = new TensorPool(cfg.tensorPoolBytes)
  }

  // What this host can decode: video needs the ffmpeg/ffprobe binaries (/readyz reports their absence).
  async capabilities(): Promise<{ video: boolean }> {
    return { video: await ffmpegAvailable({ ffmpeg: this.cfg.ffmpegPath, ffprobe: this.cfg.ffprobePath }) }
  }

  // Stops the transform workers (app close).
  close(): Promise<void> {
    return this.transformer.close()
  }

  async resolve(parts: readonly MediaPart[], ctx: MediaContext): Promise<MediaBlock[]> {
    const scope = ctx.scope ?? mediaScopeOf(ctx)
    const params = mediaParamsOf(ctx.model.manifest)
    const hdNum = hdNumFor(params.image, parts, ctx.mediaCount)
    const blocks: MediaBlock[] = []
    // one part after the other: bounds the decode memory of a conversation with many images
    for (const part of parts) {
      if (ctx.signal.aborted) throw abortReason(ctx.signal)
      blocks.push(await this.resolveOne(part, params, hdNum, scope, ctx))
    }
    return blocks
  }

  private async resolveOne(part: MediaPart, params: MediaParams, hdNum: number, scope: MediaRequestScope, ctx: MediaContext): Promise<MediaBlock> {
    const t0 = performance.now()
    // A reference counts as a media part of the request (MEDIA_MAX_FILES) but carries no bytes of its own. Its
    // bytes are only needed when the embedding is not cached (compute below); without them: media_not_cached.
    const ref = part.sha256
    if (ref !== undefined && this.cfg.mediaStoreBytes === 0) {
      // references off (MEDIA_STORE_BYTES=0): not even a cached embedding answers one
      this.storeMetrics?.misses.inc()
      throw notCached(part)
    }
    let loaded: LoadedMedia | undefined
    if (ref === undefined) loaded = await loadPartBytes(part, { cfg: this.cfg, budget: scope, files: scope.files, fetchImpl: this.fetchImpl })
    else chargeMedia(scope, 0, this.cfg)
    // sniffing checks the bytes against the declared type, so the declared type is the kind in the key
    const sniffed = loaded ? sniffPart(loaded.bytes, part.type, this.cfg.videoFormats) : undefined
    const digest = ref ?? sha256Hex(loaded!.bytes)
    const key = mediaCacheKey(digest, { kind: part.type, hdNum: part.type === 'image' ? hdNum : null, model: ctx.model.key })
    let preprocessMs = 0
    let inferenceMs = 0
    const compute = async (): Promise<CachedEmbedding> => {
      const bytes = loaded?.bytes ?? this.store.get(digest)
      if (!bytes) throw notCached(part)
      const job: Job = {
        bytes,
        path: loaded?.path,
        sniffed: sniffed ?? sniffPart(bytes, part.type, this.cfg.videoFormats),
        params,
        hdNum,
        modelDir: ctx.model.dir ?? '.',
      }
      try {
        const tensor = await this.buildTensor(job, ctx.signal)
        preprocessMs = performance.now() - t0
        const vision = ctx.vision ?? ((h, img, height, width) => ctx.engine.encodeImage(ctx.model.key, h, 0, img, height, width))
        const out = await vision(key, tensor.data, tensor.height, tensor.width, ctx.signal)
        this.tensors.give(out.image)
        for (const k of out.evicted) this.cache.delete(k)
        inferenceMs = out.inferenceMs
        if (out.tokens !== tensor.tokens) {
          throw new ServiceError('engine_error', `vision graph returned ${out.tokens} tokens, the grid needs ${tensor.tokens}`)
        }
        return { tokens: out.tokens, dim: out.dim, bytes: out.tokens * out.dim * 4 }
      } catch (err) {
        throw ctx.signal.aborted ? new Cancelled(err) : err
      }
    }
    let entry: CachedEmbedding
    try {
      entry = await this.cache.getOrCompute(key, compute)
    } catch (err) {
      // The shared computation was started by another request that has since gone away (its decoder was killed
      // with it): this request is still wanted, so it computes for itself.
      if (err instanceof ServiceError && err.code === 'media_not_cached') this.storeMetrics?.misses.inc()
      if (!(err instanceof Cancelled)) throw err
      if (ctx.signal.aborted) throw err.cause
      entry = await this.cache.getOrCompute(key, compute)
    }
    if (ref !== undefined) this.storeMetrics?.hits.inc()
    // media that resolved becomes referable by its hash (a failed decode never does)
    if (loaded) this.store.put(digest, loaded.bytes)
    if (preprocessMs === 0) preprocessMs = performance.now() - t0
    return { tokens: entry.tokens, dim: entry.dim, handle: key, preprocessMs, inferenceMs }
  }

  forget(handles: readonly string[]): void {
    for (const k of handles) this.cache.delete(k)
  }

  private async buildTensor(job: Job, signal: AbortSignal): Promise<ImageTensor> {
    const { sniffed, params } = job
    if (sniffed.kind === 'image') {
      const limits = { maxPixels: this.cfg.maxImagePixels, timeoutSeconds: this.cfg.imageDecodeTimeoutS }
      // the header (no pixels; read in JS) says what the decode will hold; it waits for that much budget
      const plan = await planImageDecode(job.bytes, sniffed.format, limits)
      return this.pixelBudget.run(async () => {
        const rgb = await decodeImage(job.bytes, sniffed.format, limits, params.image.decode, plan)
        const out = this.tensors.take(imageTensorLength(rgb.width, rgb.height, params.image, job.hdNum))
        return this.transformer.run<ImageTensor>({ op: 'image', rgb, image: params.image, hdNum: job.hdNum, out })
      }, signal, plan.width * plan.height)
    }
    // ffmpeg reads a file: uploads already are one; inline bytes get a server-named file in a fresh directory
    // that is removed as soon as the frames are out
    return this.videoSlots.run(
      () => withRequestTempDir(this.cfg.tempDir, (dir) => preprocessVideo(job.path ?? job.bytes, sniffed.format, dir, params.video, params.image, this.cfg, signal, this.transformer, job.modelDir)),
      signal,
    )
  }
}
