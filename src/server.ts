// The process: parse config, build the app, listen, and shut down gracefully. On SIGTERM/SIGINT readiness
// turns false and new requests get 503 shutting_down (Connection: close) while in-flight requests finish
// within SHUTDOWN_GRACE_MS; then the engine worker is released and the process exits 0 (1 if the grace ran out).
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'
import { startOpsServer } from './http/ops-server.ts'

const QUIET_MS = 250
const LAME_DUCK_MAX_MS = 5000

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
  let lastConnection = 0
  app.server.on('connection', () => (lastConnection = Date.now()))
  let ops: Awaited<ReturnType<typeof startOpsServer>> = null
  closeWithGrace({ delay: config.shutdownGraceMs, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    app.lifecycle.shuttingDown = true
    // Keep listening while requests that arrived before the signal finish, so that new ones get a clear 503
    // shutting_down (and load balancers see readiness fail) instead of connection refused; then app.close()
    // stops listening, closes idle keep-alive sockets and releases the engine worker.
    while (app.lifecycle.inflight > 0) await new Promise((r) => setTimeout(r, 20))
    // Closing the listener resets connections still queued in the kernel's accept backlog: a client sees a
    // request lost. So close once new connections have stopped arriving (clients and load balancers back off
    // after a 503 with Connection: close) for QUIET_MS, or after LAME_DUCK_MAX_MS of callers that do not.
    const drainedAt = Date.now()
    while (Date.now() - lastConnection < QUIET_MS && Date.now() - drainedAt < LAME_DUCK_MAX_MS) {
      await new Promise((r) => setTimeout(r, 20))
    }
    while (app.lifecycle.inflight > 0) await new Promise((r) => setTimeout(r, 20))
    await ops?.close() // first: its answers come from the app
    await app.close()
  })
  await app.listen({ port: config.port, host: config.host })
  ops = await startOpsServer(app, config)
}

await main()
