// The one place where error codes meet HTTP status codes. Code throws `ServiceError`s (or a subclass);
// the app's error handler turns every error into `{ error: { code, message, type, param } }` with the status
// below: `code`/`message` are ours, `type`/`param` are OpenAI's (clients built on the OpenAI SDKs read those).
// 5xx messages are generic on the wire (details go to the log), as fastify/demo does. Messages are plain
// text: no decoration glyphs (zod's prettifier adds some; validationError below does not).

export const ERROR_STATUS = {
  bad_request: 400, // body is not parseable JSON / multipart
  empty_input: 400, // nothing to score
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405, // the path exists with other methods (answer carries Allow)
  unknown_model: 404,
  payload_too_large: 413, // request or file bytes over a limit (checked before reading more)
  unsupported_media_type: 415, // sniffed format not allowed (never trusts names / declared MIME types)
  invalid_request: 422, // schema validation failed
  unsupported_modality: 422,
  input_too_long: 422, // media does not fit max_seq_len, or text over the hard cap
  content_token_out_of_range: 422, // content_special_tokens = published: a token past the embedding table
  media_invalid: 422, // corrupt / truncated / undecodable media
  media_limit_exceeded: 422, // pixels, frames, duration, dimensions, streams over a limit
  media_not_cached: 422, // a {"sha256": ...} reference to media this server does not hold (any more): resend the bytes
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

/** OpenAI's error `type` for each of our codes (their SDKs map status codes to exception classes and show
 *  `type`; `param` names the offending request field when one is known). */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'

export function errorType(code: ErrorCode): OpenAIErrorType {
  const status = ERROR_STATUS[code]
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  return status >= 500 ? 'server_error' : 'invalid_request_error'
}

export class ServiceError extends Error {
  readonly code: ErrorCode
  readonly headers: Record<string, string>
  /** The request field at fault (`items[0].messages`), OpenAI's `param`; null when none is known. */
  readonly param: string | null
  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}, param: string | null = null) {
    super(message)
    this.name = 'ServiceError'
    this.code = code
    this.headers = headers
    this.param = param
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

/** A validation issue as zod (or any validator) reports it: where, and what is wrong. */
export interface Issue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

/** `items[0].messages` for ['items', 0, 'messages']; '' for the root. */
export function issuePath(path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const k of path) out += typeof k === 'number' ? `[${k}]` : `${out ? '.' : ''}${String(k)}`
  return out
}

/** Every issue as `path: message`, joined by '; ' (plain text, one line). */
export function issuesText(issues: readonly Issue[]): string {
  return issues
    .map((i) => {
      const where = issuePath(i.path)
      return where ? `${where}: ${i.message}` : i.message
    })
    .join('; ')
}

/** 422 invalid_request listing every issue, `param` = the first issue's path. */
export function validationError(issues: readonly Issue[], code: ErrorCode = 'invalid_request'): ServiceError {
  const first = issues[0] ? issuePath(issues[0].path) : ''
  return new ServiceError(code, issuesText(issues) || 'invalid request', {}, first || null)
}
