// float16 graphs: the bit conversion the engine uses for their inputs/outputs (Node 20 has no Float16Array),
// a real float16 graph through onnx.ts (the refusal lifted, as only tests and benches may), and the refusal of a
// float16 model on the cpu execution provider at load — never at its first request.
import { execFileSync } from 'node:child_process'
import { mkdtemp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import { CPU_FLOAT16_REFUSAL, createSession, runVision, valueTypes } from '../../src/engine/onnx.ts'
import { float16ToFloat32, float32ToFloat16, fromFloat16Bits, toFloat16Bits } from '../../src/engine/float16.ts'
import { testConfig } from '../helpers/build-app.ts'
import { realModelDir } from '../helpers/real-model.ts'

const tmp = await mkdtemp(path.join(os.tmpdir(), 'fp16-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))

t.test('float32 -> float16 bits: exact values, rounding to nearest even, overflow, subnormals, NaN', async (t) => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [65520, 0x7c00],
    [1e6, 0x7c00], [-Infinity, 0xfc00], [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000],
    [1.5 * 2 ** -25, 0x0001], [1 + 2 ** -11, 0x3c00] /* tie -> even */, [1 + 3 * 2 ** -11, 0x3c02] /* tie -> even */,
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], [0.1, 0x2e66], [3.140625, 0x4248], [2 ** -15, 0x0200],
  ]
  for (const [x, bits] of cases) t.equal(toFloat16Bits(x), bits, `${x} -> 0x${bits.toString(16)}`)
  t.ok(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN))))
  t.equal(fromFloat16Bits(0x7c00), Infinity)
  // every finite half round-trips exactly through float32
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue
    if (toFloat16Bits(fromFloat16Bits(h)) !== h) t.fail(`0x${h.toString(16)} does not round-trip`)
  }
  const xs = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10)
  const back = float16ToFloat32(float32ToFloat16(xs))
  t.ok(xs.every((x, i) => Math.abs(back[i]! - x) <= Math.abs(x) * 2 ** -11), 'relative error <= 2^-11')
})

/** A float16 stand-in for vision.onnx: image_embeds = reshape(image * 2, [-1, 3]) (python3-onnx writes it). */
async function fp16Graph(): Promise<string | null> {
  const file = path.join(tmp, 'vision16.onnx')
  const py = `
import onnx, sys
from onnx import helper as h, TensorProto as T
two = h.make_tensor("two", T.FLOAT16, [], [2.0])
shape = h.make_tensor("shape", T.INT64, [2], [-1, 3])
g = h.make_graph([h.make_node("Transpose", ["image"], ["t"], perm=[0, 2, 3, 1]), h.make_node("Mul", ["t", "two"], ["m"]),
                  h.make_node("Reshape", ["m", "shape"], ["image_embeds"])], "v",
                 [h.make_tensor_value_info("image", T.FLOAT16, [1, 3, "H", "W"])],
                 [h.make_tensor_value_info("image_embeds", T.FLOAT16, ["T_img", 3])], [two, shape])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]); m.ir_version = 8
onnx.checker.check_model(m); onnx.save(m, sys.argv[1])`
  try {
    execFileSync('/usr/bin/python3', ['-c', py, file], { stdio: 'pipe' })
    return file
  } catch (err) {
    if (process.env.CI === 'true') throw err // CI has python3-onnx: a missing tool is a failure there
    return null
  }
}

const graph16 = await fp16Graph()
const noPython = graph16 ? false : 'python3-onnx not installed (never skipped in CI)'

t.test('a float16 graph through the engine: float32 in, float16 tensors fed, float32 out', { skip: noPython }, async (t) => {
  const file = graph16!
  await t.rejects(createSession(file, { providers: ['cpu'], threads: 1, spin: false }, { dtype: 'float16' }), {
    message: /\(float16 graph\): cpu: refused: float16 graph/,
  })
  const s = await createSession(file, { providers: ['cpu'], threads: 1, spin: false }, { dtype: 'float16', cpuFloat16: true })
  t.same(valueTypes(s.session), { image: 'float16', image_embeds: 'float16' })
  const img = Float32Array.from({ length: 3 * 2 * 2 }, (_, i) => (i - 5) * 0.3337)
  const out = await runVision(s.session, img, 2, 2)
  t.same([out.tokens, out.dim], [4, 3])
  t.ok(out.embeds instanceof Float32Array)
  for (let p = 0; p < 4; p++) {
    for (let c = 0; c < 3; c++) {
      const want = 2 * fromFloat16Bits(toFloat16Bits(img[c * 4 + p]!)) // the half the graph was fed, doubled exactly
      t.equal(out.embeds[p * 3 + c], want, `pixel ${p} channel ${c}`)
    }
  }
  await s.session.release()
})

t.test('a float16 model on the cpu execution provider fails at load, naming the provider and the dtype', async (t) => {
  const real = await realModelDir()
  const dir = path.join(tmp, 'models', 'half', '1')
  await mkdir(dir, { recursive: true })
  for (const f of await readdir(real.dir)) if (f !== 'model.json') await symlink(path.join(real.dir, f), path.join(dir, f))
  const m = JSON.parse(await readFile(path.join(real.dir, 'model.json'), 'utf8'))
  Object.assign(m, { name: 'half', version: 1, dtype: 'float16' })
  for (const g of ['vision', 'reward']) {
    for (const s of [...m.graphs[g].inputs, ...m.graphs[g].outputs]) if (s.dtype === 'float32') s.dtype = 'float16'
  }
  await writeFile(path.join(dir, 'model.json'), JSON.stringify(m))
  const app = buildApp(testConfig({ MODELS_DIR: path.join(tmp, 'models'), EXECUTION_PROVIDERS: 'cuda,cpu', CHECKSUM_CACHE: 'off' }))
  await app.ready()
  t.teardown(() => app.close())
  const half = (await app.inject({ method: 'GET', url: '/v1/models' })).json().models[0]
  t.equal(half.state, 'failed')
  t.match(half.error, /float16 graph\): cuda: .*; cpu: refused: float16 graph/)
  t.ok(half.error.includes(CPU_FLOAT16_REFUSAL))
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }] } })
  t.equal(r.statusCode, 503, r.body)
  t.equal(r.json().error.code, 'model_not_ready', 'requests get model_not_ready, not a crash')
})
