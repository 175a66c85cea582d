// The CPU image, built and run for real: a throwaway dockerd (scripts/dockerd-here.sh: own data root under a temp
// dir, no bridge network, stopped and removed afterwards, also when this process is killed), the images built by
// scripts/build-images.sh (official bases when a registry answers, locally made ones otherwise), then the CPU
// image run read-only as uid 10001 with a tmpfs /tmp on a loopback port, checked over HTTP against the same
// requests served by `npm start` on the host. CI (CI=true) never skips: missing tools are installed with apt
// (root) or the test fails.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fixtureBase64 } from '../preprocess/helpers/fixtures.ts'
import { readGolden, realModelDir } from '../helpers/real-model.ts'
import { repoPath } from './helpers.ts'

t.setTimeout(30 * 60_000)
const SCORE_TOL = 1e-5
const MAX_IMAGE_BYTES = 700e6
const GRACE_S = 30
const started = Date.now()
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker'
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0

// ---- tools ----------------------------------------------------------------------------------------------
// scripts/install-deps.sh (run by scripts/test.sh) installs docker.io and debootstrap where they are missing.
const missing = ['dockerd', 'debootstrap'].filter((c) => !has(c)).concat(existsSync('/usr/bin/docker') || has('docker') ? [] : ['docker'])
const why = missing.length > 0 ? `missing ${missing.join(', ')} (apt-get install docker.io debootstrap)` : process.getuid?.() !== 0 ? 'needs root (its own dockerd)' : ''
if (why) {
  if (process.env.CI === 'true') t.fail(`image test cannot run: ${why}`)
  else t.plan(0, `image test not run here: ${why} — CI runs it`)
  process.exit(process.env.CI === 'true' ? 1 : 0)
}

// ---- the daemon -------------------------------------------------------------------------------------------
const work = mkdtempSync(path.join(os.tmpdir(), 'reward-image-test-'))
const daemonDir = path.join(work, 'dockerd')
const start = spawnSync('bash', [repoPath('scripts/dockerd-here.sh'), 'start', daemonDir, String(process.pid)], { encoding: 'utf8', timeout: 120_000 })
if (start.status !== 0) throw new Error(`dockerd did not start:\n${start.stderr}`)
const env = { ...process.env, DOCKER_HOST: `unix://${daemonDir}/docker.sock`, DOCKER }
const children: ChildProcess[] = []
t.teardown(() => {
  for (const c of children) c.kill('SIGKILL')
  spawnSync('bash', [repoPath('scripts/dockerd-here.sh'), 'stop', daemonDir], { timeout: 120_000 })
  rmSync(work, { recursive: true, force: true })
  t.comment(`image test wall time: ${((Date.now() - started) / 1000).toFixed(0)} s`)
})
const docker = (...args: string[]) => {
  const r = spawnSync(DOCKER, args, { env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000 })
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.trim()
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const by = Date.now() + ms
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > by) throw new Error(`timed out waiting for ${what}`)
    await sleep(250)
  }
}

// ---- run: host reference and container ---------------------------------------------------------------------
const entry = await realModelDir()
const golden = readGolden(entry.dir)
const pick = (kind: string) => golden.cases.find((c) => c.kind === kind)!.messages
const REQUESTS = {
  text: { items: [{ messages: pick('text') }] },
  image: { items: [{ messages: pick('image') }] },
  video: { items: [{ messages: pick('video') }] },
  webm: { items: [{ messages: [{ role: 'user', content: [{ type: 'video', data: fixtureBase64('video/real/small-webm.webm') }, { type: 'text', text: 'What happens?' }] }, { role: 'assistant', content: 'Something moves.' }] }] },
}
const post = async (port: number, body: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: r.status, body: (await r.json()) as { scores: number[]; model: { name: string; version: number } } }
}
const ready = (port: number) => until(`readiness on ${port}`, 120_000, async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined))

// The mounted model repository: a copy of the default model that the hot-reload check adds a version to.
const repo = path.join(work, 'models')
cpSync(entry.dir, path.join(repo, entry.name, String(entry.version)), { recursive: true })
chmodSync(work, 0o755)
spawnSync('chmod', ['-R', 'a+rX', repo])

// ---- build ------------------------------------------------------------------------------------------------
// The npm install steps get the host's extra CA as a build secret; a marker appended to it must reach the
// install step (the deps RUN says so in the build log) and never a layer of the image.
const marker = `reward-image-test-${process.pid}-${Date.now()}`
const caFile = path.join(work, 'npm-ca.pem')
const hostCa = process.env.NODE_EXTRA_CA_CERTS && existsSync(process.env.NODE_EXTRA_CA_CERTS) ? readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8') : ''
writeFileSync(caFile, `${hostCa}\n# ${marker}\n`)
const buildLog = path.join(work, 'build.log')
let buildSeconds = 0

t.test('build-images.sh builds the CPU image, the CUDA dependency stage and the model image', async (t) => {
  const t0 = Date.now()
  const r = spawnSync('bash', [repoPath('scripts/build-images.sh'), 'cpu', 'cuda', 'models'], {
    cwd: repoPath(),
    env: { ...env, NODE_EXTRA_CA_CERTS: caFile, BASES: process.env.IMAGE_TEST_BASES ?? 'auto', BUILDKIT_PROGRESS: 'plain' },
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    timeout: 20 * 60_000,
  })
  buildSeconds = (Date.now() - t0) / 1000
  writeFileSync(buildLog, r.stderr + r.stdout)
  t.equal(r.status, 0, r.status === 0 ? 'builds' : `build failed:\n${(r.stderr + r.stdout).slice(-4000)}`)
  if (r.status !== 0) return t.bailout('no image to test')
  const size = Number(docker('image', 'inspect', '-f', '{{.Size}}', 'reward-server:cpu'))
  t.comment(`build time (bases + cpu + cuda deps + models): ${buildSeconds.toFixed(0)} s; reward-server:cpu ${(size / 1e6).toFixed(0)} MB`)
  t.comment(docker('history', '--format', '{{.Size}}\t{{.CreatedBy}}', 'reward-server:cpu').split('\n').filter((l) => !l.startsWith('0B')).map((l) => l.slice(0, 110)).join('\n'))
  t.ok(size <= MAX_IMAGE_BYTES, `reward-server:cpu is ${(size / 1e6).toFixed(0)} MB (≤ ${MAX_IMAGE_BYTES / 1e6})`)
  t.match(r.stderr, /npm-ca: extra CA mounted for npm/, 'the CA secret reached the npm install step')
})

t.test('the image: linux-x64 ORT only, dist/ without tsx/esbuild, Node 22+, no CA in any layer', async (t) => {
  const sh = (cmd: string) => docker('run', '--rm', '--network', 'none', '--entrypoint', 'sh', 'reward-server:cpu', '-c', cmd)
  t.equal(sh('ls node_modules/onnxruntime-node/bin/napi-v6'), 'linux')
  t.equal(sh('ls node_modules/onnxruntime-node/bin/napi-v6/linux'), 'x64')
  t.equal(sh('ls -d node_modules/tsx node_modules/esbuild node_modules/typescript 2>/dev/null | wc -l'), '0', 'no tsx, esbuild, typescript')
  t.ok(Number(/^v(\d+)/.exec(sh('node --version'))![1]) >= 22, 'Node LTS ≥ 22')
  t.match(sh('ffmpeg -hide_banner -version | head -1'), /^ffmpeg version \d/, 'ffmpeg runs')
  // tsc emits JavaScript only; the files src/ reads beside its modules (the resampler's .wasm, the label font's
  // fontconfig file) must have been copied into dist/, or the image would lack them
  const assets = (readdirSync(repoPath('src'), { recursive: true }) as string[])
    .filter((f) => !f.endsWith('.ts') && !f.startsWith(`cli${path.sep}`) && statSync(repoPath('src', f)).isFile())
  t.ok(assets.includes(path.join('preprocess', 'image', 'pil-resample.wasm')), 'src/ has the resampler module')
  t.equal(sh(`cd dist && ls ${assets.join(' ')} | wc -l`), String(assets.length), `dist/ has ${assets.join(', ')}`)
  // Every layer and the history, as `docker save` exports them.
  const save = spawnSync('sh', ['-c', `"${DOCKER}" save reward-server:cpu | grep -a -c -F "${marker}" || true`], { env, encoding: 'utf8', maxBuffer: 16 << 20 })
  t.equal(save.stdout.trim(), '0', 'the CA secret is in no layer of the image')
  t.notMatch(docker('history', '--no-trunc', 'reward-server:cpu'), marker)
})

t.test('the CPU image serves like npm start on the host', async (t) => {
  const hostPort = await freePort()
  const host = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: repoPath(),
    env: { PATH: process.env.PATH!, PORT: String(hostPort), HOST: '127.0.0.1', MODELS_DIR: repoPath('models'), EXECUTION_PROVIDERS: 'cpu', LOG_LEVEL: 'warn', TMPDIR: work },
    stdio: 'ignore',
  })
  children.push(host)
  const port = await freePort()
  docker(
    'run', '-d', '--name', 'scorer', '--network', 'host', '--read-only', '--tmpfs', '/tmp:size=512m,mode=1777', '--user', '10001:10001',
    '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--stop-timeout', String(GRACE_S), '--health-interval', '2s', '--health-start-period', '60s',
    '-e', `PORT=${port}`, '-e', 'HOST=127.0.0.1', '-e', 'MODEL_POLL_INTERVAL_MS=500', '-e', 'SHUTDOWN_GRACE_MS=20000',
    '-v', `${repo}:/models:ro`, 'reward-server:cpu',
  )
  const t0 = Date.now()
  await ready(port)
  t.comment(`container ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  await ready(hostPort)
  t.equal(docker('inspect', '-f', '{{.Config.User}}', 'scorer'), '10001:10001')
  t.equal(docker('exec', 'scorer', 'id', '-u'), '10001', 'runs as uid 10001')
  t.not(spawnSync(DOCKER, ['exec', 'scorer', 'touch', '/app/x'], { env }).status, 0, 'root filesystem is read-only')

  for (const [kind, body] of Object.entries(REQUESTS)) {
    const [a, b] = [await post(port, body), await post(hostPort, body)]
    t.equal(a.status, 200, `${kind}: container answers 200`)
    t.equal(b.status, 200, `${kind}: host answers 200`)
    const d = Math.abs(a.body.scores[0]! - b.body.scores[0]!)
    t.ok(d <= SCORE_TOL, `${kind}: container ${a.body.scores[0]} vs host ${b.body.scores[0]} (|Δ| = ${d.toExponential(2)} ≤ ${SCORE_TOL})`)
  }
  host.kill('SIGTERM')

  const health = await until('HEALTHCHECK healthy', 90_000, async () => {
    const s = docker('inspect', '-f', '{{.State.Health.Status}}', 'scorer')
    return s === 'healthy' ? s : undefined
  })
  t.equal(health, 'healthy', 'the image HEALTHCHECK reaches healthy')

  // Hot reload: a new version directory appears in the mounted repository (written aside, then renamed in).
  const next = entry.version + 1
  const staging = path.join(repo, entry.name, `.staging-${next}`)
  cpSync(path.join(repo, entry.name, String(entry.version)), staging, { recursive: true })
  const manifest = path.join(staging, 'model.json')
  writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), version: next }, null, 2))
  spawnSync('chmod', ['-R', 'a+rX', staging])
  renameSync(staging, path.join(repo, entry.name, String(next)))
  const version = await until(`version ${next} to serve`, 90_000, async () => {
    const r = await post(port, REQUESTS.text)
    return r.status === 200 && r.body.model.version === next ? r.body.model.version : undefined
  })
  t.equal(version, next, `hot reload: ${entry.name}/${next} serves without a restart`)

  const logs = spawnSync(DOCKER, ['logs', 'scorer'], { env, encoding: 'utf8', maxBuffer: 64 << 20 })
  const lines = (logs.stdout + logs.stderr).split('\n').filter(Boolean)
  t.ok(lines.every((l) => l.startsWith('{')), 'only pino JSON lines (no ONNX Runtime or Vulkan noise)')
  t.notOk(lines.some((l) => /"url":"\/(healthz|readyz)"/.test(l)), 'probes are not logged at info')
  t.ok(lines.some((l) => /"url":"\/v1\/score"/.test(l)), 'requests are')
  t.ok(lines.some((l) => /"executionProvider":"cpu"/.test(l)), 'the chosen EP is logged')
  t.notMatch(docker('exec', 'scorer', 'ls', '-A', '/tmp'), /mat-debug|\.ses/, 'no ORT telemetry files in /tmp')
})

t.test('docker stop under load: exit 0 within the grace period, no request lost', async (t) => {
  const port = Number(JSON.parse(docker('inspect', '-f', '{{json .Config.Env}}', 'scorer')).find((e: string) => e.startsWith('PORT='))!.slice(5))
  const outcomes = { ok: 0, shuttingDown: 0, refused: 0, lost: [] as string[] }
  let stopping = false
  // A fresh connection per request (agent: false): a failure is then about this request, not a reused socket.
  // Each client stops at its own first 503 or refused connection (a client backing off), not before.
  const once = (body: string) =>
    new Promise<'ok' | 'stop' | 'lost'>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/v1/score', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume()
        res.on('end', () => {
          if (res.statusCode === 200) outcomes.ok++
          else if (res.statusCode === 503) outcomes.shuttingDown++
          else outcomes.lost.push(`HTTP ${res.statusCode}`)
          resolve(res.statusCode === 200 ? 'ok' : res.statusCode === 503 ? 'stop' : 'lost')
        })
      })
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ECONNREFUSED') outcomes.refused++ // never accepted: the listener had closed
        else outcomes.lost.push(e.code ?? e.message)
        resolve(e.code === 'ECONNREFUSED' ? 'stop' : 'lost')
      })
      req.end(body)
    })
  const bodies = [JSON.stringify(REQUESTS.text), JSON.stringify(REQUESTS.image), JSON.stringify(REQUESTS.video)]
  const workers = Array.from({ length: 6 }, async (_, i) => {
    for (let n = 0; ; n++) {
      // Half the clients send short text requests back to back (many new connections around the close), half
      // rotate through text, image and video (long requests in flight when SIGTERM arrives).
      const r = await once(i < 3 ? bodies[0]! : bodies[(i + n) % bodies.length]!)
      if (r === 'stop' || (r === 'lost' && stopping)) return
    }
  })
  await sleep(1500)
  t.ok(outcomes.ok > 0, `load is flowing (${outcomes.ok} scored before the stop)`)
  stopping = true
  const t0 = Date.now()
  // Not spawnSync: the load clients live in this process and must keep sending (and reading) while it stops; a
  // blocked event loop would leave a half-sent request body that the server then waits for until the grace ends.
  const stop = await new Promise<{ status: number | null }>((resolve) => {
    const p = spawn(DOCKER, ['stop', '-t', String(GRACE_S), 'scorer'], { env, stdio: 'ignore' })
    p.on('exit', (status) => resolve({ status }))
  })
  const stopSeconds = (Date.now() - t0) / 1000
  await Promise.race([Promise.all(workers), sleep(30_000)])
  const logs = spawnSync(DOCKER, ['logs', '--tail', '400', 'scorer'], { env, encoding: 'utf8', maxBuffer: 64 << 20 })
  const notable = (logs.stdout + logs.stderr).split('\n').filter((l) => l && !/"msg":"(incoming request|request completed)"/.test(l) && !/"code":"shutting_down"|server is shutting down/.test(l))
  t.comment(`container log after the stop (access lines left out):\n${notable.slice(-15).map((l) => l.slice(0, 300)).join('\n')}`)
  t.equal(stop.status, 0, 'docker stop returns')
  t.equal(docker('inspect', '-f', '{{.State.ExitCode}}', 'scorer'), '0', 'the service exits 0 (SIGTERM via tini, not SIGKILL)')
  t.ok(stopSeconds < GRACE_S, `stopped in ${stopSeconds.toFixed(1)} s (< ${GRACE_S} s grace)`)
  t.same(outcomes.lost, [], `no request lost (${outcomes.ok} ok, ${outcomes.shuttingDown} × 503 shutting_down, ${outcomes.refused} refused after close)`)
  t.comment(`build ${buildSeconds.toFixed(0)} s, whole image test ${((Date.now() - started) / 1000).toFixed(0)} s`)
})
