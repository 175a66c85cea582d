// normalizeToTensor with a canvas (pad + transpose + normalise in one pass, into a given buffer) against the
// rasters it stands for: padBottom / a right pad, transposeRgb, then the plain normalisation. Bit for bit, and
// every element written even when the buffer holds an earlier image's values (a pooled buffer).
import t from 'tap'
import { createRgb, normalizeToTensor, padBottom, pasteRgb, transposeRgb, type RgbImage } from '../../src/preprocess/image/rgb.ts'

const mean = [0.48145466, 0.4578275, 0.40821073]
const std = [0.26862954, 0.26130258, 0.27577711]

function noise(w: number, h: number, seed: number): RgbImage {
  const img = createRgb(w, h, 0)
  let s = seed
  for (let i = 0; i < img.data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0
    img.data[i] = s >>> 24
  }
  return img
}

// the canvas as a raster: the image at the top left of a width x height field of `color`
function padded(img: RgbImage, width: number, height: number, color: number[]): RgbImage {
  const wide = createRgb(width, img.height, 0)
  for (let i = 0; i < wide.data.length; i += 3) wide.data.set(color, i)
  pasteRgb(wide, img, 0, 0)
  return padBottom(wide, height, color)
}

const cases = [
  { w: 7, h: 5, cw: 7, ch: 5 }, // no padding
  { w: 7, h: 5, cw: 7, ch: 9 }, // bottom (the image transform)
  { w: 6, h: 4, cw: 11, ch: 4 }, // right (the video transform)
  { w: 5, h: 3, cw: 8, ch: 6 }, // both
  { w: 1, h: 1, cw: 4, ch: 4 },
]

t.test('pad + transpose + normalise in one pass equals the rasters', async (t) => {
  let seed = 1
  for (const c of cases) {
    for (const transpose of [false, true]) {
      for (const color of [[255, 255, 255], [0, 127, 300]]) {
        const img = noise(c.w, c.h, seed++)
        const raster = padded(img, c.cw, c.ch, color)
        const want = normalizeToTensor(transpose ? transposeRgb(raster) : raster, mean, std)
        const label = `${c.w}x${c.h} on ${c.cw}x${c.ch}, transpose ${transpose}, pad ${color}`
        t.same(Array.from(normalizeToTensor(img, mean, std, { width: c.cw, height: c.ch, padColor: color, transpose })), Array.from(want), label)
        // a reused buffer: stale values everywhere, all of them overwritten
        const out = new Float32Array(want.length).fill(Number.NaN)
        const got = normalizeToTensor(img, mean, std, { width: c.cw, height: c.ch, padColor: color, transpose, out })
        t.equal(got, out, `${label}: written into the given buffer`)
        t.same(Array.from(got), Array.from(want), `${label}: reused buffer`)
      }
    }
  }
})

t.test('a canvas smaller than the image or a buffer of the wrong size is refused', async (t) => {
  const img = noise(4, 3, 9)
  t.throws(() => normalizeToTensor(img, mean, std, { width: 3, height: 3, padColor: [0, 0, 0], transpose: false }), RangeError)
  t.throws(() => normalizeToTensor(img, mean, std, { width: 4, height: 2, padColor: [0, 0, 0], transpose: true }), RangeError)
  t.throws(() => normalizeToTensor(img, mean, std, { width: 4, height: 4, padColor: [0, 0, 0], transpose: false, out: new Float32Array(3 * 4 * 3) }), RangeError)
})
