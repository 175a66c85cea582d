// Docker cannot run here, so the CPU image is replayed on this Debian machine: its deps stage's RUN runs as
// written (production install + tsx, in a scratch copy of package.json/package-lock.json), the runtime stage's
// COPYs are laid out in a scratch /app, and its CMD starts with its ENV. Then the HEALTHCHECK command must
// pass, readiness and a scrape must answer, and SIGTERM must end the process with exit 0. This is what
// catches a production import of a devDependency, a missing COPY, or a broken entry point.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { versionDirs } from '../../src/models/load.ts'
import { readGolden } from '../helpers/real-model.ts'
import { envOf, parseDockerfile, readRepo, repoPath } from './helpers.ts'

const df = parseDockerfile(readRepo('docker/Dockerfile.cpu'))
const stage = (name: string) => df.instructions.filter((i) => i.stage === name)
const scratch = mkdtempSync(path.join(os.tmpdir(), 'docker-replay-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })

t.test('deps stage: the RUN installs production node_modules with tsx', { timeout: 240_000 }, async (t) => {
  const deps = stage('deps')
  const build = path.join(scratch, 'build')
  mkdirSync(build)
  for (const c of deps.filter((i) => i.cmd === 'COPY')) {
    const words = c.args.split(/\s+/)
    for (const src of words.slice(0, -1)) cpSync(repoPath(src), path.join(build, src))
  }
  const runs = deps.filter((i) => i.cmd === 'RUN')
  t.equal(runs.length, 1)
  // BuildKit flags (--mount=type=cache,...) belong to Docker, not to the shell command.
  const cmd = runs[0]!.args.replace(/^(--\S+\s+)+/, '')
  const r = spawnSync('sh', ['-ec', cmd], {
    cwd: build,
    env: { ...process.env, ...envOf(deps), npm_config_prefer_offline: 'true' },
    encoding: 'utf8',
    timeout: 200_000,
  })
  t.equal(r.status, 0, r.status === 0 ? 'the RUN command succeeds' : `RUN exited ${r.status}: ${r.stderr?.slice(-2000)}`)
  const has = (m: string) => spawnSync('node', ['-e', `require.resolve(${JSON.stringify(m)})`], { cwd: build }).status === 0
  t.ok(has('tsx') && has('onnxruntime-node') && has('fastify'), 'runtime packages present')
  t.notOk(has('tap'), 'devDependencies are not')
})

t.test('runtime stage: CMD serves, HEALTHCHECK passes, SIGTERM exits 0', { timeout: 120_000 }, async (t) => {
  const rt = stage('runtime')
  const app = path.join(scratch, 'app')
  const models = path.join(scratch, 'models')
  const tmp = path.join(scratch, 'tmp')
  mkdirSync(app)
  mkdirSync(tmp)
  // WORKDIR /app; COPY --from=deps node_modules; COPY <repo paths>; COPY models /models.
  for (const c of rt.filter((i) => i.cmd === 'COPY')) {
    const words = c.args.split(/\s+/).filter((w) => !w.startsWith('--'))
    const dest = words.at(-1)!
    if (/--from=deps/.test(c.args)) {
      renameSync(path.join(scratch, 'build', 'node_modules'), path.join(app, 'node_modules')) // same tree, no 300 MB copy
      continue
    }
    for (const src of words.slice(0, -1)) {
      const target = dest === '/models' ? models : dest.endsWith('/') ? path.join(app, dest, path.basename(src)) : path.join(app, dest)
      cpSync(repoPath(src), target, { recursive: true })
    }
  }
  const port = await freePort()
  const opsPort = await freePort()
  // The image's ENV, with the paths that live outside a container pointed at the scratch dir.
  const env = { PATH: process.env.PATH!, ...envOf(rt), PORT: String(port), OPS_PORT: String(opsPort), HOST: '127.0.0.1', MODELS_DIR: models, HOME: tmp, TMPDIR: tmp, LOG_LEVEL: 'info' }
  const cmd: string[] = JSON.parse(rt.find((i) => i.cmd === 'CMD')!.args)
  const hc = rt.find((i) => i.cmd === 'HEALTHCHECK')!.args
  const hcCmd: string[] = JSON.parse(hc.slice(hc.indexOf('CMD') + 3)).map((a: string) => a.replace(/^\/app\//, `${app}/`))
  const healthcheck = () => spawnSync(hcCmd[0]!, hcCmd.slice(1), { cwd: app, env, timeout: 10_000 }).status

  t.equal(healthcheck(), 1, 'HEALTHCHECK fails while nothing listens')
  const server = spawn(cmd[0]!, cmd.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  server.stdout.on('data', (d) => (log += d))
  server.stderr.on('data', (d) => (log += d))
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)))
  t.teardown(() => server.kill('SIGKILL'))

  const until = Date.now() + 60_000
  let hcStatus = healthcheck()
  while (hcStatus !== 0 && Date.now() < until && server.exitCode === null) {
    await new Promise((r) => setTimeout(r, 250))
    hcStatus = healthcheck()
  }
  t.equal(hcStatus, 0, hcStatus === 0 ? 'HEALTHCHECK passes once the server listens' : `HEALTHCHECK never passed:\n${log.slice(-3000)}`)
  const metrics = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /scorer_requests_total/)
  const opsMetrics = await fetch(`http://127.0.0.1:${opsPort}/metrics`)
  t.equal(opsMetrics.status, 200, 'metrics also on OPS_PORT')
  const docs = await fetch(`http://127.0.0.1:${port}/docs/json`)
  t.equal(docs.status, 200, 'openapi.yaml is in the image')
  // With a model baked in (the embedded default, once published), the image must get ready and score.
  if ((await versionDirs(models)).length > 0) {
    let ready = 0
    const readyBy = Date.now() + 90_000
    while (ready !== 200 && Date.now() < readyBy) {
      ready = (await fetch(`http://127.0.0.1:${port}/readyz`)).status
      if (ready !== 200) await new Promise((r) => setTimeout(r, 250))
    }
    t.equal(ready, 200, 'ready with the baked model')
    // a golden.json case of the baked model: the image scores it as the trainer did
    const latest = (await versionDirs(models)).sort((a, b) => b.version - a.version)[0]!
    const golden = readGolden(latest.dir).cases.find((c) => c.kind === 'text')!
    const scored = await fetch(`http://127.0.0.1:${port}/v1/score`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: latest.name, items: [{ messages: golden.messages }] }),
    })
    t.equal(scored.status, 200)
    const score = ((await scored.json()) as { scores: number[] }).scores[0]!
    t.ok(Math.abs(score - golden.score) <= 1e-3, `golden ${golden.id}: ${score} vs ${golden.score}`)
  } else {
    t.comment('no model under models/ yet: readiness and scoring not replayed')
  }
  // Logs are JSON lines carrying the request id that the response returned.
  const r = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { 'x-request-id': 'replay-req-1' } })
  t.equal(r.headers.get('x-request-id'), 'replay-req-1')
  server.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM: graceful exit 0')
  const lines = log.split('\n').filter((l) => l.startsWith('{'))
  t.ok(lines.length > 0 && lines.every((l) => JSON.parse(l).level !== undefined), 'pino JSON lines')
  t.ok(lines.some((l) => JSON.parse(l).reqId === 'replay-req-1'), 'the request id is in the log')
})
