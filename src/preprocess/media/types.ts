// The media boundary: what the conversation layer hands to the media path (parts) and gets back (image-token
// blocks). Every media part of a conversation goes through the MediaResolver given to buildApp(config,
// { mediaResolver }); the default is resolver.ts (decode -> IXC HD transform -> vision.onnx via ctx.engine).
import type { Engine, StoredVision } from '../../engine/types.ts'
import type { MediaRequestScope } from './request-scope.ts'

/** An image or video part: exactly one source. `file` is a multipart field name / upload reference, `url`
 *  a remote reference and `sha256` the content hash of media this server received before (media-store.ts);
 *  which sources are honoured is the media resolver's decision. */
export interface MediaPart {
  type: 'image' | 'video'
  data?: string
  file?: string
  url?: string
  sha256?: string
}

/** Image token block of one media part ([tokens, dim]): the embeddings stay in the engine's store under
 *  `handle` (engine/embedding-store.ts); only a resolver without an engine store gives them inline. */
export type MediaBlock = { tokens: number; dim: number; preprocessMs: number; inferenceMs: number } & (
  | { handle: string; embeds?: undefined }
  | { embeds: Float32Array; handle?: undefined }
)

/** vision.onnx on one transformed image, its embeddings kept in the engine under `handle` (the scoring service
 *  queues it in the batcher, with its own budget). */
export type VisionRunner = (handle: string, image: Float32Array, height: number, width: number, signal: AbortSignal) => Promise<StoredVision>

/** What the media path needs of a model version: its engine key and its manifest's preprocessing section. */
export interface MediaModel {
  readonly key: string
  readonly manifest: { readonly preprocess?: { readonly image?: unknown; readonly video?: unknown }; readonly files?: Record<string, unknown> }
  /** The version dir (model files a preprocessing step reads, e.g. a published video layout's label font). */
  readonly dir?: string
}

export interface MediaContext {
  /** The model version the request started on (manifest.preprocess, engine key `model.key`). */
  model: MediaModel
  engine: Engine
  /** How vision runs are made; absent: straight to engine.encodeImage, pinned for no request. */
  vision?: VisionRunner
  /** Aborted when the client goes away or the deadline passes: stop decoding and give resources back. */
  signal: AbortSignal
  /** State shared by all conversations of one request (uploads, media budget); see request-scope.ts. */
  scope?: MediaRequestScope
  /** Image and video items in the whole row these parts belong to (default: the parts given); with
   *  preprocess.image.multi_count = media it picks hd_num vs hd_num_multi. */
  mediaCount?: number
}

export interface MediaResolver {
  /** All media parts of ONE conversation, in order (the count picks hd_num vs hd_num_multi). Returns one block
   *  per part, same order. Throws ServiceError (4xx) for bad media. */
  resolve(parts: readonly MediaPart[], ctx: MediaContext): Promise<MediaBlock[]>
  /** Drops handles the engine no longer holds (a batch missed them), so the next request computes them. */
  forget?(handles: readonly string[]): void
  /** Releases what the resolver holds (worker threads); called when the app closes. */
  close?(): Promise<void>
  /** Which media kinds this host can decode now (video: the ffmpeg binaries run); /readyz reports it. */
  capabilities?(): Promise<{ video: boolean }>
}
