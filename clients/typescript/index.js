// @reward-server/client: a small typed client for the reward service, with no dependencies and no server code
// (plain ESM JavaScript; the types are the JSDoc below, compiled to index.d.ts by `npm run types`).
// It retries 502/503/504 and network failures with backoff, honouring Retry-After, because the service sheds
// load with 503 + Retry-After and RL trainers would otherwise lose samples (OpenRLHF leaves a failed reward as
// None). Other 4xx/5xx are thrown at once as RewardServiceError with the service's error code. 4xx are the
// caller's fault and are never retried (verl's rule too); scoring has no side effects, so 5xx retries are safe.

// ------------------------------------------------------------------------------------------------- types
// The request shapes of openapi.yaml, written out here so that the package stands alone. The repository's
// tests check that the service's own request types are assignable to these.

/** @typedef {'system' | 'user' | 'assistant' | 'tool'} Role */
/** @typedef {{ type: 'text', text: string }} TextPart */
/**
 * An image or video part with exactly one source: base64 `data`, a multipart `file` field name, or a remote `url`
 * (when the service allows remote media).
 * @typedef {{ type: 'image' | 'video', data?: string, file?: string, url?: string }} MediaPart
 */
/** @typedef {TextPart | MediaPart} ContentPart */
/** @typedef {string | ContentPart[]} Content */
/**
 * An OpenAI / TRL tool call on an assistant turn (`arguments`: an object or a JSON string).
 * @typedef {{ type?: string, id?: string, function: { name: string, arguments?: unknown } }} ToolCall
 */
/**
 * One chat message. `content: null` is allowed on an assistant turn that only calls tools.
 * @typedef {object} Message
 * @property {Role} role
 * @property {Content | null} content
 * @property {ToolCall[] | null} [tool_calls]
 * @property {string | null} [name]
 * @property {string | null} [tool_call_id]
 */
/**
 * /get_reward's query templates (`auto` detects one and answers 422 for an unknown format; `auto_or_plain` falls
 * back to plain text).
 * @typedef {'auto' | 'auto_or_plain' | 'plain' | 'chatml' | 'qwen2' | 'llama3' | 'internlm2' | 'ixc' | 'gemma' | 'phi3' | 'mistral'} QueryTemplate
 */
/** @typedef {{ min: number, max: number }} Clip */
/** @typedef {{ threshold: number, per_token: number }} LengthPenalty */
/**
 * @typedef {object} RewardShapingOptions
 * @property {boolean} [normalize] z-score with the model's training statistics
 * @property {Clip | null} [clip]
 * @property {LengthPenalty | null} [length_penalty]
 */
/**
 * How samples form GRPO groups: `size` consecutive samples (as TRL, verl and OpenRLHF lay out a prompt's
 * completions; must divide the sample count) or one group id per sample (any order; the number 7 and the string
 * "7" are different groups). Exactly one of the two.
 * @typedef {{ size: number, ids?: undefined } | { ids: Array<string | number>, size?: undefined }} GroupBy
 */
/**
 * GRPO group advantages wanted with /get_reward's rewards, computed on the `shaped` rewards (the returned ones;
 * default) or the `raw` reward-model scores; `epsilon` is added to the group std (default 1e-4).
 * @typedef {GroupBy & { on?: 'shaped' | 'raw', epsilon?: number }} GetRewardGroupSpec
 */
/**
 * GRPO group advantages over /v1/rank's candidates, computed on the `raw` scores (default) or the `normalized`
 * ones (needs `normalize: true`).
 * @typedef {GroupBy & { on?: 'raw' | 'normalized', epsilon?: number }} RankGroupSpec
 */
/** @typedef {GetRewardGroupSpec | RankGroupSpec} GroupSpec */
/**
 * Which advantage a trainer uses: GRPO's (r - mean_g) / (std_g + epsilon) or Dr. GRPO's r - mean_g.
 * @typedef {'grpo' | 'dr_grpo'} AdvantageVariant
 */
/**
 * `advantages` of /get_reward and /v1/rank when the request has `group`: GRPO's (r - mean_g) / (std_g + epsilon)
 * and Dr. GRPO's r - mean_g per sample, with each sample's group index, mean and (unbiased) std.
 * @typedef {object} GroupAdvantages
 * @property {'raw' | 'shaped' | 'normalized'} on
 * @property {number} epsilon
 * @property {number} [size]
 * @property {Array<string | number>} [ids]
 * @property {number[]} group
 * @property {number[]} grpo
 * @property {number[]} dr_grpo
 * @property {number[]} group_mean
 * @property {number[]} group_std
 */
/**
 * Step-level rewards: the response's steps (their concatenation is the response), or a separator that splits it.
 * @typedef {string[] | { separator: string }} StepsOption
 */
/**
 * POST /get_reward: OpenRLHF's payload (`query`, `prompts`, `labels`) or the native form (`messages`, one
 * conversation per sample, media as parts). Give exactly one of `query` and `messages`.
 * @typedef {object} GetRewardRequest
 * @property {string[]} [query]
 * @property {string[] | null} [prompts]
 * @property {unknown} [labels]
 * @property {Message[][]} [messages]
 * @property {QueryTemplate} [template]
 * @property {RewardShapingOptions} [options]
 * @property {GetRewardGroupSpec} [group] GRPO group advantages (answer `advantages`, extra_logs `advantage`)
 * @property {string} [model]
 */
/**
 * @typedef {object} GetRewardResponse
 * @property {number[]} rewards shaped rewards (what a trainer uses)
 * @property {number[]} scores raw reward-model logits
 * @property {Record<string, unknown[]>} extra_logs per-sample logs; every key is present, `[]` for an empty shard
 * @property {GroupAdvantages} [advantages] when the request has `group`
 */
/**
 * Best-of-N length control for /v1/rank.
 * @typedef {{ mode: 'ratio', k: number } | { mode: 'penalty', per_token: number, threshold?: number }} LengthControlOptions
 */
/**
 * Request and response bodies of /v1/score and /v1/compare (see openapi.yaml); passed through as they are,
 * typed loosely so that the client does not pin every optional field.
 * @typedef {Record<string, unknown>} JsonObject
 */
/**
 * POST /v1/rank: one prompt (text or messages), N candidate responses. The options are typed; other fields pass
 * through (the service answers 422 for a missing prompt or candidates).
 * @typedef {object} RankRequest
 * @property {string | Message[]} [prompt]
 * @property {Content[]} [candidates]
 * @property {boolean} [normalize]
 * @property {LengthControlOptions} [length_control]
 * @property {RankGroupSpec} [group] GRPO group advantages over the candidates (answer `advantages`)
 * @property {string} [model]
 */
/**
 * @typedef {object} RankResponse
 * @property {number[]} scores raw reward-model scores, in candidate order
 * @property {number[]} [normalized_scores] with `normalize: true`
 * @property {number[]} ranks 0 = best
 * @property {number[]} order candidate indices, best first
 * @property {number} best
 * @property {number[]} candidate_tokens
 * @property {GroupAdvantages} [advantages] when the request has `group`
 */
/**
 * @typedef {object} RetryPolicy
 * @property {number} maxAttempts attempts in total, the first included
 * @property {number} initialDelayMs backoff before retry n (1-based) is min(maxDelayMs, initialDelayMs * 2^(n-1)), jittered
 * @property {number} maxDelayMs
 * @property {number} maxRetryAfterMs upper bound on a server-sent Retry-After, so a bad header cannot park a trainer for an hour
 */
/** @typedef {{ attempt: number, delayMs: number, reason: string }} RetryInfo */
/**
 * @typedef {object} RewardClientOptions
 * @property {string} baseUrl e.g. http://127.0.0.1:8080
 * @property {string} [apiKey] sent as `Authorization: Bearer`
 * @property {Partial<RetryPolicy>} [retry]
 * @property {number} [timeoutMs] per attempt; a timed-out attempt is retried like a 504
 * @property {typeof fetch} [fetch] injected transport (tests, in-process use)
 * @property {(ms: number) => Promise<void>} [sleep]
 * @property {() => number} [random]
 * @property {(info: RetryInfo) => void} [onRetry] called before each retry (progress bars and logs)
 */

// ------------------------------------------------------------------------------------------------- retry
// Pure, so the delays are table-tested without timers.

/** @type {Readonly<RetryPolicy>} */
export const DEFAULT_RETRY_POLICY = Object.freeze({
  maxAttempts: 6,
  initialDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
})

/** @type {ReadonlySet<number>} */
export const RETRYABLE_STATUS = new Set([502, 503, 504])

/**
 * Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * @param {string | null | undefined} value
 * @param {number} nowMs
 * @returns {number | null} milliseconds, or null if absent or malformed
 */
export function parseRetryAfter(value, nowMs) {
  if (value === null || value === undefined) return null
  const v = value.trim()
  if (v === '') return null
  if (/^\d+$/.test(v)) return Number(v) * 1000
  // HTTP-dates always name a day or month; without a letter Date.parse would accept things like "-1".
  if (!/[a-z]/i.test(v)) return null
  const at = Date.parse(v)
  if (Number.isNaN(at)) return null
  return Math.max(0, at - nowMs)
}

/**
 * Delay before retry `retry` (1 = the first retry). A Retry-After from the server wins over the backoff (the
 * server knows when capacity frees up); otherwise exponential backoff with jitter, so hundreds of RL workers
 * refused together do not come back together.
 * @param {number} retry
 * @param {number | null} retryAfterMs
 * @param {RetryPolicy} policy
 * @param {() => number} [random]
 * @returns {number}
 */
export function retryDelayMs(retry, retryAfterMs, policy, random = Math.random) {
  if (retryAfterMs !== null) return Math.min(retryAfterMs, policy.maxRetryAfterMs)
  const cap = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, retry - 1))
  // "Equal jitter": at least half the backoff, so a retry never comes back at once.
  return Math.round(cap / 2 + (cap / 2) * random())
}

// ------------------------------------------------------------------------------------------------ client
export class RewardServiceError extends Error {
  /**
   * @param {number} status HTTP status; 0 when no HTTP answer came at all (connection refused, DNS, timeouts)
   * @param {string} code the service's error code (`http_<status>` for an error page that is not the service's)
   * @param {string} message
   * @param {number} attempts
   */
  constructor(status, code, message, attempts) {
    super(status ? `${status} ${code}: ${message}` : `${code}: ${message}`)
    this.name = 'RewardServiceError'
    /** @readonly */
    this.status = status
    /** @readonly */
    this.code = code
    /** @readonly */
    this.attempts = attempts
  }
}

/** @param {number} ms */
const sleepMs = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export class RewardClient {
  /** @param {RewardClientOptions} opts */
  constructor(opts) {
    /** @readonly */
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '')
    /** @private @readonly */
    this.opts = opts
    /** @private @readonly @type {RetryPolicy} */
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.retry }
  }

  /** POST /v1/score. @param {JsonObject} body @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
  score(body, signal) {
    return this.request('POST', '/v1/score', body, signal)
  }

  /**
   * The reward after each step of the conversation's response (its last message), from one packed pass
   * (POST /v1/score with `steps`).
   * @param {Message[]} messages
   * @param {StepsOption} steps
   * @param {{ model?: string, signal?: AbortSignal }} [opts]
   * @returns {Promise<number[]>}
   */
  async stepScores(messages, steps, opts = {}) {
    /** @type {JsonObject} */
    const body = { items: [{ messages, steps }], ...(opts.model ? { model: opts.model } : {}) }
    const res = /** @type {{ results: Array<{ step_scores: number[] }> }} */ (/** @type {unknown} */ (await this.request('POST', '/v1/score', body, opts.signal)))
    return res.results[0].step_scores
  }

  /** POST /v1/compare. @param {JsonObject} body @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
  compare(body, signal) {
    return this.request('POST', '/v1/compare', body, signal)
  }

  /**
   * POST /v1/rank (best-of-N; with `group`, GRPO advantages over the candidates).
   * @param {RankRequest & JsonObject} body
   * @param {AbortSignal} [signal]
   * @returns {Promise<RankResponse & JsonObject>}
   */
  async rank(body, signal) {
    return /** @type {RankResponse & JsonObject} */ (await this.request('POST', '/v1/rank', body, signal))
  }

  /**
   * POST /get_reward (OpenRLHF's remote reward model route).
   * @param {GetRewardRequest} body
   * @param {AbortSignal} [signal]
   * @returns {Promise<GetRewardResponse>}
   */
  async getReward(body, signal) {
    return /** @type {GetRewardResponse} */ (/** @type {unknown} */ (await this.request('POST', '/get_reward', /** @type {JsonObject} */ (body), signal)))
  }

  /** GET /v1/models. @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
  models(signal) {
    return this.request('GET', '/v1/models', undefined, signal)
  }

  /**
   * Any JSON route, with the retry policy.
   * @param {'GET' | 'POST'} method
   * @param {string} path e.g. /v1/score
   * @param {JsonObject} [body]
   * @param {AbortSignal} [signal]
   * @returns {Promise<JsonObject>}
   */
  async request(method, path, body, signal) {
    const doFetch = this.opts.fetch ?? fetch
    const sleep = this.opts.sleep ?? sleepMs
    /** @type {Record<string, string>} */
    const headers = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`
    const payload = body === undefined ? undefined : JSON.stringify(body)
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted()
      const attemptSignal = this.attemptSignal(signal)
      /** @type {string} */
      let retryReason
      /** @type {number | null} */
      let retryAfter = null
      /** @type {Error} */
      let lastError
      try {
        const res = await doFetch(this.baseUrl + path, { method, headers, body: payload, signal: attemptSignal })
        const text = await res.text()
        if (res.ok) return text === '' ? {} : /** @type {JsonObject} */ (JSON.parse(text))
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
        lastError = /** @type {Error} */ (err)
        retryReason = lastError.name === 'TimeoutError' ? 'timeout' : `network: ${lastError.message}`
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

  /**
   * @private
   * @param {AbortSignal | undefined} signal
   * @returns {AbortSignal | undefined}
   */
  attemptSignal(signal) {
    /** @type {AbortSignal[]} */
    const signals = []
    if (signal) signals.push(signal)
    if (this.opts.timeoutMs) signals.push(AbortSignal.timeout(this.opts.timeoutMs))
    if (signals.length === 0) return undefined
    return signals.length === 1 ? signals[0] : AbortSignal.any(signals)
  }
}

/**
 * @param {string} text
 * @param {number} status
 * @returns {{ code: string, message: string }}
 */
function readError(text, status) {
  try {
    const body = /** @type {{ error?: { code?: string, message?: string } }} */ (JSON.parse(text))
    if (body.error?.code) return { code: body.error.code, message: body.error.message ?? '' }
  } catch {
    // Not our JSON (a proxy's HTML error page): fall through to the status line.
  }
  return { code: `http_${status}`, message: text.slice(0, 200) }
}
