// Static checks of docker/Dockerfile (targets cpu, cuda, trainer) and docker/Dockerfile.models: what they COPY
// exists and is in the build context, the images run as a numeric non-root user, read-only-rootfs friendly,
// health-checked, configured only with keys src/config.ts knows, and the CPU and CUDA images are made of the
// same stages. test/deploy/docker-image.test.ts builds and runs the CPU image for real.
import t from 'tap'
import { existsSync } from 'node:fs'
import { loadConfig } from '../../src/config.ts'
import { configEnvKeys, dockerignoreIncludes, envOf, parseDockerfile, readRepo, repoPath } from './helpers.ts'

const NOT_CONFIG = new Set(['NODE_ENV', 'HOME', 'TMPDIR', 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES'])
const MAIN = parseDockerfile(readRepo('docker/Dockerfile'))
const MODELS = parseDockerfile(readRepo('docker/Dockerfile.models'))
const stage = (name: string) => MAIN.instructions.filter((i) => i.stage === name)
const stageNames = MAIN.stages.map((s) => s.name)
const jsonArgs = (s: string): string[] => JSON.parse(s)
const copies = (ins: typeof MAIN.instructions) => ins.filter((i) => i.cmd === 'COPY').map((i) => i.args.replace(/\s+/g, ' '))

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

for (const [file, d] of [['Dockerfile', MAIN], ['Dockerfile.models', MODELS]] as const) {
  t.test(`${file}: no syntax directive, every context file it uses exists and is sent`, async (t) => {
    // A `# syntax=` line makes BuildKit pull a frontend image: the build fails without registry access.
    t.notMatch(readRepo('docker', file), /^#\s*syntax=/m)
    const ignore = readRepo('docker', `${file}.dockerignore`)
    const sources = d.instructions.flatMap((i) => {
      if (i.cmd === 'COPY' && !/--from=/.test(i.args)) return i.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1)
      return [...i.args.matchAll(/--mount=type=bind,source=([^,\s]+)/g)].map((m) => m[1]!)
    })
    t.ok(sources.length > 0)
    for (const src of sources) {
      t.ok(existsSync(repoPath(src)), `${src} exists`)
      t.ok(dockerignoreIncludes(ignore, src.replace(/\/$/, '')), `${src} is not excluded by ${file}.dockerignore`)
    }
    // Keeps the context small: node_modules, dist and the trainer's runs never travel.
    for (const p of ['node_modules/onnxruntime-node/package.json', 'dist/server.js', 'trainer/runs/x/ckpt.pt']) t.notOk(dockerignoreIncludes(ignore, p), `${p} not sent`)
  })

  t.test(`${file}: base images are pinned to a tag`, async (t) => {
    for (const s of d.stages) {
      if (s.from === 'scratch' || d.stages.some((x) => x.name === s.from)) continue
      t.match(s.from, /^[\w./-]+:[\w.-]+$/, `${s.from} has an explicit tag`)
      t.notMatch(s.from, /:latest$/)
    }
  })
}

for (const target of ['cpu', 'cuda', 'trainer']) {
  t.test(`target ${target}: numeric non-root user`, async (t) => {
    const user = stage(target).filter((i) => i.cmd === 'USER').at(-1)
    t.match(user?.args, /^[1-9]\d*:[1-9]\d*$/, 'numeric uid:gid (runAsNonRoot can verify it), not 0')
  })
}

t.test('cpu is the default target (last stage)', async (t) => {
  t.equal(MAIN.stages.at(-1)!.name, 'cpu')
})

for (const target of ['cpu', 'cuda']) {
  t.test(`target ${target}: server runtime contract`, async (t) => {
    const ins = stage(target)
    const env = envOf(ins)
    const keys = configEnvKeys()
    for (const k of Object.keys(env)) t.ok(keys.has(k) || NOT_CONFIG.has(k), `ENV ${k} is read by src/config.ts`)
    const cfg = loadConfig(env)
    t.equal(Number(ins.find((i) => i.cmd === 'EXPOSE')?.args), cfg.port, 'EXPOSE = PORT')
    t.equal(cfg.modelsDir, '/models')
    t.ok(copies(ins).includes('--from=app / /'), 'the app stage: dist/, package.json, openapi.yaml, health check, /models')
    // Read-only root filesystem: every writer is pointed at /tmp, which is a volume.
    t.equal(env.TMPDIR, '/tmp')
    t.equal(env.HOME, '/tmp')
    t.ok(ins.some((i) => i.cmd === 'VOLUME' && i.args.includes('/tmp')))
    const hc = ins.find((i) => i.cmd === 'HEALTHCHECK')!
    const hcCmd = jsonArgs(hc.args.slice(hc.args.indexOf('CMD') + 3).trim())
    t.equal(hcCmd[0], 'node')
    t.ok(existsSync(repoPath(hcCmd[1]!.replace(/^\/app\//, ''))), 'health-check script is in the repo')
    t.ok(copies(stage('app')).some((c) => c.includes('docker/healthcheck.mjs')), 'and copied into the image')
    t.same(jsonArgs(ins.find((i) => i.cmd === 'ENTRYPOINT')!.args), ['/usr/bin/tini', '--'], 'tini is PID 1 (SIGTERM forwarding, ffmpeg reaping)')
    // Compiled JavaScript, exactly what `npm run start:prod` runs; no tsx at run time.
    const cmd = jsonArgs(ins.find((i) => i.cmd === 'CMD')!.args)
    t.same(cmd, ['node', 'dist/server.js'])
    t.equal(JSON.parse(readRepo('package.json')).scripts['start:prod'], cmd.join(' '))
    const app = copies(stage('app'))
    t.ok(app.includes('--from=build /app/dist /app/dist'), 'dist/ comes from the build stage')
    t.ok(app.includes('package.json openapi.yaml /app/'), 'package.json ("type": "module") and the OpenAPI document')
    t.ok(app.includes('models /models'), 'default model baked at /models')
  })
}

t.test('CPU and CUDA images share the node, deps and build stages', async (t) => {
  const cpu = copies(stage('cpu'))
  const cuda = copies(stage('cuda'))
  for (const c of ['--from=node /usr/local/bin/node /usr/local/bin/node', '--from=app / /']) {
    t.ok(cpu.includes(c) && cuda.includes(c), c)
  }
  t.ok(cpu.includes('--from=deps /app/node_modules /app/node_modules'))
  t.ok(cuda.includes('--from=deps-cuda /app/node_modules /app/node_modules'))
  t.equal(MAIN.stages.find((s) => s.name === 'deps-cuda')!.from, 'deps', 'deps-cuda only adds to deps')
  t.equal(MAIN.stages.find((s) => s.name === 'cpu')!.from, 'cpu-os')
  t.equal(MAIN.stages.find((s) => s.name === 'cuda')!.from, 'cuda-os')
  // The two OS stages run the same script (the distribution's ffmpeg, slimmed; tini; the service user).
  const osRun = (s: string) => stage(s).find((i) => i.cmd === 'RUN')!.args.replace(/\s+/g, ' ')
  t.equal(osRun('cpu-os'), osRun('cuda-os'))
  t.match(MAIN.stages.find((s) => s.name === 'cuda-os')!.from, /^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/, 'CUDA 12 runtime + cuDNN base')
  t.equal(envOf(stage('cuda')).EXECUTION_PROVIDERS, 'cuda,cpu', 'CPU fallback stays possible')
  t.equal(envOf(stage('cpu')).EXECUTION_PROVIDERS, 'cpu')
  t.match(MAIN.stages.find((s) => s.name === 'node')!.from, /^node:(2[2-9]|[3-9]\d)-/, 'a supported Node LTS (22+)')
})

t.test('deps: production install, linux-x64 ORT only; deps-cuda fetches the CUDA EP unless told to skip', async (t) => {
  const run = stage('deps').find((i) => i.cmd === 'RUN')!.args
  t.match(run, /npm ci --omit=dev --ignore-scripts/)
  t.match(run, /! -name linux -exec rm -rf/)
  t.match(run, /! -name x64 -exec rm -rf/)
  const cuda = stage('deps-cuda')
  t.ok(cuda.some((i) => i.cmd === 'ARG' && i.args === 'ONNXRUNTIME_NODE_INSTALL=cuda12'), 'cuda12 by default')
  const cudaRun = cuda.find((i) => i.cmd === 'RUN')!.args
  const order = ['onnxruntime-node/script/install.js', 'libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']
  const at = order.map((s) => cudaRun.indexOf(s))
  t.ok(at.every((x) => x >= 0), 'the ORT install script, then a check that the CUDA EP exists')
  t.same([...at].sort((a, b) => a - b), at, 'in that order')
  t.match(cudaRun, /"\$ONNXRUNTIME_NODE_INSTALL" = skip/, 'skip: the check build without the download')
})

t.test('the npm CA is a build secret of the install steps, never a file in a layer', async (t) => {
  for (const i of MAIN.instructions.filter((x) => x.cmd === 'RUN' && /npm (ci|install)|install\.js/.test(x.args))) {
    t.match(i.args, /--mount=type=secret,id=npm-ca/, `${i.stage}: install step mounts the secret`)
  }
  t.notMatch(readRepo('docker/Dockerfile'), /^\s*(COPY|ADD|ENV)\b.*(npm-ca|NODE_EXTRA_CA_CERTS)/m)
})

t.test('build: tsc from the locked TypeScript; the worker entry files are compiled', async (t) => {
  const run = stage('build').map((i) => i.args).join('\n')
  t.match(run, /typescript@\$\(lock typescript\)/)
  t.match(run, /tsc -p tsconfig\.build\.json/)
  t.match(run, /test -f dist\/engine\/engine-worker\.js/)
  t.ok(existsSync(repoPath('tsconfig.build.json')))
})

t.test('trainer: PyTorch 2.x CUDA base by default, Debian-packaged stack locally, ffmpeg, trainer sources', async (t) => {
  t.match(MAIN.stages.find((s) => s.name === 'trainer')!.from, /^pytorch\/pytorch:2\.[\d.]+-cuda12\.[\d.]+-cudnn9-runtime$/)
  const ins = stage('trainer')
  t.ok(ins.some((i) => i.cmd === 'RUN' && i.args.includes('slim-ffmpeg.sh')))
  t.ok(copies(ins).includes('trainer ./trainer'))
  t.ok(copies(ins).includes('--from=deps /app/node_modules ./node_modules'), 'onnxruntime-node for the parity checks')
  t.ok(existsSync(repoPath('trainer/reward_trainer')))
  t.equal(envOf(ins).PYTHONPATH, '/app/trainer')
})

t.test('every target build-images.sh names is a stage', async (t) => {
  const script = readRepo('scripts/build-images.sh')
  const targets = [...script.matchAll(/--target (\S+)/g)].map((m) => m[1]!)
  t.ok(targets.length >= 4)
  for (const x of targets) t.ok(stageNames.includes(x), `${x} is a stage`)
})
