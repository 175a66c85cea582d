// Parity of the PIL-bilinear port and the IXC HD transforms with PIL itself. The reference numbers come from
// test/preprocess/fixtures/make-pil-reference.py (PIL 9.4, committed with its output). A change of the resize
// filter, its rounding, the padding side, the transposition or the normalisation makes these fail.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { resizeBilinear } from '../../src/preprocess/image/pil-resize.ts'
import { imageTransform, videoTransform, planImageGrid, imageTokenCount, type ImagePreprocessParams } from '../../src/preprocess/image/hd-transform.ts'
import { decodeImage } from '../../src/preprocess/image/sharp.ts'
import type { RgbImage } from '../../src/preprocess/image/rgb.ts'
import { sniffMedia } from '../../src/preprocess/media/sniff.ts'

import { fixtures } from './helpers/fixtures.ts'
const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'pil-reference.json'), 'utf8'))

export const params: ImagePreprocessParams = {
  tile_size: 112, patch_size: 14, hd_num: 4, hd_num_multi: 2, resize: 'pil_bilinear', pad_color: [255, 255, 255],
  pad_side: 'bottom', transpose_portrait: true,
  mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711],
}

// Same formula as synthetic() in make-pil-reference.py.
function synthetic(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3
      data[i] = (x * 37 + y * 91 + ((x * y) % 17)) % 256
      data[i + 1] = (x * 13 + y * 7 + (x ^ y) * 5) % 256
      data[i + 2] = (Math.floor(x / 3) * 60 + Math.floor(y / 2) * 45) % 256
    }
  }
  return { width: w, height: h, data }
}

async function source(name: string): Promise<RgbImage> {
  if (name.startsWith('synthetic')) {
    const [w, h] = name.split(':')[1].split('x').map(Number)
    return synthetic(w, h)
  }
  const buf = new Uint8Array(readFileSync(join(fixtures, name)))
  const sniffed = sniffMedia(buf)
  if (sniffed?.kind !== 'image') throw new Error(`${name} is not an image`)
  return decodeImage(buf, sniffed.format, { maxPixels: 40e6, timeoutSeconds: 10 })
}

t.test('PIL bilinear resize is reproduced exactly (uint8, both directions)', async (t) => {
  for (const c of ref.resize) {
    const src = c.source === 'synthetic' ? synthetic(c.from[0], c.from[1]) : await source(c.source)
    const out = resizeBilinear(src, c.width, c.height)
    const label = `${c.source} ${c.from.join('x')} -> ${c.width}x${c.height}`
    if (c.pixels) t.same(Array.from(out.data), c.pixels, label)
    t.equal(createHash('sha256').update(out.data).digest('hex'), c.sha256, `${label} bytes identical`)
  }
})

t.test('IXC Image_transform / Video_transform match the PIL+numpy reference', async (t) => {
  for (const c of ref.transform) {
    const src = await source(c.source)
    const out = c.kind === 'image' ? imageTransform(src, params, c.hd_num) : videoTransform(src, params)
    t.same([1, 3, out.height, out.width], c.shape, `${c.id} shape`)
    let sum = 0
    let abs = 0
    for (const v of out.data) { sum += v; abs += Math.abs(v) }
    // float32 elementwise identical; the float64 sums only differ by summation order
    t.ok(Math.abs(sum - c.sum) <= 1e-6 * c.abs_sum, `${c.id} sum ${sum} vs ${c.sum}`)
    t.ok(Math.abs(abs - c.abs_sum) <= 1e-6 * c.abs_sum, `${c.id} abs_sum ${abs} vs ${c.abs_sum}`)
    for (const [, ch, y, x, v] of c.sample) {
      t.ok(Math.abs(out.data[(ch * out.height + y) * out.width + x] - v) <= 1e-6, `${c.id} sample c${ch} y${y} x${x}`)
    }
    // row means pin the padding side (white rows at the bottom for landscape, white columns on the right for portrait)
    const rowMeans: number[] = []
    for (let y = 0; y < out.height; y++) {
      let s = 0
      for (let ch = 0; ch < 3; ch++) for (let x = 0; x < out.width; x++) s += out.data[(ch * out.height + y) * out.width + x]
      rowMeans.push(s / (3 * out.width))
    }
    const worst = Math.max(...rowMeans.map((m, i) => Math.abs(m - c.row_means[i])))
    t.ok(worst <= 1e-5, `${c.id} row means (max diff ${worst})`)
  }
})

t.test('token count and grid planning follow the contract formula', async (t) => {
  // G = 112/14/2 = 4: one tile -> (1+1)*16 + 1 + 2*4 = 41
  t.equal(imageTokenCount(1, 1, 112, 14), 41)
  // IXC's own numbers (S = 560, patch 14, G = 20): 1x1 -> 841, 2x2 -> 2061, 2x3 -> 2861, 3x2 -> 2881
  t.equal(imageTokenCount(1, 1, 560, 14), 841)
  t.equal(imageTokenCount(2, 2, 560, 14), 2061)
  t.equal(imageTokenCount(2, 3, 560, 14), 2861)
  t.equal(imageTokenCount(3, 2, 560, 14), 2881)
  // reference table of §3.2 (hd_num 9, S 560)
  const cases: Array<[number, number, number, number]> = [
    [224, 224, 1, 1], [800, 600, 2, 2], [600, 800, 2, 2], [1920, 1080, 2, 3], [3000, 2000, 2, 3], [1080, 1920, 3, 2], [4000, 1000, 1, 4],
  ]
  for (const [w, h, rows, cols] of cases) {
    const g = planImageGrid(w, h, 9, 560)
    t.same([g.rows, g.cols], [rows, cols], `${w}x${h}`)
  }
})
