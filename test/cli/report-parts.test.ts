// Pieces of the clean report: flag rules, binning, and the PNG encoder (decoded back with the service's own
// image decoder, pixel-exact).
import t from 'tap'
import { flagSamples } from '../../src/cli/flag-samples.ts'
import { binValues, renderHistogramPng } from '../../src/cli/histogram.ts'
import { decodeImage, encodePng } from '../../src/preprocess/image/sharp.ts'

const limits = { maxPixels: 1e7, timeoutSeconds: 10 }

t.test('encodePng round-trips through a real decoder', async (t) => {
  const w = 7
  const h = 5
  const rgb = new Uint8Array(w * h * 3)
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 256
  const img = await decodeImage(await encodePng(w, h, rgb), 'png', limits)
  t.equal(img.width, w)
  t.equal(img.height, h)
  t.same(Array.from(img.data), Array.from(rgb))
  await t.rejects(encodePng(2, 2, new Uint8Array(3)), /expected 12 bytes/)
})

t.test('histogram: shared range, top edge in the last bin, bars drawn', async (t) => {
  const series = [
    { label: 'a', values: [0, 0.5, 1, 1, NaN], color: [255, 0, 0] as const },
    { label: 'b', values: [2], color: [0, 0, 255] as const },
  ]
  const h = binValues(series, 4)
  t.same(h.edges, [0, 0.5, 1, 1.5, 2])
  t.same(h.counts, [
    [1, 1, 2, 0],
    [0, 0, 0, 1],
  ])
  t.same(binValues([{ label: 'c', values: [3, 3], color: [0, 0, 0] }], 2).edges, [2.5, 3, 3.5], 'constant values get a unit range')
  // 100x80 canvas, 16 px padding: plot 68 x 48; bin 2 spans x 50..65; the tallest bar (count 2) is 48 high.
  const png = await renderHistogramPng(series, h, 100, 80)
  const img = await decodeImage(png, 'png', limits)
  t.equal(img.width, 100)
  const px = (x: number, y: number) => Array.from(img.data.subarray((y * 100 + x) * 3, (y * 100 + x) * 3 + 3))
  t.same(px(99, 0), [255, 255, 255], 'background')
  t.same(px(55, 17), [255, 115, 115], 'series a, bin 2: red at 55% over white, full height')
  t.same(px(55, 15), [255, 255, 255], 'nothing above the tallest bar')
  t.same(px(80, 60), [115, 115, 255], 'series b, bin 3: blue')
  t.same(px(20, 38), [255, 255, 255], 'bin 0 (count 1) is half height: rows 40..63')
  t.same(px(20, 50), [255, 115, 115])
})

t.test('flag rules: lowest k%, threshold, z-score; reasons accumulate', async (t) => {
  const items = [...Array.from({ length: 19 }, (_, i) => ({ id: `s${i}`, value: 1 + i * 0.01 })), { id: 'out', value: -10 }]
  const r = flagSamples(items, { lowestPct: 10, threshold: 1.005, zscore: 3 })
  t.same(r.flags.get('out'), ['lowest_pct', 'below_threshold', 'zscore_outlier'])
  t.same(r.flags.get('s0'), ['lowest_pct', 'below_threshold'])
  t.notOk(r.flags.has('s1'))
  t.equal(r.flags.size, 2)
  t.equal(r.stats.n, 20)
  t.equal(r.stats.lowestCutoff, 1)
  t.equal(flagSamples(items, {}).flags.size, 0, 'no rules, no flags')
  t.equal(flagSamples([{ id: 'x', value: NaN }], { lowestPct: 50 }).flags.size, 0, 'non-finite values are not ranked')
})
