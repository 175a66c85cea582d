// In CI (CI=true) a parity or golden test never skips: a missing tool (ffmpeg, python3 with PIL/onnx, the
// trainer's code) is a failure there. Tests skip through skipUnless (test/helpers/tools.ts); this checks it and
// that no test file skips on a tool check of its own.
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { skipUnless } from './helpers/tools.ts'
import { REPO_ROOT } from './helpers/real-model.ts'

t.test('skipUnless: a reason locally, a failure with CI=true', async (t) => {
  const ci = process.env.CI
  t.teardown(() => {
    if (ci === undefined) delete process.env.CI
    else process.env.CI = ci
  })
  delete process.env.CI
  t.equal(skipUnless(true, 'no ffmpeg'), false)
  t.equal(skipUnless(false, 'no ffmpeg'), 'no ffmpeg')
  process.env.CI = 'true'
  t.equal(skipUnless(true, 'no ffmpeg'), false)
  t.throws(() => skipUnless(false, 'no ffmpeg'), /no ffmpeg: required when CI=true/)
})

t.test('no test skips on a tool check of its own', async (t) => {
  const files = (readdirSync(path.join(REPO_ROOT, 'test'), { recursive: true }) as string[]).filter((f) => f.endsWith('.test.ts'))
  const own = /skip:\s*(!\s*has\w+|\w+\.status\s*!==\s*0)\s*&&/
  const offenders = files.filter((f) => own.test(readFileSync(path.join(REPO_ROOT, 'test', f), 'utf8')))
  t.same(offenders, [], 'use skipUnless(available, reason)')
})
