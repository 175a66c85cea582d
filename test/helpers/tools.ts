// Skips for tests that need a host tool (ffmpeg, python3 with PIL, the trainer's code). Locally a missing tool
// skips with a reason; in CI (CI=true) it is a failure: a parity or golden test must never skip silently there.
export function skipUnless(available: boolean, reason: string): false | string {
  if (available) return false
  if (process.env.CI === 'true') throw new Error(`${reason}: required when CI=true (install it; parity and golden tests never skip in CI)`)
  return reason
}
