// The Node LTS that CI runs the suite on besides this machine's Node: scripts/lts-node.sh fetches the major that
// the production images use (docker/Dockerfile's NODE_IMAGE) from the npm registry, scripts/test.sh runs tap on
// it, `engines` admits both, and the CLIs and the client package start on it.
import t from 'tap'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'

const run = promisify(execFile)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const dockerfile = path.join(root, 'docker/Dockerfile')
const imageMajor = fs.existsSync(dockerfile) ? Number(/^ARG NODE_IMAGE=node:(\d+)/m.exec(fs.readFileSync(dockerfile, 'utf8'))?.[1]) : 22

/** ">=20.9"-style ranges (the only form package.json uses). */
function satisfies(version: string, range: string): boolean {
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim())
  if (!m) throw new Error(`engines.node ${range}: only >=X.Y[.Z] is understood here`)
  const v = version.replace(/^v/, '').split('.').map(Number)
  const want = [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)]
  for (let i = 0; i < 3; i++) if (v[i] !== want[i]) return v[i]! > want[i]!
  return true
}

t.test('scripts/lts-node.sh gives a Node of the images major, and test.sh runs tap on it', async (t) => {
  t.ok(Number.isInteger(imageMajor) && imageMajor >= 22, `images run Node ${imageMajor} (a supported LTS)`)
  const { stdout } = await run(path.join(root, 'scripts/lts-node.sh'), [], { cwd: root, timeout: 300_000 })
  const lts = stdout.trim().split('\n').pop()!
  t.ok(lts.startsWith(path.join(root, '.cache/node/')), `cached under .cache/node: ${lts}`)
  const version = (await run(lts, ['-p', 'process.version'])).stdout.trim()
  t.equal(Number(/^v(\d+)/.exec(version)?.[1]), imageMajor, `${version} is the images' major`)
  const engines = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node
  t.ok(satisfies(version, engines), `engines.node ${engines} admits ${version}`)
  t.ok(satisfies(process.version, engines), `engines.node ${engines} admits this machine's ${process.version}`)
  t.notOk(satisfies('v18.20.0', engines), 'and not an unsupported Node')
  const clientEngines = (JSON.parse(fs.readFileSync(path.join(root, 'clients/typescript/package.json'), 'utf8')) as { engines: { node: string } }).engines.node
  t.ok(satisfies(version, clientEngines) && satisfies(process.version, clientEngines), 'the client package admits both')

  // test.sh: the tap run with that Node first on PATH (tap's test processes use process.execPath).
  const sh = fs.readFileSync(path.join(root, 'scripts/test.sh'), 'utf8')
  t.match(sh, /lts=\$\(scripts\/lts-node\.sh\)/)
  t.match(sh, /PATH="\$\(dirname "\$lts"\):\$PATH" npx tap /)
  const viaPath = await run(path.join(root, 'scripts/lts-node.sh'), ['--', 'node', '-p', 'process.version'], { cwd: root })
  t.equal(viaPath.stdout.trim().split('\n').pop(), version, '`scripts/lts-node.sh -- CMD` (npm run test:lts) runs CMD on it')

  // The CLIs (through tsx, as `npm run cli:*` does) and the client package load on it.
  const env = { ...process.env, NODE_OPTIONS: '' }
  const bon = await run(lts, ['--import', 'tsx', 'src/cli/bon.ts', '--help'], { cwd: root, env }).catch((e: { stdout: string; stderr: string; code: number }) => e)
  t.match(bon.stderr, /usage: bon --input/, 'bon --help on the LTS')
  const client = await run(lts, ['--input-type=module', '-e', "import('./clients/typescript/index.js').then((m) => console.log(typeof m.RewardClient))"], { cwd: root, env })
  t.equal(client.stdout.trim(), 'function')
})
