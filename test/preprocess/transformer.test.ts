// Media pixel work in worker threads: same results as on the calling thread, the event loop stays responsive
// while a big image is resized, and a dead worker fails its jobs instead of hanging them.
import t from 'tap'
import { createTransformer, inlineTransformer, WorkerTransformer } from '../../src/preprocess/media/transformer.ts'
import type { ImageTensor } from '../../src/preprocess/image/hd-transform.ts'
import type { RgbImage } from '../../src/preprocess/image/rgb.ts'
import { preprocess } from './helpers/media-app.ts'

function pattern(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 11)) % 251
  return { width: w, height: h, data }
}

// Longest gap between 1 ms ticks of the event loop while `work` runs.
async function maxStall(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now()
  let worst = 0
  const timer = setInterval(() => {
    const now = performance.now()
    worst = Math.max(worst, now - last)
    last = now
  }, 1)
  await work()
  clearInterval(timer)
  return Math.max(worst, performance.now() - last)
}

t.test('worker results equal inline results', async (t) => {
  const pool = createTransformer(1)
  t.teardown(() => pool.close())
  const a = await pool.run<ImageTensor>({ op: 'image', rgb: pattern(300, 170), image: preprocess.image, hdNum: 4 })
  const b = await inlineTransformer.run<ImageTensor>({ op: 'image', rgb: pattern(300, 170), image: preprocess.image, hdNum: 4 })
  t.same([a.width, a.height, a.rows, a.cols, a.tokens], [b.width, b.height, b.rows, b.cols, b.tokens])
  t.ok(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer)), 'identical float32 tensor')
  const frames = await Promise.all([pattern(64, 36), pattern(64, 36)].map((rgb) => pool.run<RgbImage>({ op: 'frame', rgb, longSide: 224 })))
  const v = await pool.run<ImageTensor>({ op: 'video', frames, video: preprocess.video, image: preprocess.image })
  // 2 frames 224x126 stacked: 2·(20+126)+10 = 302 tall -> 112 x int(112·302/224) = 151 -> padded to 224
  t.same([v.width, v.height], [112, 224])
})

t.test('a big image transform does not stall the event loop', async (t) => {
  const pool = createTransformer(1)
  t.teardown(() => pool.close())
  await pool.run({ op: 'frame', rgb: pattern(8, 8), longSide: 16 }) // start the worker outside the measurement
  const [big1, big2] = [pattern(4000, 3000), pattern(4000, 3000)]
  const inline = await maxStall(() => inlineTransformer.run({ op: 'image', rgb: big1, image: preprocess.image, hdNum: 4 }))
  const worker = await maxStall(() => pool.run({ op: 'image', rgb: big2, image: preprocess.image, hdNum: 4 }))
  // ratio within the same run (no absolute timing): inline blocks for the whole resize, the worker path only for
  // the postMessage of an already-built buffer
  t.ok(worker < inline / 3, `longest stall: inline ${inline.toFixed(0)} ms, worker ${worker.toFixed(0)} ms`)
})

t.test('a worker that dies fails its pending jobs; the pool starts a new one', async (t) => {
  const pool = new WorkerTransformer(1)
  t.teardown(() => pool.close())
  await pool.run({ op: 'frame', rgb: pattern(8, 8), longSide: 16 })
  const slot = (pool as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> }).slots[0]!
  const pending = pool.run({ op: 'image', rgb: pattern(2000, 1500), image: preprocess.image, hdNum: 4 })
  await slot.worker.terminate()
  await t.rejects(pending, /media worker stopped/)
  const again = await pool.run<RgbImage>({ op: 'frame', rgb: pattern(10, 5), longSide: 20 })
  t.same([again.width, again.height], [20, 10])
  await pool.close()
  await t.rejects(pool.run({ op: 'frame', rgb: pattern(2, 2), longSide: 4 }), /closed/)
})
