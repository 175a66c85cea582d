// The JavaScript header probe (src/preprocess/image/header-probe.ts) against libvips' own header read
// (readImageHeader, sharp metadata): the same pixel count and the same decode decisions (16-bit, grey without
// alpha, CMYK) on every image fixture and on generated PNG/JPEG/WebP/GIF variants; headers it cannot follow fall
// back to libvips, so the media path decodes each image in one libvips pipeline when it can, and as before when not.
import t, { type Test } from 'tap'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { skipUnless } from '../helpers/tools.ts'
import { probeImageHeader } from '../../src/preprocess/image/header-probe.ts'
import { decodeImage, planImageDecode, readImageHeader } from '../../src/preprocess/image/sharp.ts'
import { sniffMedia } from '../../src/preprocess/media/sniff.ts'
import { fixtures, readFixture } from './helpers/fixtures.ts'

const limits = { maxPixels: 36_000_000, timeoutSeconds: 10 }

async function compare(t: Test, name: string, buf: Uint8Array): Promise<'probed' | 'fallback' | 'skipped'> {
  const s = sniffMedia(buf)
  if (s?.kind !== 'image') return 'skipped'
  let h
  try {
    h = await readImageHeader(buf, s.format, { ...limits, maxPixels: 1e12 })
  } catch {
    // libvips cannot read this header: the probe may still give a size (the decode then fails in libvips)
    return 'skipped'
  }
  const p = probeImageHeader(buf, s.format)
  if (!p) return 'fallback'
  t.same({ pixels: p.width * p.height, sixteenBit: p.sixteenBit, cmyk: p.cmyk }, { pixels: h.width * h.height, sixteenBit: h.sixteenBit, cmyk: h.cmyk }, name)
  // the grey decision only changes the decode of 16-bit sources (PNG); for PNG and JPEG it is exact anyway
  if (s.format === 'png' || s.format === 'jpeg') t.equal(p.greyNoAlpha, h.grey && !h.alpha, `${name}: grey without alpha`)
  const swapped = h.width !== p.width
  t.same(swapped ? [p.height, p.width] : [p.width, p.height], [h.width, h.height], `${name}: size (stored vs displayed)`)
  return 'probed'
}

t.test('every image fixture: the probe agrees with libvips, or leaves the header to it', async (t) => {
  const files = ['images/real', 'images/hostile', 'images/hostile/pngsuite', 'images/hostile/payloads'].flatMap((d) =>
    readdirSync(join(fixtures, d)).filter((f) => !f.endsWith('.json') && !f.includes('LICENSE') && !f.endsWith('NOTICE')).map((f) => `${d}/${f}`),
  )
  const seen = { probed: 0, fallback: 0, skipped: 0 }
  for (const f of files) {
    if (!/\.\w+(\.gz)?$/.test(f)) continue
    seen[await compare(t, f, readFixture(f))]++
  }
  t.ok(seen.probed >= 10, `probed ${seen.probed}, left to libvips ${seen.fallback}, unreadable ${seen.skipped}`)
})

const generated = spawnSync('/usr/bin/python3', ['-c', [
  'import io, json, base64',
  'import numpy as np',
  'from PIL import Image',
  'y, x = np.mgrid[0:37, 0:53]',
  'out = {}',
  'def save(name, im, fmt, **kw):',
  '    b = io.BytesIO(); im.save(b, fmt, **kw); out[name] = base64.b64encode(b.getvalue()).decode()',
  'g8 = ((x * 5 + y * 3) % 256).astype(np.uint8)',
  'rgb = np.stack([g8, (x * 7) % 256, (y * 11) % 256], -1).astype(np.uint8)',
  'for mode, arr in [("L", g8), ("RGB", rgb), ("RGBA", np.dstack([rgb, g8])), ("LA", np.dstack([g8, 255 - g8]))]:',
  '    save(f"{mode}.png", Image.fromarray(arr, mode), "PNG")',
  '    save(f"{mode}-interlaced.png", Image.fromarray(arr, mode), "PNG", interlace=1)',
  'save("I16.png", Image.fromarray(((x * 1231 + y * 77) % 65536).astype(np.uint16), "I;16"), "PNG")',
  'save("L-trns.png", Image.fromarray(g8, "L"), "PNG", transparency=7)',
  'save("RGB-trns.png", Image.fromarray(rgb, "RGB"), "PNG", transparency=(0, 7, 11))',
  'save("P.png", Image.fromarray(g8 // 16, "L").convert("P"), "PNG")',
  'save("P-trns.png", Image.fromarray(g8 // 16, "L").convert("P"), "PNG", transparency=3)',
  'save("1bit.png", Image.fromarray(g8 > 128), "PNG")',
  'save("P-4bit.png", Image.fromarray(g8 // 16, "L").convert("P"), "PNG", bits=4)',
  'for mode, arr in [("L", g8), ("RGB", rgb)]:',
  '    save(f"{mode}.jpg", Image.fromarray(arr, mode), "JPEG", quality=90)',
  '    save(f"{mode}-progressive.jpg", Image.fromarray(arr, mode), "JPEG", quality=90, progressive=True)',
  'save("CMYK.jpg", Image.fromarray(np.dstack([rgb, g8]), "CMYK"), "JPEG", quality=90)',
  'save("RGB.gif", Image.fromarray(rgb, "RGB").convert("P"), "GIF")',
  'try:',
  '    save("RGB-lossy.webp", Image.fromarray(rgb, "RGB"), "WEBP", quality=80)',
  '    save("RGB-lossless.webp", Image.fromarray(rgb, "RGB"), "WEBP", lossless=True)',
  '    save("RGBA-lossy.webp", Image.fromarray(np.dstack([rgb, g8]), "RGBA"), "WEBP", quality=80)',
  '    save("RGBA-lossless.webp", Image.fromarray(np.dstack([rgb, g8]), "RGBA"), "WEBP", lossless=True)',
  'except (OSError, KeyError):',
  '    pass',
  'print(json.dumps(out))',
].join('\n')], { encoding: 'utf8', maxBuffer: 16 << 20 })

t.test('generated PNG / JPEG / WebP / GIF variants: the probe agrees with libvips', { skip: skipUnless(generated.status === 0, `no /usr/bin/python3 with PIL: ${generated.stderr?.slice(-200)}`) }, async (t) => {
  const files = JSON.parse(generated.stdout) as Record<string, string>
  let probed = 0
  for (const [name, b64] of Object.entries(files)) {
    const r = await compare(t, name, new Uint8Array(Buffer.from(b64, 'base64')))
    t.equal(r, 'probed', `${name}: read by the probe`)
    if (r === 'probed') probed++
  }
  t.ok(probed >= 20, `${probed} generated images`)
})

t.test('headers the probe cannot follow go to libvips; limits hold either way', async (t) => {
  const jpg = readFixture('images/real/sharp-concert-grayscale.jpg')
  t.equal(probeImageHeader(jpg.subarray(0, 40), 'jpeg'), null, 'cut before the frame header')
  t.equal(probeImageHeader(readFixture('images/hostile/sharp-corrupt-header.jpg'), 'jpeg'), null, 'a segment running past the end')
  t.equal(probeImageHeader(readFixture('images/real/imagereward-1.webp'), 'png'), null, 'not the sniffed format')
  await t.rejects(decodeImage(readFixture('images/real/imagereward-1.webp'), 'png', limits), { code: 'unsupported_media_type' }, 'libvips then refuses it')
  // over the pixel limit, from the probed header, before libvips runs at all
  t.ok(probeImageHeader(readFixture('images/hostile/bomb.png.gz'), 'png'), 'the PNG bomb header is read by the probe')
  await t.rejects(planImageDecode(readFixture('images/hostile/bomb.png.gz'), 'png', limits), { code: 'media_limit_exceeded', message: /225000x225000/ })
  await t.rejects(planImageDecode(readFixture('images/hostile/sharp-giant-image.jpg'), 'jpeg', limits), { code: 'media_limit_exceeded', message: /20000x14000/ })
  t.same(await planImageDecode(jpg, 'jpeg', limits), { format: 'jpeg', width: 400, height: 267, sixteenBit: false, greyNoAlpha: true, cmyk: false })
})
