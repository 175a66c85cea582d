// Every knob of the service, parsed once at the edge. Nothing else reads process.env: server.ts calls
// loadConfig(process.env) and passes the frozen result down; tests build one with testConfig().
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { z } from 'zod'
import { QUERY_TEMPLATE_NAMES } from './rlhf/query-template.ts'
import { MediaEnvSchema, mediaConfigFromEnv, type MediaConfig } from './preprocess/media/media-config.ts'
import { INLINE_CHARS } from './preprocess/text/inline-policy.ts'
import { SCORES_MODES, parseClipSpec, parseLengthPenaltySpec, specField, type RewardShaping, type ScoresMode } from './rlhf/reward-shaping.ts'

const intFrom = (def: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def)

const listFrom = (def: string) =>
  z
    .string()
    .default(def)
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x.length > 0),
    )

export const EXECUTION_PROVIDERS = ['cuda', 'webgpu', 'cpu'] as const
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number]

const EnvSchema = z.object({
  /** TCP port; 0 picks a free one (tests, bench). */
  PORT: intFrom(8080, 0, 65535),
  HOST: z.string().min(1).default('0.0.0.0'),
  /** Triton-style repository: MODELS_DIR/<name>/<version>/model.json. Relative paths resolve from the cwd. */
  MODELS_DIR: z.string().min(1).default('models'),
  /** Where model file hashes are remembered between starts (src/models/checksums.ts): a file is re-hashed only
   *  when its inode, size, mtime or ctime changed. Default: MODELS_DIR/.sha256-cache.json (as trusted as the
   *  models; a read-only MODELS_DIR only costs a re-hash per start). "off": hash every file on every load. */
  CHECKSUM_CACHE: z.string().default(''),
  /** Model answering requests that name none. Empty: the only model, or the first name alphabetically. */
  DEFAULT_MODEL: z.string().default(''),
  /** Ordered preference; the first provider whose session initialises wins, the others' failures are logged and
   *  shown in /v1/models. cpu last so a host without a GPU still serves. */
  EXECUTION_PROVIDERS: listFrom('cuda,webgpu,cpu').pipe(z.array(z.enum(EXECUTION_PROVIDERS)).min(1)),
  /** ORT intra-op threads per engine replica. 0 = the available cores divided among the replicas (at least 1).
   *  On a shared host fewer threads trade peak speed for less contention with the event loop and tokenization. */
  THREADS: intFrom(0, 0, 256),
  /** Engine worker threads, each with its own sessions of every model (src/engine/replicas.ts; Triton's instance
   *  count). Text batches go to the least busy one, media work to the first. On CPU, N replicas of one thread each
   *  scored 1.5-1.7x the items/s of one replica with N threads (bench/README.md), at a higher single-item latency
   *  and N copies of the weights in memory; on a GPU keep 1. */
  ENGINE_REPLICAS: intFrom(1, 1, 64),
  /** Let idle ORT threads spin-wait for work. Lowers latency on a dedicated machine; on a shared host or under
   *  a container CPU quota spinning threads steal the cores the other threads need (measured: 2x slower). */
  ORT_SPIN: z.stringbool().default(false),
  /** Padded token budget of one batch (max_len_in_batch x rows). Bigger batches amortise per-run overhead but
   *  every row waits for the longest one; when set, must be >= each model's max_seq_len or that model refuses to
   *  load. 0 = per model by execution provider: 16384 on GPU providers (batching amortises kernel launches),
   *  the model's max_seq_len on cpu, where a batch costs at least the sum of its rows and larger batches were
   *  measured slower per row (cache pressure, padding) — see bench/README.md. */
  MAX_BATCH_TOKENS: intFrom(0, 0),
  /** Rows per batch. */
  MAX_BATCH_SIZE: intFrom(32, 1, 4096),
  /** How long the oldest queued job may wait for company while the engine is idle. 0 = run at once (lowest
   *  latency at low load; under load batches fill anyway while the previous batch runs). */
  MAX_QUEUE_DELAY_MS: intFrom(0, 0, 10_000),
  /** Batches handed to the engine at once. 0 = one per engine replica. One more than the replicas = a batch is
   *  packed while the others run (TEI's prefetch), at the price of smaller batches when the queue is short. */
  PIPELINE_DEPTH: intFrom(0, 0, 64),
  /** Queued rows of different requests that share a prefix (a GRPO group's samples sent as separate calls) run
   *  as one packed row of the model's reward_packed.onnx, as rows of one request always do. Scores equal
   *  separate rows to float rounding (≤ 1e-4, measured ≤ 2e-5); false = each request's rows apart. */
  PACK_ACROSS_REQUESTS: z.stringbool().default(true),
  /** Items (conversations) admitted at once, in flight plus queued. Beyond it requests get 503 + Retry-After
   *  before any tokenization or media work. Low values turn waiting into fast 503s that RLHF clients retry. */
  MAX_PENDING_ITEMS: intFrom(512, 1),
  /** Vision runs (one image or video each, cache misses only) admitted at once, running plus queued, in the
   *  batcher's vision queue. Beyond it: 503 + Retry-After. */
  MAX_PENDING_IMAGES: intFrom(64, 1),
  /** Items one request may carry (score items, rank candidates). Must be <= MAX_PENDING_ITEMS. */
  MAX_CLIENT_BATCH_SIZE: intFrom(128, 1),
  /** Characters of text per conversation, checked before tokenizing (each text's head beyond what max_seq_len
   *  can use is cut before tokenizing anyway). Over it: 422 input_too_long. */
  MAX_ITEM_CHARS: intFrom(400_000, 1),
  /** Characters of text per request (all its conversations together), checked before any tokenization: bounds
   *  the tokenizer's work per request. Over it: 422 input_too_long. */
  MAX_REQUEST_CHARS: intFrom(4_000_000, 1),
  /** Requests whose texts total at most this many characters (one outside ASCII counts 4) are tokenized on the
   *  event loop (at most ≈ 2-4 ms of it), the rest on the tokenizer's worker thread: for short texts the worker
   *  round trip costs more than the tokenization. 0 = always the worker. */
  TOKENIZE_INLINE_CHARS: intFrom(INLINE_CHARS, 0, 65_536),
  /** Seconds sent in Retry-After with 503 overloaded / shutting_down. */
  RETRY_AFTER_S: intFrom(1, 0, 3600),
  /** Per-request deadline from arrival to answer; past it the request gets 504 and its queued work is dropped. */
  REQUEST_TIMEOUT_MS: intFrom(30_000, 1),
  /** Time a client has to send its whole request (headers and body) from its first byte; past it the server
   *  answers 408 and closes the connection (Node's requestTimeout; Fastify's default 0 never drops a slow
   *  sender, which then held the in-flight count and the shutdown). Long inference is not limited by it. */
  BODY_TIMEOUT_MS: intFrom(30_000, 100),
  /** Time to send the request headers (slowloris); must be <= BODY_TIMEOUT_MS. */
  HEADERS_TIMEOUT_MS: intFrom(10_000, 100),
  /** An idle keep-alive connection is closed after this long (Fastify's default). */
  KEEP_ALIVE_TIMEOUT_MS: intFrom(72_000, 1),
  /** multipart uploads being received or held at once (each is stored in MEDIA_TEMP_DIR until its request
   *  ends); beyond it an upload gets 503 + Retry-After before a byte of it is read. */
  MAX_CONCURRENT_UPLOADS: intFrom(16, 1),
  /** Bytes of multipart uploads in flight (declared Content-Length; MEDIA_MAX_REQUEST_BYTES when none is
   *  declared): the temp dir is often RAM-backed. Beyond it: 503 + Retry-After before reading. */
  MAX_UPLOAD_BYTES_IN_FLIGHT: intFrom(256 * 1024 * 1024, 1),
  /** How long start-up may take before the process gives up (exit 1 with a logged error): loading, validating
   *  and warming every model in MODELS_DIR happens before the server listens, and a 7B model with external data
   *  takes minutes (more on a loaded host). Passed to Fastify as pluginTimeout, whose 10 s default killed
   *  start-up under CPU load. 0 = no limit (leave it to the orchestrator's startup probe). */
  STARTUP_TIMEOUT_MS: intFrom(600_000, 0),
  /** Largest request body accepted (JSON with inline base64 media counts here). */
  BODY_LIMIT_BYTES: intFrom(32 * 1024 * 1024, 1024),
  /** Comma-separated bearer keys; empty = no auth. Health, readiness and metrics stay public. */
  API_KEYS: listFrom(''),
  /** On SIGTERM: how long in-flight requests get to finish before the process exits anyway. */
  SHUTDOWN_GRACE_MS: intFrom(10_000, 0),
  /** A second port serving only /healthz, /readyz and /metrics (probes, scraper); 0 = off (they stay open on PORT
   *  either way). */
  OPS_PORT: intFrom(0, 0, 65535),
  /** A file of bearer keys, one per line (# comments), added to API_KEYS (mount a Secret here). */
  API_KEYS_FILE: z.string().default(''),
  /** Bearer token for /admin/* (model reload). Empty = the admin API answers 403. Never one of API_KEYS. */
  ADMIN_TOKEN: z.string().default(''),
  /** Requests per RATE_LIMIT_WINDOW_MS per API key (per client IP without auth) on the scoring routes; over it
   *  429 + Retry-After. 0 = off. */
  RATE_LIMIT_MAX: intFrom(0, 0),
  RATE_LIMIT_WINDOW_MS: intFrom(60_000, 1),
  /** Failed authentications per client address per AUTH_FAILURE_WINDOW_MS; past it every request from that
   *  address gets 429 + Retry-After until the window ends (on even when RATE_LIMIT_MAX is 0). 0 = off. */
  AUTH_FAILURE_LIMIT: intFrom(20, 0),
  AUTH_FAILURE_WINDOW_MS: intFrom(60_000, 1),
  /** Process-pressure protection (@fastify/under-pressure): past these, non-health requests get 503 +
   *  Retry-After. 0 = that check is off. */
  MAX_EVENT_LOOP_DELAY_MS: intFrom(0, 0),
  MAX_HEAP_USED_BYTES: intFrom(0, 0),
  MAX_RSS_BYTES: intFrom(0, 0),
  /** Hot reload: how often MODELS_DIR is scanned for new version directories (0 = only POST
   *  /admin/models/reload). A directory is loaded once it looks the same on two scans (fully written). */
  MODEL_POLL_INTERVAL_MS: intFrom(10_000, 0),
  /** /get_reward (OpenRLHF): the policy chat template its `query` strings carry, parsed back into messages and
   *  re-rendered with the RM's template. auto = detect from the markers (Llama-3, IXC, Gemma, Phi-3, Mistral,
   *  ChatML / Qwen2 / InternLM2); a query in no known format is a 422 (auto_or_plain splits it at prompts[i]
   *  instead). One of auto, auto_or_plain, plain, chatml, qwen2, llama3, internlm2, ixc, gemma, phi3, mistral.
   *  A trainer can override it per URL: --remote_rm_url http://host:8080/get_reward?template=qwen2 */
  RLHF_QUERY_TEMPLATE: z.enum(QUERY_TEMPLATE_NAMES).default('auto'),
  /** /get_reward shaping defaults, all off (raw logits are what the RM learned). NORMALIZE: z-score with the
   *  manifest's train_stats, so rewards from different RMs/versions share a scale. Overridable per URL
   *  (?normalize=true) or per request (body.options). */
  RLHF_NORMALIZE: z.stringbool().default(false),
  /** "min:max": clip the shaped reward (PPO value loss blows up on rare huge logits). Empty = off. */
  RLHF_CLIP: specField(parseClipSpec).default(null),
  /** "threshold:per_token": subtract per_token for every response token beyond threshold, the usual guard
   *  against a policy learning that the RM likes length. Empty = off. */
  RLHF_LENGTH_PENALTY: specField(parseLengthPenaltySpec).default(null),
  /** What /get_reward returns as OpenRLHF's `scores` (its dynamic filtering expects 0..1): sigmoid =
   *  σ(reward), reward = the same numbers as `rewards` (OpenRLHF's reference server). */
  RLHF_SCORES: z.enum(SCORES_MODES).default('sigmoid'),
  /** /get_reward admission is by token cost, not item count: OpenRLHF <= 0.9 posts a whole rollout (1024
   *  queries by default), TRL and verl 256. A request may carry up to RLHF_MAX_QUERIES samples and
   *  RLHF_MAX_REQUEST_TOKENS tokens (the RM's own, each sample counted up to max_seq_len); it runs through the
   *  batcher in pieces of at most MAX_CLIENT_BATCH_SIZE rows, one piece at a time, so other clients' items
   *  interleave with it and it never holds more than one piece of MAX_PENDING_ITEMS. Over a limit: 413. */
  RLHF_MAX_QUERIES: intFrom(4096, 1),
  RLHF_MAX_REQUEST_TOKENS: intFrom(4 * 1024 * 1024, 1),
  /** Browser origins allowed to call the API cross-origin (CORS), comma-separated exact origins such as
   *  https://ui.example.com, or * for any. Empty = CORS off: browsers get no Access-Control-* headers. */
  CORS_ORIGINS: listFrom(''),
  /** Commit the image was built from, shown in scorer_build_info and /info (docker build --build-arg). */
  GIT_COMMIT: z.string().default('unknown'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

export interface Config {
  readonly port: number
  readonly host: string
  readonly modelsDir: string
  /** Checksum cache file; '' = none (CHECKSUM_CACHE=off). */
  readonly checksumCache: string
  readonly defaultModel: string
  readonly executionProviders: readonly ExecutionProvider[]
  /** ORT intra-op threads of each engine replica */
  readonly threads: number
  readonly engineReplicas: number
  readonly ortSpin: boolean
  readonly batch: {
    readonly maxBatchTokens: number
    readonly maxBatchSize: number
    readonly maxQueueDelayMs: number
    readonly pipelineDepth: number
    readonly packAcrossRequests: boolean
  }
  readonly maxPendingItems: number
  readonly maxPendingImages: number
  readonly maxClientBatchSize: number
  readonly maxItemChars: number
  readonly maxRequestChars: number
  readonly tokenizeInlineChars: number
  readonly retryAfterS: number
  readonly requestTimeoutMs: number
  readonly http: { readonly bodyTimeoutMs: number; readonly headersTimeoutMs: number; readonly keepAliveTimeoutMs: number }
  readonly bodyLimitBytes: number
  /** Fastify's pluginTimeout: the whole start-up (model loading included) must finish within it; 0 = no limit. */
  readonly startupTimeoutMs: number
  readonly uploads: { readonly maxConcurrent: number; readonly maxBytesInFlight: number }
  readonly apiKeys: readonly string[]
  readonly shutdownGraceMs: number
  readonly logLevel: string
  readonly opsPort: number
  readonly adminToken: string
  readonly rateLimit: { readonly max: number; readonly windowMs: number }
  readonly authFailures: { readonly limit: number; readonly windowMs: number }
  readonly pressure: { readonly maxEventLoopDelayMs: number; readonly maxHeapUsedBytes: number; readonly maxRssBytes: number }
  readonly modelPollIntervalMs: number
  /** CORS allow-list (empty = off; ['*'] = any origin). */
  readonly corsOrigins: readonly string[]
  readonly gitCommit: string
  /** Image/video limits and switches (env knobs documented in src/preprocess/media/media-config.ts). */
  readonly media: MediaConfig
  readonly rlhf: {
    readonly queryTemplate: string
    readonly shaping: RewardShaping
    readonly scores: ScoresMode
    readonly maxQueries: number
    readonly maxRequestTokens: number
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v)
    Object.freeze(o)
  }
  return o
}

/** API_KEYS_FILE: one key per line; blank lines and # comments ignored. A missing file is a config error. */
function readKeysFile(file: string): string[] {
  if (!file) return []
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`API_KEYS_FILE ${file}: ${(err as Error).message}`)
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings mean "unset" (docker/k8s often pass KEY= for optional values).
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  const parsed = EnvSchema.safeParse(cleaned)
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(parsed.error)}`)
  const e = parsed.data
  const mediaEnv = MediaEnvSchema.safeParse(cleaned)
  if (!mediaEnv.success) throw new ConfigError(`invalid configuration:\n${z.prettifyError(mediaEnv.error)}`)
  const apiKeys = [...e.API_KEYS, ...readKeysFile(e.API_KEYS_FILE)]
  if (e.ADMIN_TOKEN && apiKeys.includes(e.ADMIN_TOKEN)) {
    throw new ConfigError('ADMIN_TOKEN must differ from every API key (a scoring key must not unlock the admin API)')
  }
  if (e.HEADERS_TIMEOUT_MS > e.BODY_TIMEOUT_MS) {
    throw new ConfigError('HEADERS_TIMEOUT_MS must be <= BODY_TIMEOUT_MS (the headers are part of the request)')
  }
  if (e.MAX_CLIENT_BATCH_SIZE > e.MAX_PENDING_ITEMS) {
    throw new ConfigError('MAX_CLIENT_BATCH_SIZE must be <= MAX_PENDING_ITEMS (such a request could never be admitted)')
  }
  return deepFreeze<Config>({
    port: e.PORT,
    host: e.HOST,
    modelsDir: e.MODELS_DIR,
    checksumCache:
      e.CHECKSUM_CACHE === 'off' ? '' : e.CHECKSUM_CACHE || path.join(e.MODELS_DIR, '.sha256-cache.json'),
    defaultModel: e.DEFAULT_MODEL,
    executionProviders: e.EXECUTION_PROVIDERS,
    threads: e.THREADS === 0 ? Math.max(1, Math.floor(os.availableParallelism() / e.ENGINE_REPLICAS)) : e.THREADS,
    engineReplicas: e.ENGINE_REPLICAS,
    ortSpin: e.ORT_SPIN,
    batch: {
      maxBatchTokens: e.MAX_BATCH_TOKENS,
      maxBatchSize: e.MAX_BATCH_SIZE,
      maxQueueDelayMs: e.MAX_QUEUE_DELAY_MS,
      pipelineDepth: e.PIPELINE_DEPTH || e.ENGINE_REPLICAS,
      packAcrossRequests: e.PACK_ACROSS_REQUESTS,
    },
    maxPendingItems: e.MAX_PENDING_ITEMS,
    maxPendingImages: e.MAX_PENDING_IMAGES,
    maxClientBatchSize: e.MAX_CLIENT_BATCH_SIZE,
    maxItemChars: e.MAX_ITEM_CHARS,
    maxRequestChars: e.MAX_REQUEST_CHARS,
    tokenizeInlineChars: e.TOKENIZE_INLINE_CHARS,
    retryAfterS: e.RETRY_AFTER_S,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    http: { bodyTimeoutMs: e.BODY_TIMEOUT_MS, headersTimeoutMs: e.HEADERS_TIMEOUT_MS, keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS },
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    startupTimeoutMs: e.STARTUP_TIMEOUT_MS,
    uploads: { maxConcurrent: e.MAX_CONCURRENT_UPLOADS, maxBytesInFlight: e.MAX_UPLOAD_BYTES_IN_FLIGHT },
    apiKeys,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    logLevel: e.LOG_LEVEL,
    opsPort: e.OPS_PORT,
    adminToken: e.ADMIN_TOKEN,
    rateLimit: { max: e.RATE_LIMIT_MAX, windowMs: e.RATE_LIMIT_WINDOW_MS },
    authFailures: { limit: e.AUTH_FAILURE_LIMIT, windowMs: e.AUTH_FAILURE_WINDOW_MS },
    pressure: {
      maxEventLoopDelayMs: e.MAX_EVENT_LOOP_DELAY_MS,
      maxHeapUsedBytes: e.MAX_HEAP_USED_BYTES,
      maxRssBytes: e.MAX_RSS_BYTES,
    },
    modelPollIntervalMs: e.MODEL_POLL_INTERVAL_MS,
    corsOrigins: e.CORS_ORIGINS,
    gitCommit: e.GIT_COMMIT,
    media: mediaConfigFromEnv(mediaEnv.data),
    rlhf: {
      queryTemplate: e.RLHF_QUERY_TEMPLATE,
      shaping: { normalize: e.RLHF_NORMALIZE, clip: e.RLHF_CLIP, length_penalty: e.RLHF_LENGTH_PENALTY },
      scores: e.RLHF_SCORES,
      maxQueries: e.RLHF_MAX_QUERIES,
      maxRequestTokens: e.RLHF_MAX_REQUEST_TOKENS,
    },
  })
}
