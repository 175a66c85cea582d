// Score histograms for the `clean` report: binning (shared range for all series, so they can be overlaid) and
// a raster chart encoded as PNG. Bin edges and counts also go into the report as a table, since the image has
// no text.
import { encodePng } from '../preprocess/image/sharp.ts'

export interface HistogramSeries {
  label: string
  values: readonly number[]
  color: readonly [number, number, number]
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

/** Bars of each series drawn translucent over each other on a white canvas, with a baseline and a frame. */
export function renderHistogramPng(series: readonly HistogramSeries[], hist: Histogram, width = 640, height = 320): Promise<Buffer> {
  const rgb = new Uint8Array(width * height * 3).fill(255)
  const pad = 16
  const plotW = width - 2 * pad
  const plotH = height - 2 * pad
  const max = Math.max(1, ...hist.counts.flat())
  const bins = hist.edges.length - 1
  const blend = (x: number, y: number, c: readonly number[], alpha: number) => {
    const o = (y * width + x) * 3
    for (let k = 0; k < 3; k++) rgb[o + k] = Math.round(rgb[o + k] * (1 - alpha) + c[k] * alpha)
  }
  hist.counts.forEach((counts, s) => {
    const color = series[s].color
    for (let b = 0; b < bins; b++) {
      const x0 = pad + Math.floor((b * plotW) / bins)
      const x1 = pad + Math.floor(((b + 1) * plotW) / bins) - 1 // 1px gap between bars
      const h = Math.round((counts[b] / max) * plotH)
      for (let y = height - pad - h; y < height - pad; y++) for (let x = x0; x < x1; x++) blend(x, y, color, 0.55)
    }
  })
  const black = [0, 0, 0]
  for (let x = pad - 1; x <= width - pad; x++) blend(x, height - pad, black, 1)
  for (let y = pad; y <= height - pad; y++) blend(pad - 1, y, black, 1)
  return encodePng(width, height, rgb)
}
