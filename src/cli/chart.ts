// Report charts of the CLIs (clean's histograms, bon's score/length-vs-N curves): drawn into an RGB raster here,
// with axes, ticks, tick labels, axis titles and a legend, and encoded as PNG by sharp.ts. Text comes from
// libvips' text operation (renderLabelCoverage); SVG is not used because sharp.ts keeps the SVG loader blocked
// process-wide (the service decodes untrusted images in the same process in --in-process mode).
import { encodePng, renderLabelCoverage } from '../preprocess/image/sharp.ts'

export type Rgb = readonly [number, number, number]

const BLACK: Rgb = [0, 0, 0]
const GRID: Rgb = [225, 225, 225]
const TEXT_PX = 12

/** Where things were drawn (tests check the pixels there; nothing else needs it). */
export interface ChartLayout {
  plot: { x0: number; y0: number; x1: number; y1: number }
  xTicks: Array<{ value: number; label: string; px: number }>
  yTicks: Array<{ value: number; label: string; px: number }>
  legend: Array<{ label: string; color: Rgb; x: number; y: number; size: number }>
}

export class Canvas {
  readonly rgb: Uint8Array
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.rgb = new Uint8Array(width * height * 3).fill(255)
  }

  blend(x: number, y: number, c: Rgb, alpha: number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return
    const o = (y * this.width + x) * 3
    for (let k = 0; k < 3; k++) this.rgb[o + k] = Math.round(this.rgb[o + k]! * (1 - alpha) + c[k]! * alpha)
  }

  /** Pixels x0..x1-1, y0..y1-1. */
  fillRect(x0: number, y0: number, x1: number, y1: number, c: Rgb, alpha = 1): void {
    for (let y = Math.round(y0); y < Math.round(y1); y++) for (let x = Math.round(x0); x < Math.round(x1); x++) this.blend(x, y, c, alpha)
  }

  /** A line `width` pixels thick (square pen), endpoints included. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, width = 1): void {
    const steps = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))))
    const h = (width - 1) / 2
    for (let i = 0; i <= steps; i++) {
      const x = x0 + ((x1 - x0) * i) / steps
      const y = y0 + ((y1 - y0) * i) / steps
      this.fillRect(Math.round(x - h), Math.round(y - h), Math.round(x - h) + width, Math.round(y - h) + width, c)
    }
  }

  /** Text with its box anchored at (x, y): ax/ay 0 = left/top, 0.5 = centre, 1 = right/bottom. `vertical`
   *  turns it 90° counter-clockwise (a y-axis title). */
  async text(s: string, x: number, y: number, opts: { ax?: number; ay?: number; size?: number; color?: Rgb; vertical?: boolean } = {}): Promise<void> {
    if (s === '') return
    let m = await renderLabelCoverage(s, opts.size ?? TEXT_PX)
    if (opts.vertical) m = rotateCcw(m)
    const left = Math.round(x - (opts.ax ?? 0) * m.width)
    const top = Math.round(y - (opts.ay ?? 0) * m.height)
    for (let j = 0; j < m.height; j++) {
      for (let i = 0; i < m.width; i++) {
        const a = m.data[j * m.width + i]!
        if (a) this.blend(left + i, top + j, opts.color ?? BLACK, a / 255)
      }
    }
  }

  png(): Promise<Buffer> {
    return encodePng(this.width, this.height, this.rgb)
  }
}

function rotateCcw(m: { width: number; height: number; data: Uint8Array }) {
  const data = new Uint8Array(m.width * m.height)
  // (i, j) -> (j, width - 1 - i): the new image is height wide and width tall.
  for (let j = 0; j < m.height; j++) for (let i = 0; i < m.width; i++) data[(m.width - 1 - i) * m.height + j] = m.data[j * m.width + i]!
  return { width: m.height, height: m.width, data }
}

/** At most about `target` round tick values (1, 2, 5 × 10^k apart) covering [lo, hi]; `integer` keeps steps >= 1. */
export function niceTicks(lo: number, hi: number, target = 6, integer = false): { ticks: number[]; step: number } {
  if (!(hi > lo)) hi = lo + 1
  const raw = (hi - lo) / Math.max(1, target - 1)
  const mag = 10 ** Math.floor(Math.log10(raw))
  let step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw)!
  if (integer) step = Math.max(1, Math.round(step))
  const first = Math.ceil(lo / step - 1e-9) * step
  const ticks: number[] = []
  for (let v = first; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(12)))
  return { ticks, step }
}

/** Tick labels with as many decimals as the step needs (0.5 → 1 decimal, 20 → none). */
export function tickLabel(v: number, step: number): string {
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)))
  const s = v.toFixed(decimals)
  return s === '-0' || /^-0\.0*$/.test(s) ? s.slice(1) : s
}

export interface Region {
  x: number
  y: number
  width: number
  height: number
}

interface AxesSpec {
  title: string
  xLabel: string
  yLabel: string
  /** Data range of each axis; ticks are round values inside it. */
  x: { lo: number; hi: number; ticks?: number[]; integer?: boolean; toPx?: (v: number) => number }
  y: { lo: number; hi: number; integer?: boolean }
  legend: Array<{ label: string; color: Rgb }>
}

/** Frame, grid, ticks, labels, title and legend of one chart in `r`; returns the data → pixel maps. */
async function drawAxes(c: Canvas, r: Region, spec: AxesSpec): Promise<{ layout: ChartLayout; px: (v: number) => number; py: (v: number) => number }> {
  const plot = { x0: r.x + 64, y0: r.y + 34, x1: r.x + r.width - 16, y1: r.y + r.height - 48 }
  const xTicksAuto = niceTicks(spec.x.lo, spec.x.hi, 7, spec.x.integer)
  const yTicks = niceTicks(spec.y.lo, spec.y.hi, 6, spec.y.integer)
  const yLo = Math.min(spec.y.lo, yTicks.ticks[0]!)
  const yHi = Math.max(spec.y.hi, yTicks.ticks[yTicks.ticks.length - 1]!)
  const linear = (v: number) => plot.x0 + ((v - spec.x.lo) / (spec.x.hi - spec.x.lo || 1)) * (plot.x1 - plot.x0)
  const px = spec.x.toPx ? (v: number) => plot.x0 + spec.x.toPx!(v) * (plot.x1 - plot.x0) : linear
  const py = (v: number) => plot.y1 - ((v - yLo) / (yHi - yLo || 1)) * (plot.y1 - plot.y0)
  const layout: ChartLayout = { plot, xTicks: [], yTicks: [], legend: [] }
  for (const v of yTicks.ticks) {
    const y = Math.round(py(v))
    c.line(plot.x0, y, plot.x1, y, GRID)
    c.line(plot.x0 - 5, y, plot.x0 - 1, y, BLACK)
    const label = tickLabel(v, yTicks.step)
    await c.text(label, plot.x0 - 8, y, { ax: 1, ay: 0.5 })
    layout.yTicks.push({ value: v, label, px: y })
  }
  const xs = spec.x.ticks ?? xTicksAuto.ticks.filter((v) => v >= spec.x.lo - 1e-9 && v <= spec.x.hi + 1e-9)
  const xStep = spec.x.ticks ? 1 : xTicksAuto.step
  for (const v of xs) {
    const x = Math.round(px(v))
    c.line(x, plot.y1 + 1, x, plot.y1 + 5, BLACK)
    const label = tickLabel(v, xStep)
    await c.text(label, x, plot.y1 + 8, { ax: 0.5 })
    layout.xTicks.push({ value: v, label, px: x })
  }
  // The frame last but the data: axes stay visible under translucent bars.
  c.line(plot.x0, plot.y1, plot.x1, plot.y1, BLACK)
  c.line(plot.x0, plot.y0, plot.x0, plot.y1, BLACK)
  await c.text(spec.xLabel, (plot.x0 + plot.x1) / 2, r.y + r.height - 4, { ax: 0.5, ay: 1 })
  await c.text(spec.yLabel, r.x + 4, (plot.y0 + plot.y1) / 2, { ay: 0.5, vertical: true })
  await c.text(spec.title, plot.x0, r.y + 8, { size: 14 })
  // Legend: top right, one swatch and label per series, right to left.
  let right = plot.x1
  for (const item of [...spec.legend].reverse()) {
    const m = await renderLabelCoverage(item.label, TEXT_PX)
    const x = right - m.width
    await c.text(item.label, x, r.y + 10)
    const size = 10
    c.fillRect(x - size - 5, r.y + 11, x - 5, r.y + 11 + size, item.color)
    layout.legend.unshift({ label: item.label, color: item.color, x: x - size - 5, y: r.y + 11, size })
    right = x - size - 18
  }
  return { layout, px, py }
}

export interface HistogramChart {
  title: string
  xLabel: string
  series: ReadonlyArray<{ label: string; color: Rgb }>
  edges: readonly number[]
  counts: ReadonlyArray<readonly number[]>
}

/** Bars of each series drawn translucent over each other (shared bins), counts on the y axis. */
export async function drawHistogram(c: Canvas, r: Region, h: HistogramChart): Promise<ChartLayout> {
  const max = Math.max(1, ...h.counts.flat())
  // Up to the next round count, so the tallest bar sits under a labelled grid line.
  const { step } = niceTicks(0, max, 6, true)
  const { layout, px, py } = await drawAxes(c, r, {
    title: h.title,
    xLabel: h.xLabel,
    yLabel: 'samples',
    x: { lo: h.edges[0]!, hi: h.edges[h.edges.length - 1]! },
    y: { lo: 0, hi: Math.ceil(max / step) * step, integer: true },
    legend: h.series.map((s) => ({ label: s.label, color: s.color })),
  })
  h.counts.forEach((counts, s) => {
    for (let b = 0; b < counts.length; b++) {
      if (!counts[b]) continue
      const x0 = Math.round(px(h.edges[b]!)) + 1
      const x1 = Math.round(px(h.edges[b + 1]!)) // 1px gap between bars
      c.fillRect(x0, py(counts[b]!), x1, layout.plot.y1, h.series[s]!.color, 0.55)
    }
  })
  return layout
}

export interface LineChart {
  title: string
  xLabel: string
  yLabel: string
  /** Shared x values; drawn on a log2 axis when `log2` (n = 1, 2, 4 … N). */
  x: readonly number[]
  log2?: boolean
  series: ReadonlyArray<{ label: string; color: Rgb; y: ReadonlyArray<number | undefined> }>
}

/** Lines with a square marker at each point; undefined or non-finite points are gaps. */
export async function drawLineChart(c: Canvas, r: Region, l: LineChart): Promise<ChartLayout> {
  const ys = l.series.flatMap((s) => s.y.filter((v): v is number => v !== undefined && Number.isFinite(v)))
  let lo = ys.length ? Math.min(...ys) : 0
  let hi = ys.length ? Math.max(...ys) : 1
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.08
  lo -= pad
  hi += pad
  const f = l.log2 ? Math.log2 : (v: number) => v
  const xLo = f(Math.min(...l.x))
  const xHi = f(Math.max(...l.x))
  const { layout, px, py } = await drawAxes(c, r, {
    title: l.title,
    xLabel: l.xLabel,
    yLabel: l.yLabel,
    x: { lo: Math.min(...l.x), hi: Math.max(...l.x), ticks: [...l.x], toPx: (v) => (xHi > xLo ? (f(v) - xLo) / (xHi - xLo) : 0.5) },
    y: { lo, hi },
    legend: l.series.map((s) => ({ label: s.label, color: s.color })),
  })
  for (const s of l.series) {
    let prev: [number, number] | undefined
    s.y.forEach((v, i) => {
      if (v === undefined || !Number.isFinite(v)) return void (prev = undefined)
      const p: [number, number] = [px(l.x[i]!), py(v)]
      if (prev) c.line(prev[0], prev[1], p[0], p[1], s.color, 2)
      c.fillRect(p[0] - 3, p[1] - 3, p[0] + 4, p[1] + 4, s.color)
      prev = p
    })
  }
  return layout
}
