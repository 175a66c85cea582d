// Runs the Python client's tests from the node suite: pytest starts the REAL service (clients/python/tests/
// conftest.py: node, the repository's default model) and drives it with each framework's calling convention
// (OpenRLHF, TRL, verl) and with the sync and asyncio clients. Debian's /usr/bin/python3 carries pytest,
// numpy, PIL, torch and requests.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

t.test('clients/python tests pass against the real service', async (t) => {
  const res = spawnSync('/usr/bin/python3', ['-m', 'pytest', 'clients/python/tests', '-q', '-p', 'no:cacheprovider', '-rs'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, REWARD_SERVICE_TEST_URL: '' },
  })
  t.equal(res.error, undefined, '/usr/bin/python3 runs')
  t.equal(res.status, 0, res.stdout.slice(-4000) + res.stderr.slice(-2000))
  t.match(res.stdout, /\b(1[0-9]|[2-9]\d) passed\b/, 'every test ran')
  t.notMatch(res.stdout, /skipped/, 'nothing skipped')
})
