// Decoding real and hostile images through the hardened sharp path (src/preprocess/image/sharp.ts).
import t from 'tap'
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

t.test('EXIF orientation 6 is applied: same pixels as PIL ImageOps.exif_transpose', { skip: py.status !== 0 && 'no /usr/bin/python3 with PIL' }, async (t) => {
  const img = await decodeImage(new Uint8Array(readFileSync(landscape6)), 'jpeg', limits)
  t.same([img.width, img.height], [600, 450])
  t.equal(py.stdout.length, img.data.length, 'PIL gives the same 600x450 size')
  let diff = 0
  for (let i = 0; i < img.data.length; i++) diff += Math.abs(img.data[i] - py.stdout[i])
  // measured 0 (identical); a wrong or missing rotation gives tens of levels, applying the embedded ICC profile
  // (which PIL, and so the trainer, ignores) gives 12
  t.ok(diff / img.data.length < 0.5, `mean abs diff vs PIL ${(diff / img.data.length).toFixed(3)} levels (< 0.5)`)
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
