/**
 * Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * @param {string | null | undefined} value
 * @param {number} nowMs
 * @returns {number | null} milliseconds, or null if absent or malformed
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null;
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
export function retryDelayMs(retry: number, retryAfterMs: number | null, policy: RetryPolicy, random?: () => number): number;
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
/** @type {Readonly<RetryPolicy>} */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy>;
/** @type {ReadonlySet<number>} */
export const RETRYABLE_STATUS: ReadonlySet<number>;
export class RewardServiceError extends Error {
    /**
     * @param {number} status HTTP status; 0 when no HTTP answer came at all (connection refused, DNS, timeouts)
     * @param {string} code the service's error code (`http_<status>` for an error page that is not the service's)
     * @param {string} message
     * @param {number} attempts
     */
    constructor(status: number, code: string, message: string, attempts: number);
    /** @readonly */
    readonly status: number;
    /** @readonly */
    readonly code: string;
    /** @readonly */
    readonly attempts: number;
}
export class RewardClient {
    /** @param {RewardClientOptions} opts */
    constructor(opts: RewardClientOptions);
    /** @readonly */
    readonly baseUrl: string;
    /** @private @readonly */
    private readonly opts;
    /** @private @readonly @type {RetryPolicy} */
    private readonly policy;
    /** POST /v1/score. @param {JsonObject} body @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
    score(body: JsonObject, signal?: AbortSignal): Promise<JsonObject>;
    /**
     * The reward after each step of the conversation's response (its last message), from one packed pass
     * (POST /v1/score with `steps`).
     * @param {Message[]} messages
     * @param {StepsOption} steps
     * @param {{ model?: string, signal?: AbortSignal }} [opts]
     * @returns {Promise<number[]>}
     */
    stepScores(messages: Message[], steps: StepsOption, opts?: {
        model?: string;
        signal?: AbortSignal;
    }): Promise<number[]>;
    /** POST /v1/compare. @param {JsonObject} body @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
    compare(body: JsonObject, signal?: AbortSignal): Promise<JsonObject>;
    /**
     * POST /v1/rank (best-of-N; with `group`, GRPO advantages over the candidates).
     * @param {RankRequest & JsonObject} body
     * @param {AbortSignal} [signal]
     * @returns {Promise<RankResponse & JsonObject>}
     */
    rank(body: RankRequest & JsonObject, signal?: AbortSignal): Promise<RankResponse & JsonObject>;
    /**
     * POST /get_reward (OpenRLHF's remote reward model route).
     * @param {GetRewardRequest} body
     * @param {AbortSignal} [signal]
     * @returns {Promise<GetRewardResponse>}
     */
    getReward(body: GetRewardRequest, signal?: AbortSignal): Promise<GetRewardResponse>;
    /** GET /v1/models. @param {AbortSignal} [signal] @returns {Promise<JsonObject>} */
    models(signal?: AbortSignal): Promise<JsonObject>;
    /**
     * Any JSON route, with the retry policy.
     * @param {'GET' | 'POST'} method
     * @param {string} path e.g. /v1/score
     * @param {JsonObject} [body]
     * @param {AbortSignal} [signal]
     * @returns {Promise<JsonObject>}
     */
    request(method: "GET" | "POST", path: string, body?: JsonObject, signal?: AbortSignal): Promise<JsonObject>;
    /**
     * @private
     * @param {AbortSignal | undefined} signal
     * @returns {AbortSignal | undefined}
     */
    private attemptSignal;
}
export type Role = "system" | "user" | "assistant" | "tool";
export type TextPart = {
    type: "text";
    text: string;
};
/**
 * An image or video part with exactly one source: base64 `data`, a multipart `file` field name, or a remote `url`
 * (when the service allows remote media).
 */
export type MediaPart = {
    type: "image" | "video";
    data?: string;
    file?: string;
    url?: string;
};
export type ContentPart = TextPart | MediaPart;
export type Content = string | ContentPart[];
/**
 * An OpenAI / TRL tool call on an assistant turn (`arguments`: an object or a JSON string).
 */
export type ToolCall = {
    type?: string;
    id?: string;
    function: {
        name: string;
        arguments?: unknown;
    };
};
/**
 * One chat message. `content: null` is allowed on an assistant turn that only calls tools.
 */
export type Message = {
    role: Role;
    content: Content | null;
    tool_calls?: ToolCall[] | null | undefined;
    name?: string | null | undefined;
    tool_call_id?: string | null | undefined;
};
/**
 * /get_reward's query templates (`auto` detects one and answers 422 for an unknown format; `auto_or_plain` falls
 * back to plain text).
 */
export type QueryTemplate = "auto" | "auto_or_plain" | "plain" | "chatml" | "qwen2" | "llama3" | "internlm2" | "ixc" | "gemma" | "phi3" | "mistral";
export type Clip = {
    min: number;
    max: number;
};
export type LengthPenalty = {
    threshold: number;
    per_token: number;
};
export type RewardShapingOptions = {
    /**
     * z-score with the model's training statistics
     */
    normalize?: boolean | undefined;
    clip?: Clip | null | undefined;
    length_penalty?: LengthPenalty | null | undefined;
};
/**
 * How samples form GRPO groups: `size` consecutive samples (as TRL, verl and OpenRLHF lay out a prompt's
 * completions; must divide the sample count) or one group id per sample (any order; the number 7 and the string
 * "7" are different groups). Exactly one of the two.
 */
export type GroupBy = {
    size: number;
    ids?: undefined;
} | {
    ids: Array<string | number>;
    size?: undefined;
};
/**
 * GRPO group advantages wanted with /get_reward's rewards, computed on the `shaped` rewards (the returned ones;
 * default) or the `raw` reward-model scores; `epsilon` is added to the group std (default 1e-4).
 */
export type GetRewardGroupSpec = GroupBy & {
    on?: "shaped" | "raw";
    epsilon?: number;
};
/**
 * GRPO group advantages over /v1/rank's candidates, computed on the `raw` scores (default) or the `normalized`
 * ones (needs `normalize: true`).
 */
export type RankGroupSpec = GroupBy & {
    on?: "raw" | "normalized";
    epsilon?: number;
};
export type GroupSpec = GetRewardGroupSpec | RankGroupSpec;
/**
 * Which advantage a trainer uses: GRPO's (r - mean_g) / (std_g + epsilon) or Dr. GRPO's r - mean_g.
 */
export type AdvantageVariant = "grpo" | "dr_grpo";
/**
 * `advantages` of /get_reward and /v1/rank when the request has `group`: GRPO's (r - mean_g) / (std_g + epsilon)
 * and Dr. GRPO's r - mean_g per sample, with each sample's group index, mean and (unbiased) std.
 */
export type GroupAdvantages = {
    on: "raw" | "shaped" | "normalized";
    epsilon: number;
    size?: number | undefined;
    ids?: (string | number)[] | undefined;
    group: number[];
    grpo: number[];
    dr_grpo: number[];
    group_mean: number[];
    group_std: number[];
};
/**
 * Step-level rewards: the response's steps (their concatenation is the response), or a separator that splits it.
 */
export type StepsOption = string[] | {
    separator: string;
};
/**
 * POST /get_reward: OpenRLHF's payload (`query`, `prompts`, `labels`) or the native form (`messages`, one
 * conversation per sample, media as parts). Give exactly one of `query` and `messages`.
 */
export type GetRewardRequest = {
    query?: string[] | undefined;
    prompts?: string[] | null | undefined;
    labels?: unknown;
    messages?: Message[][] | undefined;
    template?: QueryTemplate | undefined;
    options?: RewardShapingOptions | undefined;
    /**
     * GRPO group advantages (answer `advantages`, extra_logs `advantage`)
     */
    group?: GetRewardGroupSpec | undefined;
    model?: string | undefined;
};
export type GetRewardResponse = {
    /**
     * shaped rewards (what a trainer uses)
     */
    rewards: number[];
    /**
     * raw reward-model logits
     */
    scores: number[];
    /**
     * per-sample logs; every key is present, `[]` for an empty shard
     */
    extra_logs: Record<string, unknown[]>;
    /**
     * when the request has `group`
     */
    advantages?: GroupAdvantages | undefined;
};
/**
 * Best-of-N length control for /v1/rank.
 */
export type LengthControlOptions = {
    mode: "ratio";
    k: number;
} | {
    mode: "penalty";
    per_token: number;
    threshold?: number;
};
/**
 * Request and response bodies of /v1/score and /v1/compare (see openapi.yaml); passed through as they are,
 * typed loosely so that the client does not pin every optional field.
 */
export type JsonObject = Record<string, unknown>;
/**
 * POST /v1/rank: one prompt (text or messages), N candidate responses. The options are typed; other fields pass
 * through (the service answers 422 for a missing prompt or candidates).
 */
export type RankRequest = {
    prompt?: string | Message[] | undefined;
    candidates?: Content[] | undefined;
    normalize?: boolean | undefined;
    length_control?: LengthControlOptions | undefined;
    /**
     * GRPO group advantages over the candidates (answer `advantages`)
     */
    group?: RankGroupSpec | undefined;
    model?: string | undefined;
};
export type RankResponse = {
    /**
     * raw reward-model scores, in candidate order
     */
    scores: number[];
    /**
     * with `normalize: true`
     */
    normalized_scores?: number[] | undefined;
    /**
     * 0 = best
     */
    ranks: number[];
    /**
     * candidate indices, best first
     */
    order: number[];
    best: number;
    candidate_tokens: number[];
    /**
     * when the request has `group`
     */
    advantages?: GroupAdvantages | undefined;
};
export type RetryPolicy = {
    /**
     * attempts in total, the first included
     */
    maxAttempts: number;
    /**
     * backoff before retry n (1-based) is min(maxDelayMs, initialDelayMs * 2^(n-1)), jittered
     */
    initialDelayMs: number;
    maxDelayMs: number;
    /**
     * upper bound on a server-sent Retry-After, so a bad header cannot park a trainer for an hour
     */
    maxRetryAfterMs: number;
};
export type RetryInfo = {
    attempt: number;
    delayMs: number;
    reason: string;
};
export type RewardClientOptions = {
    /**
     * e.g. http://127.0.0.1:8080
     */
    baseUrl: string;
    /**
     * sent as `Authorization: Bearer`
     */
    apiKey?: string | undefined;
    retry?: Partial<RetryPolicy> | undefined;
    /**
     * per attempt; a timed-out attempt is retried like a 504
     */
    timeoutMs?: number | undefined;
    /**
     * injected transport (tests, in-process use)
     */
    fetch?: typeof fetch | undefined;
    sleep?: ((ms: number) => Promise<void>) | undefined;
    random?: (() => number) | undefined;
    /**
     * called before each retry (progress bars and logs)
     */
    onRetry?: ((info: RetryInfo) => void) | undefined;
};
