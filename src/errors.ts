// The one place where error codes meet HTTP status codes. Code throws `ServiceError`s (or a subclass);
// the app's error handler turns every error into `{ error: { code, message } }` with the status below.
// 5xx messages are generic on the wire (details go to the log), as fastify/demo does.

export const ERROR_STATUS = {
  bad_request: 400, // body is not parseable JSON / multipart
  empty_input: 400, // nothing to score
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  unknown_model: 404,
  payload_too_large: 413, // request or file bytes over a limit (checked before reading more)
  unsupported_media_type: 415, // sniffed format not allowed (never trusts names / declared MIME types)
  invalid_request: 422, // schema validation failed
  unsupported_modality: 422,
  input_too_long: 422, // media does not fit max_seq_len, or text over the hard cap
  media_invalid: 422, // corrupt / truncated / undecodable media
  media_limit_exceeded: 422, // pixels, frames, duration, dimensions, streams over a limit
  no_video_stream: 422,
  url_not_allowed: 403, // remote media URL disabled, not https, or host not on the allow-list (SSRF policy)
  remote_fetch_failed: 422, // allowed media URL could not be fetched (HTTP error, timeout)
  rate_limited: 429,
  client_closed: 499, // client went away before the answer (nginx's convention; never reaches the client)
  internal: 500,
  engine_error: 500,
  overloaded: 503, // queue full: 503 + Retry-After (RLHF clients retry 5xx, never 4xx)
  model_not_ready: 503,
  video_unavailable: 503, // no ffmpeg on this host
  storage_unavailable: 503, // temp dir full or out of file handles (ENOSPC, EDQUOT, EMFILE): ours, and it passes
  decoder_killed: 503, // ffmpeg killed from outside (OOM killer, SIGKILL/SIGTERM): not the input's fault; retry
  shutting_down: 503,
  timeout: 504, // per-request deadline passed
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

export class ServiceError extends Error {
  readonly code: ErrorCode
  readonly headers: Record<string, string>
  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.name = 'ServiceError'
    this.code = code
    this.headers = headers
  }
  get status(): number {
    return ERROR_STATUS[this.code]
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof ServiceError
}

/** A file-system failure that is the server's, not the client's, and passes (a full or RAM-backed temp dir,
 *  exhausted file handles): 503 + Retry-After instead of a 500. Null for anything else. */
export function storageError(err: unknown, retryAfterS = 1): ServiceError | null {
  const code = (err as NodeJS.ErrnoException | null)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EMFILE' || code === 'ENFILE') {
    return new ServiceError('storage_unavailable', `temporary storage is unavailable (${code}); retry later`, { 'retry-after': String(retryAfterS) })
  }
  return null
}
