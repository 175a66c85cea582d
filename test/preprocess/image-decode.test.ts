// Decoding real and hostile images through the hardened sharp path (src/preprocess/image/sharp.ts).
import t from 'tap'
import { createHash } from 'node:crypto'
import { skipUnless } from '../helpers/tools.ts'
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { decodeImage, readImageHeader } from '../../src/preprocess/image/sharp.ts'
import { sniffMedia } from '../../src/preprocess/media/sniff.ts'
import { fixtures, readFixture as read } from './helpers/fixtures.ts'
const limits = { maxPixels: 36_000_000, timeoutSeconds: 10 }

function formatOf(buf: Uint8Array) {
  const s = sniffMedia(buf)
  if (!s || s.kind !== 'image') throw new Error('not an image')
  return s.format
}

t.test('real images decode to 8-bit RGB', async (t) => {
  const sizes: Record<string, [number, number]> = {
    'imagereward-1.webp': [512, 512],
    'pngsuite-basn6a16.png': [32, 32],
    'sharp-16-bit-grey-alpha.png': [109, 96],
    'sharp-Channel_digital_image_CMYK_color_no_profile.jpg': [500, 333],
    // stored 450x600 with EXIF orientation 6: displayed (and scored) as 600x450
    'sharp-Landscape_6-exif-orientation6.jpg': [600, 450],
    'sharp-concert-grayscale.jpg': [400, 267],
    // animated: first frame only
    'sharp-rotating-squares-animated.gif': [80, 80],
  }
  for (const [name, [w, h]] of Object.entries(sizes)) {
    const buf = read(`images/real/${name}`)
    const img = await decodeImage(buf, formatOf(buf), limits)
    t.same([img.width, img.height, img.data.length], [w, h, w * h * 3], name)
    const header = await readImageHeader(buf, formatOf(buf), limits)
    t.same([header.width, header.height], [w, h], `${name} header size is the displayed size`)
  }
})

const landscape6 = join(fixtures, 'images/real/sharp-Landscape_6-exif-orientation6.jpg')
// PIL's view of the same file (the trainer decodes with PIL)
const py = spawnSync('/usr/bin/python3', ['-c', [
  'import sys; from PIL import Image, ImageOps',
  'im = ImageOps.exif_transpose(Image.open(sys.argv[1])).convert("RGB")',
  'sys.stdout.buffer.write(im.tobytes())',
].join('\n'), landscape6], { maxBuffer: 8 << 20 })

t.test('EXIF orientation 6 is applied: same pixels as PIL ImageOps.exif_transpose', { skip: skipUnless(py.status === 0, 'no /usr/bin/python3 with PIL') }, async (t) => {
  const img = await decodeImage(new Uint8Array(readFileSync(landscape6)), 'jpeg', limits)
  t.same([img.width, img.height], [600, 450])
  t.equal(py.stdout.length, img.data.length, 'PIL gives the same 600x450 size')
  let diff = 0
  for (let i = 0; i < img.data.length; i++) diff += Math.abs(img.data[i] - py.stdout[i])
  // measured 0 (identical); a wrong or missing rotation gives tens of levels, applying the embedded ICC profile
  // (which PIL, and so the trainer, ignores) gives 12
  t.ok(diff / img.data.length < 0.5, `mean abs diff vs PIL ${(diff / img.data.length).toFixed(3)} levels (< 0.5)`)
})

// All eight EXIF orientations, made by PIL in the test setup: a 40x24 asymmetric pattern saved as JPEG with
// Orientation = n; PIL's exif_transpose of the same file is the reference (the trainer decodes with PIL).
const orientations = spawnSync('/usr/bin/python3', ['-c', [
  'import io, json, base64',
  'from PIL import Image, ImageOps',
  'out = []',
  'for n in range(1, 9):',
  '    im = Image.new("RGB", (40, 24), (255, 255, 255))',
  '    for x in range(40):',
  '        for y in range(24):',
  '            if x < 10 and y < 8: im.putpixel((x, y), (255, 0, 0))',
  '            elif x > 30 and y > 16: im.putpixel((x, y), (0, 0, 255))',
  '            elif y < 4: im.putpixel((x, y), (0, 160, 0))',
  '    exif = Image.Exif(); exif[0x0112] = n',
  '    b = io.BytesIO(); im.save(b, "JPEG", quality=95, exif=exif.tobytes())',
  '    ref = ImageOps.exif_transpose(Image.open(io.BytesIO(b.getvalue()))).convert("RGB")',
  '    out.append({"n": n, "jpeg": base64.b64encode(b.getvalue()).decode(), "size": list(ref.size), "rgb": base64.b64encode(ref.tobytes()).decode()})',
  'print(json.dumps(out))',
].join('\n')], { encoding: 'utf8', maxBuffer: 8 << 20 })

t.test('EXIF orientations 1-8 match PIL exif_transpose', { skip: skipUnless(orientations.status === 0, 'no /usr/bin/python3 with PIL') }, async (t) => {
  for (const c of JSON.parse(orientations.stdout) as Array<{ n: number; jpeg: string; size: [number, number]; rgb: string }>) {
    const img = await decodeImage(new Uint8Array(Buffer.from(c.jpeg, 'base64')), 'jpeg', limits)
    t.same([img.width, img.height], c.size, `orientation ${c.n}: size`)
    const ref = Buffer.from(c.rgb, 'base64')
    let diff = 0
    for (let i = 0; i < ref.length; i++) diff += Math.abs(img.data[i]! - ref[i]!)
    // a wrong flip or rotation moves the red and blue corners: tens of levels on average
    t.ok(diff / ref.length < 1, `orientation ${c.n}: mean abs diff ${(diff / ref.length).toFixed(3)} levels`)
  }
})

// The trainer's own decoder (trainer/reward_trainer/media.py load_image, PIL) on every real fixture plus generated
// 8-bit RGBA, LA, palette-with-transparency and 16-bit grey PNGs: the service must produce the same bytes.
const trainerDecode = spawnSync('/usr/bin/python3', ['-c', [
  'import io, os, sys, json, base64',
  `sys.path.insert(0, ${JSON.stringify(join(import.meta.dirname, '..', '..', 'trainer'))})`,
  'import numpy as np',
  'from PIL import Image',
  'from reward_trainer.media import load_image',
  'real = sys.argv[1]',
  'files = {f: open(os.path.join(real, f), "rb").read() for f in sorted(os.listdir(real)) if not f.endswith(".json")}',
  'y, x = np.mgrid[0:48, 0:200]',
  'def png(a, mode, **kw):',
  '    b = io.BytesIO(); Image.fromarray(a, mode).save(b, "PNG", **kw); return b.getvalue()',
  'files["gen-rgba8.png"] = png(np.stack([(x * 7) % 256, (y * 4 + x) % 256, (x * y) % 256, x % 256], -1).astype(np.uint8), "RGBA")',
  'files["gen-la8.png"] = png(np.stack([(x * 7) % 256, (x + y) % 256], -1).astype(np.uint8), "LA")',
  'files["gen-grey16.png"] = png(((x * 331 + y * 97) % 65536).astype(np.uint16), "I;16")',
  'files["gen-palette-transparent.png"] = png(((x // 10 + y // 6) % 16).astype(np.uint8), "P", transparency=3)',
  'exif = Image.Exif(); exif[0x0112] = 6',
  'b = io.BytesIO(); Image.fromarray(np.stack([(x * 7) % 256, (y * 5) % 256, (x + y) % 256, (x * y) % 97], -1).astype(np.uint8), "CMYK").save(b, "JPEG", quality=95, exif=exif.tobytes())',
  'files["gen-cmyk-exif6.jpg"] = b.getvalue()',
  'out = [{"name": k, "file": base64.b64encode(v).decode(), "rgb": base64.b64encode(np.asarray(load_image(v)).tobytes()).decode()} for k, v in files.items()]',
  'print(json.dumps(out))',
].join('\n'), join(fixtures, 'images/real')], { encoding: 'utf8', maxBuffer: 64 << 20 })

t.test("decoded pixels equal the trainer's load_image (PIL) byte for byte", { skip: skipUnless(trainerDecode.status === 0, `trainer decoder not runnable: ${trainerDecode.stderr.slice(-200)}`) }, async (t) => {
  const cases = JSON.parse(trainerDecode.stdout) as Array<{ name: string; file: string; rgb: string }>
  t.ok(cases.length >= 15)
  for (const c of cases) {
    const buf = new Uint8Array(Buffer.from(c.file, 'base64'))
    const img = await decodeImage(buf, formatOf(buf), limits)
    const ref = Buffer.from(c.rgb, 'base64')
    t.equal(img.data.length, ref.length, `${c.name}: size`)
    let diff = 0
    let max = 0
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(img.data[i]! - ref[i]!)
      diff += d
      if (d > max) max = d
    }
    // CMYK included: PIL's naive formula on the decoder's CMYK, not libvips' profile conversion (6.9 % off)
    t.equal(max, 0, `${c.name}: identical bytes (mean abs diff ${(diff / ref.length).toFixed(3)})`)
  }
})

t.test('alpha is flattened on white', async (t) => {
  // basn6a16 has fully transparent pixels in its top-left area; flattened they are white-ish, never black
  const img = await decodeImage(read('images/real/sharp-16-bit-grey-alpha.png'), 'png', limits)
  let bright = 0
  for (let i = 0; i < img.data.length; i += 3) if (img.data[i] === 255 && img.data[i + 1] === 255 && img.data[i + 2] === 255) bright++
  t.ok(bright > 0, `${bright} pure white pixels from transparent ones`)
  const grey = await decodeImage(read('images/real/sharp-concert-grayscale.jpg'), 'jpeg', limits)
  let equal = true
  for (let i = 0; i < grey.data.length; i += 3) if (grey.data[i] !== grey.data[i + 1] || grey.data[i] !== grey.data[i + 2]) equal = false
  t.ok(equal, 'greyscale expanded to three equal channels')
})

t.test('hostile images are refused with a specific code, fast', async (t) => {
  const cases: Array<[string, string]> = [
    ['images/hostile/sharp-giant-image.jpg', 'media_limit_exceeded'],
    ['images/hostile/sharp-65536-uint32-limit.png', 'media_limit_exceeded'],
    ['images/hostile/bomb.png.gz', 'media_limit_exceeded'],
    ['images/hostile/sharp-truncated.jpg', 'media_invalid'],
    ['images/hostile/sharp-truncated.png', 'media_invalid'],
    ['images/hostile/sharp-corrupt-header.jpg', 'media_invalid'],
    ['images/hostile/libvips-truncated.gif', 'media_invalid'],
    ['images/hostile/pngsuite/xhdn0g08.png', 'media_invalid'],
    ['images/hostile/pngsuite/xcsn0g01.png', 'media_invalid'], // bad IDAT CRC: refused (policy: CRCs are checked)
    ['images/hostile/pngsuite/xdtn0g01.png', 'media_invalid'],
    ['images/hostile/pngsuite/xc1n0g08.png', 'media_invalid'],
    ['images/hostile/pngsuite/xc9n2c08.png', 'media_invalid'],
    ['images/hostile/pngsuite/xd0n2c08.png', 'media_invalid'],
    ['images/hostile/pngsuite/xd3n2c08.png', 'media_invalid'],
    ['images/hostile/pngsuite/xd9n2c08.png', 'media_invalid'],
  ]
  for (const [p, code] of cases) {
    const t0 = performance.now()
    const buf = read(p)
    await t.rejects(decodeImage(buf, formatOf(buf), limits), { code }, p)
    t.ok(performance.now() - t0 < 2000, `${p} refused in ${(performance.now() - t0).toFixed(0)} ms`)
  }
})

t.test('pixel limit boundary, from the header', async (t) => {
  const buf = read('images/real/sharp-concert-grayscale.jpg') // 400x267 = 106800 px
  await t.resolves(decodeImage(buf, 'jpeg', { maxPixels: 400 * 267, timeoutSeconds: 10 }), 'exactly at the limit')
  await t.rejects(decodeImage(buf, 'jpeg', { maxPixels: 400 * 267 - 1, timeoutSeconds: 10 }), { code: 'media_limit_exceeded' }, 'one pixel over')
})

t.test('content must match the sniffed format', async (t) => {
  await t.rejects(decodeImage(read('images/real/imagereward-1.webp'), 'png', limits), { code: 'unsupported_media_type' })
})

t.test('decode published: byte for byte what PIL Image.open().convert(\'RGB\') gives (pil-reference.json)', async (t) => {
  const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'pil-reference.json'), 'utf8'))
  const cases = ref.published_decode as Array<{ source: string; width: number; height: number; sha256: string }>
  t.equal(cases.length, 6)
  for (const c of cases) {
    const buf = read(c.source)
    const img = await decodeImage(buf, formatOf(buf), limits, 'published')
    t.same([img.width, img.height], [c.width, c.height], `${c.source}: stored size (EXIF orientation ignored)`)
    t.equal(createHash('sha256').update(img.data).digest('hex'), c.sha256, `${c.source}: pixels`)
  }
})
