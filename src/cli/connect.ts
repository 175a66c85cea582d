// How the CLIs reach a reward service: over HTTP (a running server), or in-process (the same app and engine
// built here, requests through Fastify's inject) for offline jobs on a machine without a server. Both go
// through RewardClient, so retries, errors and response shapes are identical.
import { pathToFileURL } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { RewardClient } from '../../clients/typescript/index.js'

export interface ConnectOptions {
  url?: string
  apiKey?: string
  /** Build the app here instead; env for loadConfig (MODELS_DIR, THREADS, ...). */
  inProcess?: Record<string, string | undefined>
  timeoutMs?: number
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void
}

export interface Connection {
  client: RewardClient
  close(): Promise<void>
}

export async function connect(opts: ConnectOptions): Promise<Connection> {
  if (!opts.inProcess) {
    const client = new RewardClient({
      baseUrl: opts.url ?? 'http://127.0.0.1:8080',
      apiKey: opts.apiKey,
      timeoutMs: opts.timeoutMs,
      onRetry: opts.onRetry,
    })
    return { client, close: async () => {} }
  }
  // Loaded lazily: the HTTP mode must not pay for ONNX Runtime and the model repository.
  const { buildApp } = await import('../app.ts')
  const { loadConfig } = await import('../config.ts')
  const app = buildApp(loadConfig({ LOG_LEVEL: 'warn', ...opts.inProcess }))
  await app.ready()
  const client = new RewardClient({ baseUrl: 'http://in-process', fetch: injectFetch(app), onRetry: opts.onRetry })
  return { client, close: () => app.close() }
}

/** A fetch that answers through app.inject (no socket). */
export function injectFetch(app: FastifyInstance): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const u = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
    const res = await app.inject({
      method: (init?.method ?? 'GET') as 'GET' | 'POST',
      url: u.pathname + u.search,
      headers: init?.headers as Record<string, string> | undefined,
      payload: init?.body as string | undefined,
    })
    const headers = new Headers()
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, String(v))
    return new Response(res.body, { status: res.statusCode, headers })
  }) as typeof fetch
}

/** parseArgs options every CLI shares: input/output, concurrency, progress, and reaching the service. */
export const COMMON_ARGS = {
  input: { type: 'string' },
  out: { type: 'string' },
  concurrency: { type: 'string', default: '4' },
  'no-progress': { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
  url: { type: 'string', default: 'http://127.0.0.1:8080' },
  'in-process': { type: 'boolean', default: false },
  'models-dir': { type: 'string', default: 'models' },
  model: { type: 'string' },
  'api-key': { type: 'string' },
} as const

export function connectFromArgs(values: { url?: string; 'in-process'?: boolean; 'models-dir'?: string; 'api-key'?: string }): Promise<Connection> {
  return connect({
    url: values.url,
    apiKey: values['api-key'],
    inProcess: values['in-process'] ? { MODELS_DIR: values['models-dir'] } : undefined,
    onRetry: (i) => process.stderr.write(`retry ${i.attempt} in ${i.delayMs} ms (${i.reason})\n`),
  })
}

/** Runs a CLI's main when its file is the entry point; errors become one line on stderr and exit code 1. */
export function runIfEntry(moduleUrl: string, name: string, main: (argv: string[]) => Promise<number>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`${name}: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
