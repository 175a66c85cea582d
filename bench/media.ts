// npm run bench:media — the media intake path (issue 13, item 3), as ratios within one run on this machine.
//
// base64: validating + decoding one inline image, today's decoder (src/preprocess/media/base64.ts via
//   decodeInlineData) against the former whole-string regexes (kept below as the baseline), on a 1.5 MB image's
//   base64 (2 MB of text) and on 8 copies of it (one GRPO-style request), interleaved A/B in rounds.
// decode: one image through today's decode (header read by header-probe.ts, one libvips pipeline) against the
//   former two libvips passes (libvips header read, then the decode), ABBA rounds.
// pixels: the whole image preprocessing (decode + IXC HD transform to the vision tensor) per image, this service
//   (planImageDecode + decodeImage + imageTransform, on one thread) against the trainer's PIL path
//   (reward_trainer.media load_image + image_transform, timed inside /usr/bin/python3 so its start-up is not
//   counted), ABBA rounds; ratio = PIL time / ours (> 1: we are faster). Real fixtures plus a 2000x1500 JPEG made
//   from one of them (a camera-sized photo is downscaled; the fixtures, at tile 560, are upscaled).
// steps: where the time of `pixels` goes, step by step, ours and PIL's (medians of REPS calls each, no A/B: a
//   breakdown, not a comparison). Then (also BENCH_ONLY=resize) the resize step alone, the JavaScript port
//   (resizeBilinearJs) against the WebAssembly SIMD passes resizeBilinear runs (resizeBilinearWasm), ABBA rounds
//   of REPS calls on the same decoded pixels, after checking the two give the same bytes.
// Env: BENCH_ROUNDS (default 7), BENCH_REPS (calls per segment, default 20), BENCH_TILE (560), BENCH_HD (9).
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { imageTensorLength, imageTransform, planImageGrid, type ImagePreprocessParams } from '../src/preprocess/image/hd-transform.ts'
import { resizeBilinear, resizeBilinearJs, resizeBilinearWasm } from '../src/preprocess/image/pil-resize.ts'
import { normalizeToTensor, transposeRgb } from '../src/preprocess/image/rgb.ts'
import { TensorPool } from '../src/preprocess/image/tensor-pool.ts'
import { decodeImage, planImageDecode, readImageHeader } from '../src/preprocess/image/sharp.ts'
import { decodeInlineData } from '../src/preprocess/media/input.ts'
import { sniffMedia, type ImageFormat } from '../src/preprocess/media/sniff.ts'
import { abbaRounds, fmtSpread, median } from './stats.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const fixtures = path.resolve(root, '..', 'shared', 'fixtures')
const TILE = Number(process.env.BENCH_TILE ?? 560)
const HD = Number(process.env.BENCH_HD ?? 9)

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7)
// the service's default MEDIA_TENSOR_POOL_BYTES; BENCH_POOL_BYTES=0 measures fresh buffers
const POOL_BYTES = Number(process.env.BENCH_POOL_BYTES ?? 64 * 2 ** 20)
const REPS = Number(process.env.BENCH_REPS ?? 20)

// The decoder this project used before issue 13 (input.ts at 78b1d73), as the baseline.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const BASE64URL = /^[A-Za-z0-9_-]*$/
function regexDecode(data: string, maxBytes: number): Uint8Array {
  let payload = data
  if (payload.startsWith('data:')) payload = payload.slice(payload.indexOf(',') + 1)
  payload = payload.replace(/\s+/g, '')
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) throw new Error('too large')
  if (!(BASE64.test(payload) || BASE64URL.test(payload))) throw new Error('not base64')
  const buf = Buffer.from(payload, BASE64URL.test(payload) && /[-_]/.test(payload) ? 'base64url' : 'base64')
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

// ms per call over `reps` calls on the same flat string (a JSON-parsed body's strings are flat; V8 keeps no
// per-string regex result for strings this long, so repeating the call repeats the work)
function timeCalls(fn: (s: string, max: number) => Uint8Array, input: string, reps: number): number {
  const t0 = performance.now()
  let sink = 0
  for (let i = 0; i < reps; i++) sink += fn(input, 20 << 20).length
  const ms = (performance.now() - t0) / reps
  if (sink === 0) throw new Error('nothing decoded')
  return ms
}

function base64Bench(): void {
  const bytes = randomBytes(1_500_000)
  const b64 = bytes.toString('base64')
  const uri = `data:image/jpeg;base64,${b64}`
  if (Buffer.compare(Buffer.from(decodeInlineData(uri, 20 << 20)), bytes) !== 0) throw new Error('decoders disagree')
  if (Buffer.compare(Buffer.from(regexDecode(uri, 20 << 20)), bytes) !== 0) throw new Error('baseline decoder broken')
  const uriFlat = JSON.parse(JSON.stringify(uri)) as string // as the body parser hands it over
  for (let i = 0; i < 3; i++) (timeCalls(decodeInlineData, uriFlat, 3), timeCalls(regexDecode, uriFlat, 3))
  const ratios: number[] = []
  const newMs: number[] = []
  const oldMs: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    // A B B A: a linear drift within a round cancels
    const a1 = timeCalls(regexDecode, uriFlat, REPS)
    const b1 = timeCalls(decodeInlineData, uriFlat, REPS)
    const b2 = timeCalls(decodeInlineData, uriFlat, REPS)
    const a2 = timeCalls(regexDecode, uriFlat, REPS)
    oldMs.push((a1 + a2) / 2)
    newMs.push((b1 + b2) / 2)
    ratios.push((a1 + a2) / (b1 + b2))
  }
  console.log(`base64, one 1.5 MB image (${(uri.length / 1e6).toFixed(2)} MB data: URI), ${ROUNDS} ABBA rounds x ${REPS} calls: median [min–max]`)
  console.log(`  regex (before)   ${fmtSpread(oldMs, 2)} ms per image`)
  console.log(`  base64.ts (now)  ${fmtSpread(newMs, 2)} ms per image (decode included in both)`)
  console.log(`  speed-up         ${fmtSpread(ratios, 2)}x  (8 copies in one request: ${(median(oldMs) * 8).toFixed(1)} -> ${(median(newMs) * 8).toFixed(1)} ms)`)
}

const limits = { maxPixels: 36_000_000, timeoutSeconds: 30 }
const params: ImagePreprocessParams = {
  tile_size: TILE, patch_size: 14, hd_num: HD, hd_num_multi: 1, resize: 'pil_bilinear', pad_color: [255, 255, 255],
  pad_side: 'bottom', transpose_portrait: true, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711],
}

interface Img {
  name: string
  file: string
  bytes: Uint8Array
  format: ImageFormat
}

async function timeAsync(fn: () => Promise<unknown>, reps: number): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < reps; i++) await fn()
  return (performance.now() - t0) / reps
}

async function abba(a: () => Promise<number>, b: () => Promise<number>): Promise<{ a: number[]; b: number[]; ratio: number[] }> {
  await a() // warm-up, not counted
  await b()
  const out = await abbaRounds(a, b, ROUNDS)
  return { ...out, ratio: out.a.map((x, i) => x / out.b[i]!) }
}

async function decodeBench(images: readonly Img[]): Promise<void> {
  console.log(`\ndecode (normalized, to RGB), ${ROUNDS} ABBA rounds x ${REPS} decodes: ms median [min–max]; ratio = before / now`)
  console.log('image                              before (libvips header + decode)   now (JS header + decode)   speed-up')
  for (const img of images) {
    const before = () => timeAsync(async () => {
      const h = await readImageHeader(img.bytes, img.format, limits)
      await decodeImage(img.bytes, img.format, limits, 'normalized', { format: h.format, width: h.width, height: h.height, sixteenBit: h.sixteenBit, greyNoAlpha: h.grey && !h.alpha, cmyk: h.cmyk })
    }, REPS)
    const now = () => timeAsync(async () => decodeImage(img.bytes, img.format, limits, 'normalized', await planImageDecode(img.bytes, img.format, limits)), REPS)
    const r = await abba(before, now)
    console.log(`${img.name.padEnd(34)} ${fmtSpread(r.a, 2).padEnd(34)} ${fmtSpread(r.b, 2).padEnd(26)} ${fmtSpread(r.ratio, 3)}`)
  }
}

// The start of both Python timers: the trainer on the path, its media module, the arguments pilRun passes.
const PY_HEAD = [
  'import sys, time, json, math, statistics',
  `sys.path.insert(0, ${JSON.stringify(path.join(root, 'trainer'))})`,
  'from PIL import Image',
  'from reward_trainer.config import ImagePreprocess',
  'from reward_trainer import media as M',
  'from reward_trainer.media import load_image, image_transform',
  'files, reps, tile, hd = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])',
  'cfg = ImagePreprocess(tile_size=tile)',
  'out = {}',
]

function pilRun<T>(script: string, images: readonly Img[], reps: number): T {
  const r = spawnSync('/usr/bin/python3', ['-c', script, JSON.stringify(images.map((i) => i.file)), String(reps), String(TILE), String(HD)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } })
  if (r.status !== 0) throw new Error(`PIL timer failed: ${r.stderr.slice(-400)}`)
  return JSON.parse(r.stdout) as T
}

// The trainer's path, timed in Python: per image, REPS x (load_image + image_transform); prints ms per image.
const PIL_SCRIPT = [
  ...PY_HEAD,
  'for f in files:',
  '    data = open(f, "rb").read()',
  '    image_transform(load_image(data), cfg, hd)',
  '    t0 = time.perf_counter()',
  '    for _ in range(reps): image_transform(load_image(data), cfg, hd)',
  '    out[f] = (time.perf_counter() - t0) / reps * 1000',
  'print(json.dumps(out))',
].join('\n')

function pilTimes(images: readonly Img[], reps: number): Record<string, number> {
  return pilRun<Record<string, number>>(PIL_SCRIPT, images, reps)
}

async function pixelBench(images: readonly Img[]): Promise<void> {
  const reps = Math.max(3, Math.round(REPS / 4))
  // the service's path: the tensor is written into a buffer from the pool, which the engine worker hands back
  // after the vision run (tensor-pool.ts); here it goes back as soon as the transform is done
  const pool = new TensorPool(POOL_BYTES)
  const ours = async (img: Img) => {
    const rgb = await decodeImage(img.bytes, img.format, limits, 'normalized', await planImageDecode(img.bytes, img.format, limits))
    const t = imageTransform(rgb, params, HD, pool.take(imageTensorLength(rgb.width, rgb.height, params, HD)))
    pool.give(t.data)
    return t
  }
  const oursAll = async () => {
    const out: Record<string, number> = {}
    for (const img of images) out[img.file] = await timeAsync(() => ours(img), reps)
    return out
  }
  for (const img of images) await ours(img)
  pilTimes(images, 1)
  const pil: Record<string, number[]> = {}
  const us: Record<string, number[]> = {}
  const push = (into: Record<string, number[]>, t: Record<string, number>) => { for (const [k, v] of Object.entries(t)) (into[k] ??= []).push(v) }
  for (let r = 0; r < ROUNDS; r++) {
    // A B B A per round (A = PIL, B = ours)
    const a1 = pilTimes(images, reps)
    const b1 = await oursAll()
    const b2 = await oursAll()
    const a2 = pilTimes(images, reps)
    for (const f of Object.keys(a1)) {
      push(pil, { [f]: (a1[f]! + a2[f]!) / 2 })
      push(us, { [f]: (b1[f]! + b2[f]!) / 2 })
    }
  }
  console.log(`\nimage preprocessing, decode + HD transform (tile ${TILE}, hd_num ${HD}) per image, ${ROUNDS} ABBA rounds x ${reps}: ms median [min–max]`)
  console.log('image                              tensor        PIL (trainer)          this service            PIL / ours')
  for (const img of images) {
    const ratios = pil[img.file]!.map((p, i) => p / us[img.file]![i]!)
    const t = imageTransform(await decodeImage(img.bytes, img.format, limits), params, HD)
    console.log(`${img.name.padEnd(34)} ${`${t.width}x${t.height}`.padEnd(13)} ${fmtSpread(pil[img.file]!, 1).padEnd(22)} ${fmtSpread(us[img.file]!, 1).padEnd(23)} ${fmtSpread(ratios, 2)}`)
  }
}

// PIL's steps, timed inside Python: load_image, resize, pad + transpose back, to_tensor.
const PIL_STEPS = [
  ...PY_HEAD,
  'for f in files:',
  '    data = open(f, "rb").read()',
  '    t = {"decode": [], "resize": [], "pad": [], "normalize": []}',
  '    for _ in range(reps + 1):',
  '        a = time.perf_counter(); im = M.load_image(data); b = time.perf_counter(); t["decode"].append(b - a)',
  '        trans = im.width < im.height',
  '        if trans: im = im.transpose(Image.TRANSPOSE)',
  '        w, h = im.size; scale = 1',
  '        while scale * math.ceil(scale / (w / h)) <= hd: scale += 1',
  '        nw = int(min(math.ceil(w / tile), scale - 1) * tile); nh = int(nw / (w / h))',
  '        a = time.perf_counter(); im = im.resize((nw, nh), Image.BILINEAR); b = time.perf_counter(); t["resize"].append(b - a)',
  '        im = M._pad_bottom(im, tile)',
  '        if trans: im = im.transpose(Image.TRANSPOSE)',
  '        a = time.perf_counter(); t["pad"].append(a - b); M.to_tensor(im, cfg.mean, cfg.std); t["normalize"].append(time.perf_counter() - a)',
  '    out[f] = {k: statistics.median(v[1:]) * 1000 for k, v in t.items()}',
  'print(json.dumps(out))',
].join('\n')

async function stepsBench(images: readonly Img[]): Promise<void> {
  const reps = Math.max(5, REPS)
  const pil = pilRun<Record<string, Record<string, number>>>(PIL_STEPS, images, reps)
  console.log(`\nwhere the time goes (tile ${TILE}, hd_num ${HD}), median of ${reps} calls, ms: ours / PIL`)
  console.log('image                              decode        resize        pad+transpose+normalize  total         (same, fresh buffer)')
  const pool = new TensorPool(POOL_BYTES)
  for (const img of images) {
    const t: Record<string, number[]> = { decode: [], resize: [], normalize: [], fresh: [] }
    for (let i = 0; i <= reps; i++) {
      let a = performance.now()
      const lap = (k: string) => { const b = performance.now(); if (i > 0) t[k]!.push(b - a); a = b }
      const rgb = await decodeImage(img.bytes, img.format, limits, 'normalized', await planImageDecode(img.bytes, img.format, limits))
      lap('decode')
      const trans = rgb.width < rgb.height
      let cur = trans ? transposeRgb(rgb) : rgb
      const g = planImageGrid(cur.width, cur.height, HD, TILE)
      cur = resizeBilinear(cur, g.newW, g.newH)
      lap('resize')
      // one pass (normalizeToTensor with a canvas), into a pooled buffer as the service does, then into a fresh one
      const canvas = { width: g.newW, height: Math.ceil(g.newH / TILE) * TILE, padColor: params.pad_color, transpose: trans }
      pool.give(normalizeToTensor(cur, params.mean, params.std, { ...canvas, out: pool.take(3 * canvas.width * canvas.height) }))
      lap('normalize')
      normalizeToTensor(cur, params.mean, params.std, canvas)
      lap('fresh')
    }
    const p = pil[img.file]!
    const pilPad = p.pad! + p.normalize!
    const cell = (ours: number, theirs: number, w: number) => `${ours.toFixed(1)} / ${theirs.toFixed(1)}`.padEnd(w)
    const total = median(t.decode!) + median(t.resize!) + median(t.normalize!)
    const totalPil = p.decode! + p.resize! + pilPad
    console.log(`${img.name.padEnd(34)} ${cell(median(t.decode!), p.decode!, 13)} ${cell(median(t.resize!), p.resize!, 13)} ${cell(median(t.normalize!), pilPad, 24)} ${cell(total, totalPil, 13)} ${median(t.fresh!).toFixed(1)}`)
  }
}

// The resize step alone, JS port (A) against WASM (B), on the pixels and target size the HD transform uses.
async function resizeBench(images: readonly Img[]): Promise<void> {
  console.log(`\nresize step (PIL bilinear, tile ${TILE}, hd_num ${HD}), ${ROUNDS} ABBA rounds x ${REPS} calls: ms median [min–max]`)
  console.log('image                              size                 JS port               WASM SIMD             speed-up')
  for (const img of images) {
    const rgb = await decodeImage(img.bytes, img.format, limits, 'normalized', await planImageDecode(img.bytes, img.format, limits))
    const src = rgb.width < rgb.height ? transposeRgb(rgb) : rgb
    const g = planImageGrid(src.width, src.height, HD, TILE)
    if (Buffer.compare(resizeBilinearJs(src, g.newW, g.newH).data, resizeBilinearWasm(src, g.newW, g.newH).data) !== 0) {
      throw new Error(`${img.name}: WASM and JS resize differ`)
    }
    const time = (fn: typeof resizeBilinear) => async () => {
      const t0 = performance.now()
      for (let i = 0; i < REPS; i++) fn(src, g.newW, g.newH)
      return (performance.now() - t0) / REPS
    }
    const r = await abba(time(resizeBilinearJs), time(resizeBilinearWasm))
    const size = `${src.width}x${src.height}->${g.newW}x${g.newH}`
    console.log(`${img.name.padEnd(34)} ${size.padEnd(20)} ${fmtSpread(r.a, 2).padEnd(21)} ${fmtSpread(r.b, 2).padEnd(21)} ${fmtSpread(r.ratio, 2)}x`)
  }
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY // base64 | decode | pixels | steps | resize
  if (!only || only === 'base64') base64Bench()
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-media-'))
  try {
    const names = [
      'images/real/sharp-Landscape_6-exif-orientation6.jpg',
      'images/real/sharp-Channel_digital_image_CMYK_color_no_profile.jpg',
      'images/real/sharp-concert-grayscale.jpg',
      'images/real/imagereward-1.webp',
    ]
    const files = names.map((n) => path.join(fixtures, n))
    // a camera-sized JPEG (downscaled by the transform), made by PIL from a fixture
    const big = path.join(tmp, 'photo-2000x1500.jpg')
    const mk = spawnSync('/usr/bin/python3', ['-c', 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").resize((2000, 1500), Image.BICUBIC).save(sys.argv[2], quality=90)', files[3]!, big])
    if (mk.status !== 0) throw new Error(`could not make the large JPEG: ${mk.stderr}`)
    files.push(big)
    const images: Img[] = files.map((file) => {
      const bytes = new Uint8Array(readFileSync(file))
      const s = sniffMedia(bytes)
      if (s?.kind !== 'image') throw new Error(`${file} is not an image`)
      return { name: path.basename(file).replace(/^sharp-/, '').slice(0, 34), file, bytes, format: s.format }
    })
    if (!only || only === 'decode') await decodeBench(images)
    if (!only || only === 'pixels') await pixelBench(images)
    if (!only || only === 'steps') await stepsBench(images)
    if (!only || only === 'steps' || only === 'resize') await resizeBench(images)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}

await main()
