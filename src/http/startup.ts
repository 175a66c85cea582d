// What server.ts logs when the app fails to start. Start-up loads, validates and warms every model in
// MODELS_DIR (an onReady hook of the hot-reload plugin) within STARTUP_TIMEOUT_MS (Fastify's pluginTimeout);
// Fastify's own timeout message blames a forgotten `done` callback, which sends an operator the wrong way.
import type { Config } from '../config.ts'

const TIMEOUT_CODES = new Set(['FST_ERR_HOOK_TIMEOUT', 'FST_ERR_PLUGIN_TIMEOUT', 'AVV_ERR_READY_TIMEOUT', 'AVV_ERR_PLUGIN_EXEC_TIMEOUT'])

/** True for Fastify's start-up timeouts (a plugin or an onReady hook ran past pluginTimeout). */
export function isStartupTimeout(err: unknown): boolean {
  return TIMEOUT_CODES.has((err as { code?: unknown } | null)?.code as string)
}

/** One line for the fatal log entry before the process exits 1. */
export function startupFailureMessage(err: unknown, config: Pick<Config, 'startupTimeoutMs' | 'modelsDir'>): string {
  if (isStartupTimeout(err)) {
    return (
      `start-up did not finish within STARTUP_TIMEOUT_MS=${config.startupTimeoutMs} ms (loading and warming the ` +
      `models in MODELS_DIR=${config.modelsDir}); raise STARTUP_TIMEOUT_MS for large models or a loaded host ` +
      `(0 = no limit)`
    )
  }
  return `start-up failed: ${err instanceof Error ? err.message : String(err)}`
}
