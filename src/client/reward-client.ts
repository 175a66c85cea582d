// A small typed client for the reward service, for TypeScript callers (the `bon` and `clean` CLIs use it too).
// It retries 502/503/504 and network failures with backoff, honouring Retry-After, because the service sheds
// load with 503 + Retry-After and RL trainers would otherwise lose samples (OpenRLHF leaves a failed reward
// as None). Other 4xx/5xx are thrown at once as RewardServiceError with the service's error code.
import type { z } from 'zod'
import type { GetRewardRequestSchema } from '../http/schemas/get-reward.ts'
import type { Message } from '../conversation/types.ts'
import type { RewardShaping } from '../rlhf/reward-shaping.ts'
import { DEFAULT_RETRY_POLICY, RETRYABLE_STATUS, parseRetryAfter, retryDelayMs, type RetryPolicy } from './retry.ts'

// Request types are the service's own (type-only imports: the client pulls in no server code at run time).
export type { Message, Part as ContentPart } from '../conversation/types.ts'
export type { LengthControl as LengthControlOptions } from '../rlhf/length-control.ts'
export type RewardShapingOptions = Partial<RewardShaping>

/** OpenRLHF's payload ({query, prompts, labels}) or the native {messages} form, as the route validates it. */
export type GetRewardRequest = z.input<typeof GetRewardRequestSchema>

/** `advantages` of /get_reward and /v1/rank when the request has `group` (GRPO and Dr. GRPO per sample). */
export interface GroupAdvantages {
  on: 'raw' | 'shaped' | 'normalized'
  epsilon: number
  size?: number
  ids?: Array<string | number>
  group: number[]
  grpo: number[]
  dr_grpo: number[]
  group_mean: number[]
  group_std: number[]
}

export interface GetRewardResponse {
  rewards: number[]
  scores: number[]
  extra_logs: Record<string, number[]>
  advantages?: GroupAdvantages
  [key: string]: unknown
}

/** Step-level rewards: the response's steps, or a separator that splits it (`/v1/score` items' `steps`). */
export type StepsOption = string[] | { separator: string }

/** Request/response bodies of /v1/score, /v1/compare and /v1/rank are the service's (see openapi.yaml); the
 *  client passes them through, typed loosely so it does not pin every optional field. */
export type JsonObject = Record<string, unknown>

export interface RewardClientOptions {
  baseUrl: string
  apiKey?: string
  retry?: Partial<RetryPolicy>
  /** Per attempt; a timed-out attempt is retried like a 504. */
  timeoutMs?: number
  /** Injected transport (tests; the `clean` CLI's in-process mode). */
  fetch?: typeof fetch
  sleep?: (ms: number) => Promise<void>
  random?: () => number
  /** Called before each retry (progress bars and logs). */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void
}

export class RewardServiceError extends Error {
  readonly status: number
  readonly code: string
  readonly attempts: number
  constructor(status: number, code: string, message: string, attempts: number) {
    // status 0: no HTTP answer at all (connection refused, DNS, timeouts).
    super(status ? `${status} ${code}: ${message}` : `${code}: ${message}`)
    this.name = 'RewardServiceError'
    this.status = status
    this.code = code
    this.attempts = attempts
  }
}

const sleepMs = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export class RewardClient {
  readonly baseUrl: string
  private readonly opts: RewardClientOptions
  private readonly policy: RetryPolicy

  constructor(opts: RewardClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '')
    this.opts = opts
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.retry }
  }

  score(body: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    return this.request('POST', '/v1/score', body, signal)
  }

  /** The reward after each step of the conversation's response (its last message), from one packed pass. */
  async stepScores(messages: Message[], steps: StepsOption, opts: { model?: string; signal?: AbortSignal } = {}): Promise<number[]> {
    const body: JsonObject = { items: [{ messages, steps }], ...(opts.model ? { model: opts.model } : {}) }
    const res = (await this.request('POST', '/v1/score', body, opts.signal)) as { results: Array<{ step_scores: number[] }> }
    return res.results[0]!.step_scores
  }

  compare(body: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    return this.request('POST', '/v1/compare', body, signal)
  }

  rank(body: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    return this.request('POST', '/v1/rank', body, signal)
  }

  getReward(body: GetRewardRequest, signal?: AbortSignal): Promise<GetRewardResponse> {
    return this.request('POST', '/get_reward', body as JsonObject, signal) as Promise<GetRewardResponse>
  }

  models(signal?: AbortSignal): Promise<JsonObject> {
    return this.request('GET', '/v1/models', undefined, signal)
  }

  async request(method: 'GET' | 'POST', path: string, body?: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    const doFetch = this.opts.fetch ?? fetch
    const sleep = this.opts.sleep ?? sleepMs
    const headers: Record<string, string> = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`
    const payload = body === undefined ? undefined : JSON.stringify(body)
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted()
      const attemptSignal = this.attemptSignal(signal)
      let retryReason: string
      let retryAfter: number | null = null
      let lastError: RewardServiceError | Error
      try {
        const res = await doFetch(this.baseUrl + path, { method, headers, body: payload, signal: attemptSignal })
        const text = await res.text()
        if (res.ok) return text === '' ? {} : (JSON.parse(text) as JsonObject)
        const { code, message } = readError(text, res.status)
        lastError = new RewardServiceError(res.status, code, message, attempt)
        if (!RETRYABLE_STATUS.has(res.status)) throw lastError
        retryReason = `${res.status} ${code}`
        retryAfter = parseRetryAfter(res.headers.get('retry-after'), Date.now())
      } catch (err) {
        // Our own refusals and a 200 whose body is not JSON are not transient.
        if (err instanceof RewardServiceError || err instanceof SyntaxError) throw err
        // The caller gave up: never retry that.
        if (signal?.aborted) throw err
        lastError = err as Error
        retryReason = (err as Error).name === 'TimeoutError' ? 'timeout' : `network: ${(err as Error).message}`
      }
      if (attempt >= this.policy.maxAttempts) {
        if (lastError instanceof RewardServiceError) throw lastError
        throw new RewardServiceError(0, 'unreachable', `${method} ${this.baseUrl}${path}: ${retryReason} after ${attempt} attempts`, attempt)
      }
      const delayMs = retryDelayMs(attempt, retryAfter, this.policy, this.opts.random)
      this.opts.onRetry?.({ attempt, delayMs, reason: retryReason })
      await sleep(delayMs)
    }
  }

  private attemptSignal(signal: AbortSignal | undefined): AbortSignal | undefined {
    const signals: AbortSignal[] = []
    if (signal) signals.push(signal)
    if (this.opts.timeoutMs) signals.push(AbortSignal.timeout(this.opts.timeoutMs))
    if (signals.length === 0) return undefined
    return signals.length === 1 ? signals[0] : AbortSignal.any(signals)
  }
}

function readError(text: string, status: number): { code: string; message: string } {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } }
    if (body.error?.code) return { code: body.error.code, message: body.error.message ?? '' }
  } catch {
    // Not our JSON (a proxy's HTML error page): fall through to the status line.
  }
  return { code: `http_${status}`, message: text.slice(0, 200) }
}
