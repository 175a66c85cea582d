// Pieces of the clean and bon reports: flag rules, binning, ticks, and the charts (decoded back with the service's
// own image decoder; pixels checked where the chart says it drew bars, axes, tick labels and the legend).
import t from 'tap'
import { flagSamples } from '../../src/cli/flag-samples.ts'
import { niceTicks, tickLabel } from '../../src/cli/chart.ts'
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
  const { png, layout } = await renderHistogramPng(series, h, { title: 'Scores', xLabel: 'score' }, 400, 240)
  const img = await decodeImage(png, 'png', limits)
  t.equal(img.width, 400)
  t.equal(img.height, 240)
  const px = (x: number, y: number) => Array.from(img.data.subarray((y * 400 + x) * 3, (y * 400 + x) * 3 + 3))
  const { plot } = layout
  t.same(px(399, 239), [255, 255, 255], 'background')
  // Bars: bin 2 of series a (count 2) reaches the y tick "2"; series b sits in bin 3.
  const binX = (b: number) => Math.round(plot.x0 + ((b + 0.5) / 4) * (plot.x1 - plot.x0))
  const y2 = layout.yTicks.find((tk) => tk.value === 2)!.px
  t.same(px(binX(2), y2 + 2), [255, 115, 115], 'series a, bin 2: red at 55% over white, up to count 2')
  t.same(px(binX(2), y2 - 3), [255, 255, 255], 'nothing above it')
  t.same(px(binX(3), plot.y1 - 2), [115, 115, 255], 'series b, bin 3: blue')
  t.same(px(binX(1), plot.y1 - 2), [255, 115, 115], 'bin 1 of a')
  // Axes: the frame lines, ticks with round values, and text drawn under each x tick and left of each y tick.
  t.same(px(Math.round((plot.x0 + plot.x1) / 2), plot.y1), [0, 0, 0], 'x axis')
  t.same(px(plot.x0, Math.round((plot.y0 + plot.y1) / 2)), [0, 0, 0], 'y axis')
  t.same(layout.xTicks.map((tk) => tk.label), ['0.0', '0.5', '1.0', '1.5', '2.0'])
  t.same(layout.yTicks.map((tk) => tk.label), ['0', '1', '2'])
  const inkIn = (x0: number, y0: number, x1: number, y1: number) => {
    let n = 0
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (px(x, y)[0]! < 128 && px(x, y)[2]! < 128) n++
    return n
  }
  for (const tk of layout.xTicks) {
    t.same(px(tk.px, plot.y1 + 3), [0, 0, 0], `tick mark at ${tk.label}`)
    t.ok(inkIn(tk.px - 12, plot.y1 + 8, tk.px + 12, plot.y1 + 24) > 5, `x tick label ${tk.label} drawn`)
  }
  for (const tk of layout.yTicks) t.ok(inkIn(plot.x0 - 40, tk.px - 8, plot.x0 - 6, tk.px + 8) > 3, `y tick label ${tk.label} drawn`)
  t.ok(inkIn(plot.x0, 240 - 20, plot.x1, 240) > 10, 'x axis title')
  t.ok(inkIn(0, plot.y0, 20, plot.y1) > 10, 'y axis title (vertical)')
  // Legend: a swatch in each series' colour, with its label to the right.
  t.same(layout.legend.map((l) => l.label), ['a', 'b'])
  for (const l of layout.legend) {
    t.same(px(l.x + 5, l.y + 5), [...l.color], `legend swatch ${l.label}`)
    t.ok(inkIn(l.x + l.size + 3, l.y - 2, l.x + l.size + 16, l.y + 14) > 3, `legend label ${l.label}`)
  }
})

t.test('nice ticks and their labels', async (t) => {
  const cases: Array<[number, number, number[]]> = [
    [0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1]],
    [-3.7, 12.2, [0, 5, 10]],
    [0, 47, [0, 10, 20, 30, 40]],
    [0.013, 0.061, [0.02, 0.03, 0.04, 0.05, 0.06]],
    [5, 5, [5, 5.2, 5.4, 5.6, 5.8, 6]],
  ]
  for (const [lo, hi, want] of cases) t.same(niceTicks(lo, hi).ticks, want, `[${lo}, ${hi}]`)
  t.same(niceTicks(0, 3, 6, true).ticks, [0, 1, 2, 3], 'integer steps for counts')
  t.equal(tickLabel(0.4, 0.2), '0.4')
  t.equal(tickLabel(20, 10), '20')
  t.equal(tickLabel(-0.00001, 0.5), '0.0', 'no negative zero')
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
