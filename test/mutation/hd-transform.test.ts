// HD transform edges the PIL reference cases do not reach: manifest checks, extreme aspect ratios, and the grid
// / token fields of the tensors (the reference compares pixels and shapes only).
import t from 'tap'
import {
  checkImageParams,
  chooseColumns,
  imageTokenCount,
  imageTransform,
  planImageGrid,
  videoTransform,
  type ImagePreprocessParams,
} from '../../src/preprocess/image/hd-transform.ts'
import { normalizeToTensor, type RgbImage } from '../../src/preprocess/image/rgb.ts'
import { resizeBilinear } from '../../src/preprocess/image/pil-resize.ts'

const params: ImagePreprocessParams = {
  tile_size: 112, patch_size: 14, hd_num: 4, hd_num_multi: 2, resize: 'pil_bilinear', pad_color: [255, 255, 255],
  pad_side: 'bottom', transpose_portrait: true,
  mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711],
}
const gray = (width: number, height: number): RgbImage => ({ width, height, data: new Uint8Array(width * height * 3).fill(128) })

t.test('checkImageParams refuses transforms this module does not implement', async (t) => {
  t.doesNotThrow(() => checkImageParams(params))
  t.throws(() => checkImageParams({ ...params, resize: 'bicubic' }), /resize "bicubic" is not supported/)
  t.throws(() => checkImageParams({ ...params, pad_side: 'right' }), /pad_side "right" is not supported/)
  t.throws(() => checkImageParams({ ...params, transpose_portrait: false }), /transpose_portrait must be true/)
  const even = /tile_size must be an even multiple of patch_size/
  t.throws(() => checkImageParams({ ...params, tile_size: 98 }), even) // 98 / 14 = 7: odd
  t.throws(() => checkImageParams({ ...params, tile_size: 0 }), even)
  t.throws(() => checkImageParams({ ...params, tile_size: -112 }), even) // -8 is even, but the size is negative
  t.throws(() => checkImageParams({ ...params, patch_size: 0 }), even)
  t.throws(() => checkImageParams({ ...params, patch_size: -14 }), even)
  t.throws(() => checkImageParams({ ...params, tile_size: 100 }), even) // 100 / 14 is not an integer
})

t.test('chooseColumns: largest scale with scale x ceil(scale / ratio) <= hd_num, capped by native width', async (t) => {
  t.equal(chooseColumns(2000, 1000, 9, 100), 4) // ratio 2: 4 x 2 = 8 <= 9, 5 x 3 = 15 > 9
  t.equal(chooseColumns(2000, 1000, 8, 100), 4) // 8 <= 8 (inclusive)
  t.equal(chooseColumns(2000, 1000, 7, 100), 3) // 3 x 2 = 6
  t.equal(chooseColumns(250, 125, 9, 100), 3) // native: ceil(250 / 100) = 3 columns are enough
  t.equal(chooseColumns(1000, 1000, 1, 100), 1)
})

t.test('planImageGrid: sizes and the orientation of rows/cols', async (t) => {
  t.same(planImageGrid(2000, 1000, 9, 100), { rows: 2, cols: 4, newW: 400, newH: 200 })
  t.same(planImageGrid(1000, 2000, 9, 100), { rows: 4, cols: 2, newW: 400, newH: 200 })
  t.same(planImageGrid(1000, 1000, 9, 100), { rows: 3, cols: 3, newW: 300, newH: 300 })
  // 250 x 120: 3 columns (native), newH = trunc(300 / (250/120)) = 144 -> 2 rows
  t.same(planImageGrid(250, 120, 9, 100), { rows: 2, cols: 3, newW: 300, newH: 144 })
  t.throws(() => planImageGrid(100_000, 1, 1, 100), RangeError, 'resized height below one pixel')
  t.throws(() => planImageGrid(1, 100_000, 1, 100), /too extreme/)
  t.doesNotThrow(() => planImageGrid(100, 1, 1, 100), 'exactly one pixel high is fine')
})

t.test('imageTransform reports the grid and token count it produced, portrait or landscape', async (t) => {
  const land = imageTransform(gray(300, 200), params, 4)
  // ratio 1.5: scale 2 (2 x 2 = 4 <= 4) -> 224 x 149 -> padded to 224 x 224: 2 x 2 tiles
  t.same([land.width, land.height, land.rows, land.cols], [224, 224, 2, 2])
  t.equal(land.tokens, imageTokenCount(2, 2, 112, 14))
  t.equal(land.data.length, 3 * 224 * 224)
  const wide = imageTransform(gray(400, 100), params, 4)
  // ratio 4: scale 4 (4 x 1 = 4) -> 448 x 112: one row of 4 tiles
  t.same([wide.width, wide.height, wide.rows, wide.cols], [448, 112, 1, 4])
  t.equal(wide.tokens, imageTokenCount(1, 4, 112, 14))
  const tall = imageTransform(gray(100, 400), params, 4)
  t.same([tall.width, tall.height, tall.rows, tall.cols], [112, 448, 4, 1])
  t.equal(tall.tokens, imageTokenCount(4, 1, 112, 14))
})

t.test('videoTransform: short side to S, long side padded to a multiple of S, orientation kept', async (t) => {
  const land = videoTransform(gray(300, 200), params) // 168 x 112 -> padded to 224 x 112
  t.same([land.width, land.height, land.rows, land.cols], [224, 112, 1, 2])
  t.equal(land.tokens, imageTokenCount(1, 2, 112, 14))
  const tall = videoTransform(gray(200, 300), params)
  t.same([tall.width, tall.height, tall.rows, tall.cols], [112, 224, 2, 1])
  // the padding is white: the padded columns of a landscape frame normalise to (1 - mean) / std
  const x = 223
  const white = (1 - params.mean[0]!) / params.std[0]!
  t.ok(Math.abs(land.data[0 * 112 * 224 + 5 * 224 + x]! - white) < 1e-5, 'padded column is white')
  const sq = videoTransform(gray(112, 112), params)
  t.same([sq.width, sq.height], [112, 112], 'no padding needed')
})

t.test('a square video frame is not transposed (the trainer transposes only when width < height)', async (t) => {
  // PIL's bilinear resize rounds to uint8 between its horizontal and vertical passes, so resizing a transposed
  // square and transposing back is not the same image: the orientation test must be strict
  const n = 200
  const data = new Uint8Array(n * n * 3)
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + Math.floor(i / 7) * 91) % 256
  const img: RgbImage = { width: n, height: n, data }
  const want = normalizeToTensor(resizeBilinear(img, 112, 112), params.mean, params.std)
  const got = videoTransform(img, params)
  t.same([got.width, got.height], [112, 112])
  let diff = 0
  for (let i = 0; i < want.length; i++) if (got.data[i] !== want[i]) diff++
  t.equal(diff, 0, 'identical to resizing the frame as it is')
})
