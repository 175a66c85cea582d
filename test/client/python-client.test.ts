// Runs the standard-library Python client's own tests (retries against a local server that answers 503 first)
// from the node suite, so `npm test` covers both clients. Needs only a python3 (no packages).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

t.test('clients/python unit tests pass', async (t) => {
  const res = spawnSync('python3', ['-m', 'unittest', 'discover', '-s', 'clients/python/tests', '-v'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.equal(res.error, undefined, 'python3 is on PATH')
  t.equal(res.status, 0, res.stderr)
  t.match(res.stderr, /Ran [1-9]\d* tests/)
  t.match(res.stderr, /\nOK\b/)
})
