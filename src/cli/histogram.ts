// Score histograms for the `clean` report: binning (shared range for all series, so they can be overlaid) and
// a PNG chart (chart.ts). Bin edges and counts also go into the report as a table, for readers without images.
import { Canvas, drawHistogram, type ChartLayout, type Rgb } from './chart.ts'

export interface HistogramSeries {
  label: string
  values: readonly number[]
  color: Rgb
}

export interface Histogram {
  edges: number[]
  counts: number[][]
}

export function binValues(series: readonly HistogramSeries[], bins: number): Histogram {
  const all = series.flatMap((s) => s.values.filter(Number.isFinite))
  let lo = all.length ? Math.min(...all) : 0
  let hi = all.length ? Math.max(...all) : 1
  if (hi === lo) {
    lo -= 0.5
    hi += 0.5
  }
  const width = (hi - lo) / bins
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + i * width)
  const counts = series.map((s) => {
    const c = new Array<number>(bins).fill(0)
    for (const v of s.values) {
      if (!Number.isFinite(v)) continue
      // The top edge belongs to the last bin.
      c[Math.min(bins - 1, Math.floor((v - lo) / width))]++
    }
    return c
  })
  return { edges, counts }
}

/** The histogram as a PNG chart: translucent bars per series over shared bins, axes with ticks, a legend. */
export async function renderHistogramPng(
  series: readonly HistogramSeries[],
  hist: Histogram,
  text: { title: string; xLabel: string },
  width = 720,
  height = 360,
): Promise<{ png: Buffer; layout: ChartLayout }> {
  const canvas = new Canvas(width, height)
  const layout = await drawHistogram(canvas, { x: 0, y: 0, width, height }, { ...text, series, edges: hist.edges, counts: hist.counts })
  return { png: await canvas.png(), layout }
}
