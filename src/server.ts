// The process: parse config, build the app, listen, and shut down gracefully. On SIGTERM/SIGINT readiness
// turns false and new requests get 503 shutting_down (Connection: close) while in-flight requests finish
// within SHUTDOWN_GRACE_MS (src/http/shutdown.ts has the steps); then the engine worker is released and the
// process exits 0 (1 if the grace ran out). If start-up fails (STARTUP_TIMEOUT_MS ran out while the models
// loaded, a port in use, ...) the reason is logged and the process exits 1 once the engine worker is released.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'
import { startOpsServer } from './http/ops-server.ts'
import { startupFailureMessage } from './http/startup.ts'
import { drainAndClose } from './http/shutdown.ts'

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message)
      process.exit(2)
    }
    throw err
  }
  const app = buildApp(config)
  let ops: Awaited<ReturnType<typeof startOpsServer>> = null
  closeWithGrace({ delay: config.shutdownGraceMs, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    // Keep listening while requests that arrived before the signal finish, so that new ones get a clear 503
    // shutting_down (and load balancers see readiness fail) instead of connection refused.
    await drainAndClose(app, {
      graceMs: config.shutdownGraceMs,
      beforeClose: async () => {
        await ops?.close() // before the app: its answers come from the app
      },
    })
  })
  try {
    await app.listen({ port: config.port, host: config.host })
    ops = await startOpsServer(app, config)
  } catch (err) {
    app.log.fatal({ err }, startupFailureMessage(err, config))
    // The engine worker must be released before exiting, and only between native calls (engine-client.ts
    // close()): exiting during a model load's session creation aborted the process with an uncaught
    // Napi::Error. app.close() does that through its onClose hooks, but refuses after a plugin timed out.
    await app.close().catch(async (closeErr: unknown) => {
      app.log.warn({ err: closeErr }, 'closing after the failed start-up; releasing the engine directly')
      await app.engine?.close()
    })
    process.exit(1)
  }
}

await main()
