// Container HEALTHCHECK: the images have no curl, and node is already there. Exit 0 when the
// liveness endpoint answers 2xx within the timeout, 1 otherwise (Docker's contract).
// Liveness, not readiness: a container that is still loading or warming a model is alive and must
// not be restarted by Docker for it; traffic gating on readiness is the orchestrator's job (/readyz).
const port = process.env.PORT || '8080'
const url = process.env.HEALTHCHECK_URL || `http://127.0.0.1:${port}/healthz`
const timeoutMs = Number(process.env.HEALTHCHECK_TIMEOUT_MS || 3000)

try {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  await res.body?.cancel()
  process.exit(res.ok ? 0 : 1)
} catch {
  process.exit(1)
}
