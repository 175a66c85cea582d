// Static checks of the Dockerfiles (Docker cannot run on CI machines): what they COPY exists and is
// not excluded by their .dockerignore, the server images are non-root, read-only-rootfs friendly,
// health-checked and configured only with keys src/config.ts knows, and the CUDA image installs the
// CUDA EP at build time. test/deploy/docker-replay.test.ts runs the CPU image's steps for real.
import t from 'tap'
import { existsSync } from 'node:fs'
import { loadConfig } from '../../src/config.ts'
import { configEnvKeys, dockerignoreIncludes, envOf, parseDockerfile, readRepo, repoPath } from './helpers.ts'

const FILES = ['Dockerfile.cpu', 'Dockerfile.cuda', 'Dockerfile.trainer', 'Dockerfile.models']
const SERVERS = ['Dockerfile.cpu', 'Dockerfile.cuda']
const NOT_CONFIG = new Set(['NODE_ENV', 'HOME', 'TMPDIR', 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES'])

const load = (f: string) => parseDockerfile(readRepo('docker', f))
const finalStage = (f: string) => {
  const d = load(f)
  const last = d.stages.at(-1)!
  return { d, last, ins: d.instructions.filter((i) => i.stage === last.name) }
}
const jsonArgs = (s: string): string[] => JSON.parse(s)

t.test('the parser reads continuations and skips comments inside them', async (t) => {
  const d = parseDockerfile('ARG A=x:1\nFROM ${A} AS b\n# c\nRUN a \\\n# inner comment\n && b\nENV K=v \\\n    L="w w"\n')
  t.same(d.stages, [{ name: 'b', from: 'x:1' }])
  t.equal(d.instructions.find((i) => i.cmd === 'RUN')!.args.replace(/\s+/g, ' '), 'a && b')
  t.same(envOf(d.instructions), { K: 'v', L: 'w w' })
})

t.test('.dockerignore matching', async (t) => {
  const ig = '*\n!src/\n!package.json\nsrc/**/*.tmp\n'
  t.ok(dockerignoreIncludes(ig, 'src/a/b.ts'))
  t.ok(dockerignoreIncludes(ig, 'package.json'))
  t.notOk(dockerignoreIncludes(ig, 'node_modules/x/y.js'))
  t.notOk(dockerignoreIncludes(ig, 'src/a/b.tmp'))
})

for (const f of FILES) {
  t.test(`${f}: every COPY source exists and is in the build context`, async (t) => {
    const ignore = readRepo('docker', `${f}.dockerignore`)
    const copies = load(f).instructions.filter((i) => i.cmd === 'COPY' && !/--from=/.test(i.args))
    t.ok(copies.length > 0)
    for (const c of copies) {
      const words = c.args.split(/\s+/).filter((w) => !w.startsWith('--'))
      for (const src of words.slice(0, -1)) {
        t.ok(existsSync(repoPath(src)), `${src} exists`)
        t.ok(dockerignoreIncludes(ignore, src.replace(/\/$/, '')), `${src} is not excluded by ${f}.dockerignore`)
      }
    }
    // Keeps the context small: node_modules and the trainer's runs never travel.
    t.notOk(dockerignoreIncludes(ignore, 'node_modules/onnxruntime-node/package.json'))
    t.notOk(dockerignoreIncludes(ignore, 'trainer/runs/x/ckpt.pt'))
  })

  t.test(`${f}: final stage runs as a numeric non-root user`, async (t) => {
    const { ins } = finalStage(f)
    const user = ins.filter((i) => i.cmd === 'USER').at(-1)
    t.ok(user, 'has USER')
    t.match(user!.args, /^[1-9]\d*:[1-9]\d*$/, 'numeric uid:gid (runAsNonRoot can verify it), not 0')
  })

  t.test(`${f}: base images are pinned to a tag`, async (t) => {
    for (const s of load(f).stages) {
      if (s.from === 'scratch' || load(f).stages.some((x) => x.name === s.from)) continue
      t.match(s.from, /^[\w./-]+:[\w.-]+$/, `${s.from} has an explicit tag`)
      t.notMatch(s.from, /:latest$/)
    }
  })
}

for (const f of SERVERS) {
  t.test(`${f}: server runtime contract`, async (t) => {
    const { ins } = finalStage(f)
    const env = envOf(ins)
    const keys = configEnvKeys()
    for (const k of Object.keys(env)) t.ok(keys.has(k) || NOT_CONFIG.has(k), `ENV ${k} is read by src/config.ts`)
    // The baked configuration parses and matches what the image exposes and health-checks.
    const cfg = loadConfig(env)
    const expose = ins.find((i) => i.cmd === 'EXPOSE')
    t.equal(Number(expose?.args), cfg.port, 'EXPOSE = PORT')
    t.equal(cfg.modelsDir, '/models')
    t.ok(ins.some((i) => i.cmd === 'COPY' && /^models \/models$/.test(i.args)), 'default model baked at /models')
    // Read-only root filesystem: every writer is pointed at /tmp, which is a volume.
    t.equal(env.TMPDIR, '/tmp')
    t.equal(env.HOME, '/tmp')
    t.ok(ins.some((i) => i.cmd === 'VOLUME' && i.args.includes('/tmp')))

    const hc = ins.find((i) => i.cmd === 'HEALTHCHECK')
    t.ok(hc, 'HEALTHCHECK')
    const hcCmd = jsonArgs(hc!.args.slice(hc!.args.indexOf('CMD') + 3).trim())
    t.equal(hcCmd[0], 'node')
    t.ok(existsSync(repoPath(hcCmd[1].replace(/^\/app\//, ''))), 'health-check script is in the repo')
    t.ok(ins.some((i) => i.cmd === 'COPY' && i.args.includes('docker/healthcheck.mjs')), 'and copied into the image')

    const entry = jsonArgs(ins.find((i) => i.cmd === 'ENTRYPOINT')!.args)
    t.same(entry, ['/usr/bin/tini', '--'], 'tini is PID 1 (SIGTERM forwarding, ffmpeg reaping)')
    const cmd = jsonArgs(ins.find((i) => i.cmd === 'CMD')!.args)
    t.same(cmd, ['node', '--import', 'tsx', 'src/server.ts'], 'same entry point as npm start')
    t.ok(existsSync(repoPath('src/server.ts')))
    const apt = ins.find((i) => i.cmd === 'RUN' && i.args.includes('apt-get install'))!
    for (const p of ['ffmpeg', 'tini']) t.match(apt.args, new RegExp(`\\b${p}\\b`), `installs ${p}`)
  })
}

t.test('the npm start script and the image CMD agree', async (t) => {
  const pkg = JSON.parse(readRepo('package.json'))
  t.equal(pkg.scripts.start, 'node --import tsx src/server.ts')
  // tsx is added at its locked version in the deps stage; the lock must carry it.
  const lock = JSON.parse(readRepo('package-lock.json'))
  t.match(lock.packages['node_modules/tsx']?.version, /^\d+\.\d+\.\d+$/)
})

t.test('Dockerfile.cuda installs the CUDA EP binaries at build time', async (t) => {
  const d = load('Dockerfile.cuda')
  const deps = d.instructions.filter((i) => i.stage === 'deps')
  t.equal(envOf(deps).ONNXRUNTIME_NODE_INSTALL, 'cuda12')
  const run = deps.find((i) => i.cmd === 'RUN')!.args
  const order = ['npm ci', 'onnxruntime-node/script/install.js', 'libonnxruntime_providers_cuda.so']
  const at = order.map((s) => run.indexOf(s))
  t.ok(at.every((x) => x >= 0), 'npm ci, the ORT install script and a check that the CUDA EP exists')
  t.same([...at].sort((a, b) => a - b), at, 'in that order')
  const runtime = d.stages.at(-1)!
  t.match(runtime.from, /^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/, 'CUDA 12 runtime + cuDNN base')
  t.ok(d.instructions.some((i) => i.stage === 'runtime' && i.cmd === 'COPY' && /--from=nodebin \/usr\/local\/bin\/node/.test(i.args)))
  t.equal(envOf(finalStage('Dockerfile.cuda').ins).EXECUTION_PROVIDERS, 'cuda,cpu', 'CPU fallback stays possible')
  // The install script really honours the env var (it would otherwise fetch from the network here).
  t.equal(envOf(load('Dockerfile.cpu').instructions.filter((i) => i.stage === 'deps')).ONNXRUNTIME_NODE_INSTALL, 'skip')
})

t.test('Dockerfile.trainer: PyTorch 2.x CUDA base, ffmpeg, trainer sources', async (t) => {
  const d = load('Dockerfile.trainer')
  t.match(d.stages.at(-1)!.from, /^pytorch\/pytorch:2\.[\d.]+-cuda12\.[\d.]+-cudnn9-runtime$/)
  const ins = finalStage('Dockerfile.trainer').ins
  t.ok(ins.some((i) => i.cmd === 'RUN' && /apt-get install[^&]*\bffmpeg\b/.test(i.args)))
  t.ok(ins.some((i) => i.cmd === 'COPY' && /^trainer \.\/trainer$/.test(i.args)))
  t.ok(existsSync(repoPath('trainer/reward_trainer')))
  t.equal(envOf(ins).PYTHONPATH, '/app/trainer')
})
