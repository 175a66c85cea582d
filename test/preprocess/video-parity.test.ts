// Video layout parity with the trainer's own code (trainer/reward_trainer/media.py, run with Debian's Python in
// the test setup): the same synthetic frames through resize_long_side + layout_frames + video_transform must give
// the identical canvas and tensor. Catches any drift in rounding, label drawing, line placement or padding.
import t from 'tap'
import { skipUnless } from '../helpers/tools.ts'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { layoutFrames } from '../../src/preprocess/video/layout.ts'
import { resizeLongSide, type VideoPreprocessParams } from '../../src/preprocess/video/layout.ts'
import { videoTransform } from '../../src/preprocess/image/hd-transform.ts'
import type { RgbImage } from '../../src/preprocess/image/rgb.ts'
import { preprocess } from './helpers/media-app.ts'

const root = join(import.meta.dirname, '..', '..')
// frame sizes per case: landscape, portrait, a narrow portrait whose labels overflow, >max_frames, odd rounding
const CASES: Array<[number, number][]> = [
  [[64, 36], [64, 36], [64, 36]],
  [[36, 64], [40, 70]],
  [[20, 90], [20, 90], [20, 90]],
  Array.from({ length: 11 }, () => [50, 30] as [number, number]),
  [[333, 200], [301, 2]],
  [[90, 90]],
]

const script = `
import json, sys, hashlib
import numpy as np
from PIL import Image
sys.path.insert(0, ${JSON.stringify(join(root, 'trainer'))})
from reward_trainer import media
from reward_trainer.config import ImagePreprocess, VideoPreprocess
cases = json.loads(sys.argv[1])
def synth(w, h, k):
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 37 + y * 91 + k * 11) % 256, (x * 13 + y * 7 + k * 29) % 256, ((x // 3) * 60 + (y // 2) * 45 + k) % 256], -1)
    return Image.fromarray(a.astype(np.uint8), "RGB")
out = []
v, i = VideoPreprocess(), ImagePreprocess()
for sizes in cases:
    frames = media.select_frames([synth(w, h, k) for k, (w, h) in enumerate(sizes)], v.max_frames)
    canvas = media.layout_frames(frames, v)
    t = media.video_transform(canvas, i).numpy().astype(np.float64)
    out.append({"canvas": [canvas.size[0], canvas.size[1], hashlib.sha256(np.asarray(canvas).tobytes()).hexdigest()],
                "shape": list(t.shape), "sum": float(t.sum()), "abs_sum": float(np.abs(t).sum())})
print(json.dumps({"cases": out, "font": media.font_manifest()}))
`
const py = spawnSync('/usr/bin/python3', ['-c', script, JSON.stringify(CASES)], { encoding: 'utf8', maxBuffer: 16 << 20 })

function synth(w: number, h: number, k: number): RgbImage {
  const data = new Uint8Array(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3
      data[i] = (x * 37 + y * 91 + k * 11) % 256
      data[i + 1] = (x * 13 + y * 7 + k * 29) % 256
      data[i + 2] = (Math.floor(x / 3) * 60 + Math.floor(y / 2) * 45 + k) % 256
    }
  }
  return { width: w, height: h, data }
}

t.test('layout + Video_transform identical to the trainer', { skip: skipUnless(py.status === 0, `trainer media.py not runnable here: ${py.stderr.slice(-300)}`) }, async (t) => {
  const ref = JSON.parse(py.stdout)
  // the trainer's font is what its manifests ship; use it, with the contract's other numbers
  const video: VideoPreprocessParams = { ...preprocess.video, label_font: ref.font }
  CASES.forEach((sizes, n) => {
    const frames = sizes.map(([w, h], k) => resizeLongSide(synth(w, h, k), video.frame_long_side))
    const canvas = layoutFrames(frames, video)
    const want = ref.cases[n]
    t.same([canvas.width, canvas.height, createHash('sha256').update(canvas.data).digest('hex')], want.canvas, `case ${n}: canvas ${sizes.length} frames of ${sizes[0]}`)
    const tensor = videoTransform(canvas, preprocess.image)
    t.same([1, 3, tensor.height, tensor.width], want.shape, `case ${n}: tensor shape`)
    let sum = 0
    let abs = 0
    for (const v of tensor.data) { sum += v; abs += Math.abs(v) }
    t.ok(Math.abs(sum - want.sum) <= 1e-6 * want.abs_sum && Math.abs(abs - want.abs_sum) <= 1e-6 * want.abs_sum, `case ${n}: tensor sums ${sum} vs ${want.sum}`)
  })
})
