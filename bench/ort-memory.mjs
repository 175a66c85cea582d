// RSS of one onnxruntime-node session over a reward.onnx (external data) by session option, and its time per run
// (T = 64 text row): node bench/ort-memory.mjs MODEL_DIR/reward.onnx default|noprepack|noprepack-noarena
import * as ort from 'onnxruntime-node'
import { readFileSync } from 'node:fs'
const [file, variant] = process.argv.slice(2)
const st = () => Object.fromEntries(readFileSync('/proc/self/status', 'utf8').split('\n').filter((l) => /^(VmHWM|RssAnon|RssFile)/.test(l)).map((l) => [l.split(':')[0], Math.round(parseInt(l.split(/\s+/)[1]) / 1024) + 'MB']))
const opts = { graphOptimizationLevel: 'all', intraOpNumThreads: 2 }
if (variant.includes('noprepack')) opts.extra = { session: { disable_prepacking: '1' } }
if (variant.includes('noarena')) { opts.enableCpuMemArena = false; opts.enableMemPattern = false }
const t0 = performance.now()
const s = await ort.InferenceSession.create(file, opts)
const t1 = performance.now()
console.log(variant, 'after create', JSON.stringify(st()), `${((t1 - t0) / 1000).toFixed(1)}s`)
const T = 64
const feeds = {
  input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(100 + i)), [1, T]),
  image_embeds: new ort.Tensor('float32', new Float32Array(4096), [1, 4096]),
  image_positions: new ort.Tensor('int64', new BigInt64Array(T), [1, T]),
  im_mask: new ort.Tensor('float32', new Float32Array(T), [1, T]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
  readout_index: new ort.Tensor('int64', BigInt64Array.from([BigInt(T - 1)]), [1]),
}
await s.run(feeds)
const t2 = performance.now()
let r
for (let i = 0; i < 5; i++) r = await s.run(feeds)
const t3 = performance.now()
console.log(variant, 'after run', JSON.stringify(st()), `${((t3 - t2) / 5000).toFixed(3)}s/run`, r.score.data[0])
